//! The SQL filter translation against the reference evaluator
//! (`Filter::matches`) on random metadata and filters, and with hostile keys
//! and values.

mod common;

use std::collections::BTreeSet;

use proptest::prelude::*;
use rag_core::filter::{Field, Filter};
use rag_core::testkit::filter_props::{self, D, expected, selected};
use rag_core::testkit::fresh_namespace;
use rag_core::testkit::vector_store::doc_chunks;
use rag_core::{SearchRequest, VectorStore};
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
async fn hostile_keys_and_values() {
    let Some(url) = common::pg_url("hostile_keys_and_values") else {
        return;
    };
    let store = common::store(
        &url,
        "hostile",
        PgVectorConfig::default().with_dimensions(D),
    )
    .await;
    let ns = fresh_namespace("hostile");
    let long = "λ'\"; DROP TABLE x; --\\".repeat(500); // about 11 KB
    let hostile = [
        "it's",
        "\"double\"",
        "'; DROP TABLE rag_chunks; --",
        "\\backslash\\",
        "$1::text) OR (TRUE",
        "?| ?& @> #>> '{}'",
        "東京 🚀 e\u{301}",
        long.as_str(),
    ];
    let mut chunks = Vec::new();
    for (i, h) in hostile.iter().enumerate() {
        // Keys are at most 256 bytes: the long one is a value only.
        let key: String = h.chars().take(60).collect();
        let meta = json!({ key.clone(): h, "k": h, "list": [h, 1] });
        let text = format!("hostile {i} {h}");
        let c = doc_chunks(&format!("h{i}"), &[text.as_str()], meta, D, i);
        chunks.push(c[0].chunk.clone());
        store.upsert(&ns, c).await.expect("upsert hostile metadata");
    }
    assert_eq!(store.count(&ns).await.expect("count"), hostile.len());
    for (i, h) in hostile.iter().enumerate() {
        let key: String = h.chars().take(60).collect();
        for f in [
            Filter::eq(key.as_str(), *h),
            Filter::eq("k", *h),
            Filter::eq("list", *h),
            Filter::is_in("k", [*h, "other"]),
            Filter::ne("k", *h),
            Filter::exists(key.as_str()),
            Filter::gt(key.as_str(), 0),
            Filter::eq(Field::Source, format!("h{i}.txt")),
        ] {
            let got = selected(&store, &ns, &f).await;
            assert_eq!(got, expected(&chunks, &f), "hostile filter {f:?}");
        }
        let got = selected(&store, &ns, &Filter::eq("k", *h)).await;
        assert_eq!(
            got,
            BTreeSet::from([format!("h{i}")]),
            "exactly the hostile doc"
        );
    }
    // Round trip, byte for byte.
    let back = store
        .get_chunks(&ns, &[chunks[7].id.clone()])
        .await
        .expect("get");
    assert_eq!(back[0].metadata["k"], json!(long));
    assert!(back[0].text.ends_with(long.as_str()));
    // Keyword queries with hostile text are bound, not parsed as SQL.
    for q in &hostile[..7] {
        store
            .search(&ns, SearchRequest::keyword(*q, 5))
            .await
            .unwrap_or_else(|e| panic!("keyword query {q:?}: {e}"));
    }
    // The table is still there and whole.
    assert_eq!(store.count(&ns).await.expect("count"), hostile.len());
    store.delete_namespace(&ns).await.expect("cleanup");
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
        let e = store.upsert(&ns, batch).await;
        assert!(
            matches!(e, Err(rag_core::Error::InvalidInput { .. })),
            "NUL must be InvalidInput: {e:?}"
        );
    }
    assert_eq!(store.count(&ns).await.expect("count"), 0);
    let prefix = store.config().table_prefix.clone();
    common::drop_tables(store.pool(), &prefix).await;
}
