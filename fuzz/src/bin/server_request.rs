//! `rag_server::fuzz::request` under AFL++ (scripts/fuzz server_request).
fn main() {
    afl::fuzz!(|data: &[u8]| rag_server::fuzz::request(data));
}
