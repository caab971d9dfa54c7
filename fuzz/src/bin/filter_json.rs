//! `rag_core::fuzz::filter_json` under AFL++ (scripts/fuzz filter_json).
fn main() {
    afl::fuzz!(|data: &[u8]| rag_core::fuzz::filter_json(data));
}
