//! `rag_core::fuzz::chunkers` under AFL++ (scripts/fuzz chunkers).
fn main() {
    afl::fuzz!(|data: &[u8]| rag_core::fuzz::chunkers(data));
}
