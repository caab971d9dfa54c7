//! The SQL filter translation of the Lance store against the in-memory
//! store and the reference evaluator (`Filter::matches`), on random metadata
//! and filters with hostile keys and values (quotes, backticks, `' OR 1=1
//! --`, unicode, newlines, NUL). The fixed hostile cases are part of the
//! conformance suite (`vector_store::hostile_metadata_and_queries`).

use proptest::prelude::*;
use rag_core::MemoryVectorStore;
use rag_core::testkit::filter_props::{self, D, HOSTILE_KEYS, HOSTILE_STRINGS};
use rag_store_lance::{LanceConfig, LanceVectorStore};

async fn open(dir: &tempfile::TempDir) -> LanceVectorStore {
    LanceVectorStore::open(LanceConfig::new(
        dir.path().to_str().expect("utf-8 path"),
        D,
    ))
    .await
    .expect("open lance store")
}

#[test]
fn lance_filters_equal_memory_store_and_reference() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rt.block_on(open(&dir));
    let memory = MemoryVectorStore::new(rag_core::memory::MemoryConfig::default());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    });
    let strategy = (
        prop::collection::vec(
            filter_props::metadata(&HOSTILE_KEYS, &HOSTILE_STRINGS),
            4..16,
        ),
        prop::collection::vec(filter_props::filter(&HOSTILE_KEYS, &HOSTILE_STRINGS), 4..12),
    );
    let result = runner.run(&strategy, |(metas, filters)| {
        rt.block_on(filter_props::check_case(
            &store,
            Some(&memory),
            &metas,
            &filters,
        ))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Every operator at and around its boundaries, on every JSON type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    filter_props::boundary_table(&store).await;
}
