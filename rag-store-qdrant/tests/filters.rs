//! The Qdrant filter translation against the in-memory store and the
//! reference evaluator (`Filter::matches`), on random metadata and filters
//! with hostile keys and values (dots and brackets in keys, quotes, unicode,
//! newlines, NUL), and at every operator's boundaries, against a real server.

mod common;

use proptest::prelude::*;
use rag_core::MemoryVectorStore;
use rag_core::testkit::filter_props::{self, D, HOSTILE_STRINGS};
use rag_store_qdrant::QdrantConfig;

/// `HOSTILE_KEYS` without `"` and `\`, which Qdrant's paths cannot quote
/// (filters on such keys are `Unsupported`, tested in `qdrant.rs`).
const KEYS: [&str; 8] = [
    "a",
    "b",
    "it's",
    "ключ",
    "' OR 1=1 --",
    "2:ab",
    "a.b",
    "x y[0]",
];

#[test]
fn qdrant_filters_equal_memory_store_and_reference() {
    let Some(url) = common::qdrant_url("qdrant_filters_equal_memory_store_and_reference") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = rt.block_on(common::store(&url, "props", |_| {
        QdrantConfig::new(&url, D).with_collection(common::fresh_collection("props"))
    }));
    let memory = MemoryVectorStore::new(rag_core::memory::MemoryConfig::default());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    });
    let strategy = (
        prop::collection::vec(filter_props::metadata(&KEYS, &HOSTILE_STRINGS), 4..16),
        prop::collection::vec(filter_props::filter(&KEYS, &HOSTILE_STRINGS), 4..12),
    );
    let result = runner.run(&strategy, |(metas, filters)| {
        rt.block_on(filter_props::check_case(
            &store,
            Some(&memory),
            &metas,
            &filters,
        ))
    });
    rt.block_on(common::drop_collections(&store));
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Every operator at and around its boundaries, on every JSON type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_table() {
    let Some(url) = common::qdrant_url("boundary_table") else {
        return;
    };
    let store = common::store(&url, "boundary", |_| {
        QdrantConfig::new(&url, D).with_collection(common::fresh_collection("boundary"))
    })
    .await;
    filter_props::boundary_table(&store).await;
    common::drop_collections(&store).await;
}
