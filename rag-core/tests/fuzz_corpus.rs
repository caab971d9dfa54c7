//! Replays the fuzz targets' seed corpus and every crash the fuzzer found
//! (`fuzz/corpus/<target>`, `fuzz/regressions/<target>`) through the same
//! checks the fuzzer runs (`rag_core::fuzz`), so a fixed crash stays fixed.

use rag_core::fuzz::replay_corpus;

fn fuzz_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn filter_json_corpus() {
    replay_corpus(&fuzz_dir(), "filter_json", rag_core::fuzz::filter_json);
}

#[test]
fn chunkers_corpus() {
    replay_corpus(&fuzz_dir(), "chunkers", rag_core::fuzz::chunkers);
}

#[test]
fn loader_corpus() {
    replay_corpus(&fuzz_dir(), "loader", rag_core::fuzz::loader);
}
