//! The SQL filter translation of the Lance store against the in-memory
//! store and the reference evaluator (`Filter::matches`), on random metadata
//! and filters with hostile keys and values (quotes, backticks, `' OR 1=1
//! --`, unicode, newlines, NUL).

use std::collections::BTreeSet;

use proptest::prelude::*;
use rag_core::filter::{Field, Filter};
use rag_core::testkit::filter_props::{self, D, HOSTILE_KEYS, HOSTILE_STRINGS, expected, selected};
use rag_core::testkit::fresh_namespace;
use rag_core::testkit::vector_store::doc_chunks;
use rag_core::{MemoryVectorStore, SearchRequest, VectorStore};
use rag_store_lance::{LanceConfig, LanceVectorStore};
use serde_json::json;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_and_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let ns = fresh_namespace("hostile");
    let long = "λ'\"; DROP TABLE x; --\\".repeat(500); // about 11 KB
    let hostile = [
        "it's",
        "\"double\"",
        "'; DROP TABLE rag_chunks; --",
        "' OR 1=1 --",
        "`backtick` ``double``",
        "line\nbreak\r\n",
        "\\backslash\\",
        "$1::text) OR (TRUE",
        "?| ?& @> #>> '{}'",
        "東京 🚀 e\u{301}",
        long.as_str(),
    ];
    let mut chunks = Vec::new();
    for (i, h) in hostile.iter().enumerate() {
        // Keys are at most 256 bytes: the long one is a value only.
        let key: String = h.chars().filter(|c| !c.is_control()).take(60).collect();
        let meta = json!({ key.clone(): h, "k": h, "list": [h, 1] });
        let text = format!("hostile {i} {h}");
        let c = doc_chunks(&format!("h{i}"), &[text.as_str()], meta, D, i);
        chunks.push(c[0].chunk.clone());
        store.upsert(&ns, c).await.expect("upsert hostile metadata");
    }
    assert_eq!(store.count(&ns).await.expect("count"), hostile.len());
    for (i, h) in hostile.iter().enumerate() {
        let key: String = h.chars().filter(|c| !c.is_control()).take(60).collect();
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
        .get_chunks(&ns, &[chunks[10].id.clone()])
        .await
        .expect("get");
    assert_eq!(back[0].metadata["k"], json!(long));
    assert!(back[0].text.ends_with(long.as_str()));
    // Keyword queries with hostile text are bound, not parsed as SQL.
    for q in &hostile[..10] {
        store
            .search(&ns, SearchRequest::keyword(*q, 5))
            .await
            .unwrap_or_else(|e| panic!("keyword query {q:?}: {e}"));
    }
    // The table is still there and whole.
    assert_eq!(store.count(&ns).await.expect("count"), hostile.len());
    store.delete_namespace(&ns).await.expect("cleanup");
}
