//! `rag_core::fuzz::loader` under AFL++ (scripts/fuzz loader).
fn main() {
    afl::fuzz!(|data: &[u8]| rag_core::fuzz::loader(data));
}
