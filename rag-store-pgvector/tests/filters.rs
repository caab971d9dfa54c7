//! The SQL filter translation against the reference evaluator
//! (`Filter::matches`) on random metadata and filters. The fixed hostile
//! keys and values are part of the conformance suite
//! (`vector_store::hostile_metadata_and_queries`).

mod common;

use proptest::prelude::*;
use rag_core::VectorStore;
use rag_core::testkit::filter_props::{self, D};
use rag_core::testkit::fresh_namespace;
use rag_core::testkit::vector_store::doc_chunks;
use rag_store_pgvector::PgVectorConfig;
use serde_json::json;

const KEYS: [&str; 6] = [
    "a",
    "b",
    "it's",
    "ключ",
    "'; DROP TABLE rag_chunks; --",
    "a\\\"b $1 ? %s {}",
];

const STRINGS: [&str; 8] = [
    "x",
    "y",
    "",
    "Ünï 東京 🚀",
    "'; DROP TABLE t; --",
    "back\\slash \"quote\"",
    "1",
    "true",
];

#[test]
fn store_filters_equal_reference_evaluator() {
    let Some(url) = common::pg_url("store_filters_equal_reference_evaluator") else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = rt.block_on(common::store(
        &url,
        "props",
        PgVectorConfig::default().with_dimensions(D),
    ));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 128,
        ..ProptestConfig::default()
    });
    let strategy = (
        prop::collection::vec(filter_props::metadata(&KEYS, &STRINGS), 4..16),
        prop::collection::vec(filter_props::filter(&KEYS, &STRINGS), 4..12),
    );
    let result = runner.run(&strategy, |(metas, filters)| {
        rt.block_on(filter_props::check_case(&store, None, &metas, &filters))
    });
    let prefix = store.config().table_prefix.clone();
    rt.block_on(common::drop_tables(store.pool(), &prefix));
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Every operator at and around its boundaries, on every JSON type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_table() {
    let Some(url) = common::pg_url("boundary_table") else {
        return;
    };
    let store = common::store(
        &url,
        "boundary",
        PgVectorConfig::default().with_dimensions(D),
    )
    .await;
    filter_props::boundary_table(&store).await;
    let prefix = store.config().table_prefix.clone();
    common::drop_tables(store.pool(), &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_are_invalid_input() {
    let Some(url) = common::pg_url("nul_characters_are_invalid_input") else {
        return;
    };
    let store = common::store(&url, "nul", PgVectorConfig::default().with_dimensions(D)).await;
    let ns = fresh_namespace("nul");
    let bad_text = doc_chunks("a", &["nul\0here"], json!({}), D, 0);
    let bad_meta = doc_chunks("b", &["fine"], json!({"k": "nul\0"}), D, 0);
    for batch in [bad_text, bad_meta] {
        let e = store.upsert(&ns, &batch).await;
        assert!(
            matches!(e, Err(rag_core::Error::InvalidInput { .. })),
            "NUL must be InvalidInput: {e:?}"
        );
    }
    assert_eq!(store.count(&ns).await.expect("count"), 0);
    let prefix = store.config().table_prefix.clone();
    common::drop_tables(store.pool(), &prefix).await;
}
