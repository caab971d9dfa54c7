//! `rag_llm_openai::fuzz::chat_stream` under AFL++ (scripts/fuzz openai_stream).
fn main() {
    afl::fuzz!(|data: &[u8]| rag_llm_openai::fuzz::chat_stream(data));
}
