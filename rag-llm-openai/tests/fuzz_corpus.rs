//! Replays the stream parser's fuzz corpus and every crash the fuzzer found
//! (`fuzz/corpus/openai_stream`, `fuzz/regressions/openai_stream`) through
//! the checks the fuzzer runs (`rag_llm_openai::fuzz`).

#[test]
fn openai_stream_corpus() {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    rag_core::fuzz::replay_corpus(&fuzz, "openai_stream", rag_llm_openai::fuzz::chat_stream);
}
