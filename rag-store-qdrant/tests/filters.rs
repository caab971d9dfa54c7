//! The Qdrant filter translation against the in-memory store and the
//! reference evaluator (`Filter::matches`), on random metadata and filters
//! with hostile keys and values (dots and brackets in keys, quotes, unicode,
//! newlines, NUL), against a real server.

mod common;

use std::collections::BTreeSet;

use proptest::prelude::*;
use rag_core::filter::{Field, Filter, RangeOp, Scalar};
use rag_core::testkit::fresh_namespace;
use rag_core::testkit::vector_store::{doc_chunks, unit};
use rag_core::{Chunk, MemoryVectorStore, Namespace, SearchRequest, VectorStore};
use rag_store_qdrant::QdrantConfig;
use serde_json::{Map, Value, json};

const D: usize = 8;

const KEYS: [&str; 8] = [
    "a",
    "b",
    "it's",
    "ключ",
    "' OR 1=1 --",
    "a.b", // a path to Qdrant unless quoted
    "x y[0]",
    "2:ab",
];

const STRINGS: [&str; 11] = [
    "x",
    "y",
    "",
    "Ünï 東京 🚀",
    "' OR 1=1 --",
    "'; DROP TABLE t; --",
    "back\\slash \"quote\" `tick`",
    "line\nbreak\r\ttab",
    "1",
    "true",
    "nul\0byte",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        (-3i32..4).prop_map(|n| json!(n)),
        (-3i32..4).prop_map(|n| json!(f64::from(n) + 0.5)),
        Just(json!(0.1)),
        Just(json!(9_007_199_254_740_993_i64)),
        Just(json!(-0.0)),
        prop::sample::select(STRINGS.to_vec()).prop_map(|s| json!(s)),
    ]
}

fn meta_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => scalar(),
        1 => Just(Value::Null),
        2 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array),
        1 => prop::collection::vec(scalar(), 1..2).prop_map(|v| json!([v, 1])),
        1 => Just(json!({"nested": 1})),
        1 => Just(json!([null, "x"])),
    ]
}

fn metadata() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), meta_value(), 0..4)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn filter_scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        any::<bool>().prop_map(Scalar::Bool),
        (-3i32..4).prop_map(|n| Scalar::Number(f64::from(n))),
        (-3i32..4).prop_map(|n| Scalar::Number(f64::from(n) + 0.5)),
        Just(Scalar::Number(0.1)),
        Just(Scalar::Number(9_007_199_254_740_992.0)),
        Just(Scalar::Number(0.0)),
        prop::sample::select(STRINGS.to_vec()).prop_map(Scalar::from),
        Just(Scalar::from("nul\0byte")),
        Just(Scalar::from("d1")),
        Just(Scalar::from("d2.txt")),
    ]
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        6 => prop::sample::select(KEYS.to_vec()).prop_map(Field::from),
        1 => Just(Field::from("missing")),
        1 => Just(Field::DocumentId),
        1 => Just(Field::Source),
    ]
}

fn leaf() -> impl Strategy<Value = Filter> {
    let op = prop::sample::select(vec![RangeOp::Gt, RangeOp::Gte, RangeOp::Lt, RangeOp::Lte]);
    prop_oneof![
        (field(), filter_scalar()).prop_map(|(f, v)| Filter::eq(f, v)),
        (field(), filter_scalar()).prop_map(|(f, v)| Filter::ne(f, v)),
        (field(), op, -4i32..5).prop_map(|(f, op, n)| Filter::Range {
            field: f,
            op,
            value: f64::from(n) / 2.0
        }),
        (field(), prop::collection::vec(filter_scalar(), 0..4))
            .prop_map(|(f, vs)| Filter::is_in(f, vs)),
        (field(), prop::collection::vec(filter_scalar(), 0..4))
            .prop_map(|(f, vs)| Filter::not_in(f, vs)),
        field().prop_map(Filter::exists),
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    leaf().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::all),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::any),
            inner.prop_map(Filter::not),
        ]
    })
}

async fn selected(store: &dyn VectorStore, ns: &Namespace, f: &Filter) -> BTreeSet<String> {
    store
        .search(
            ns,
            SearchRequest::dense(unit(D, 0, 0.0), 100).with_filter(f.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("filter {f:?} failed: {e}"))
        .into_iter()
        .map(|h| h.chunk.document_id.to_string())
        .collect()
}

fn expected(chunks: &[Chunk], f: &Filter) -> BTreeSet<String> {
    chunks
        .iter()
        .filter(|c| f.matches(c))
        .map(|c| c.document_id.to_string())
        .collect()
}

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
        cases: 32,
        ..ProptestConfig::default()
    });
    let strategy = (
        prop::collection::vec(metadata(), 4..16),
        prop::collection::vec(filter(), 4..12),
    );
    let result = runner.run(&strategy, |(metas, filters)| {
        rt.block_on(async {
            let ns = fresh_namespace("props");
            let mut chunks = Vec::new();
            let mut batch = Vec::new();
            for (i, m) in metas.iter().enumerate() {
                let c = doc_chunks(&format!("d{i}"), &["text"], Value::Object(m.clone()), D, i);
                chunks.push(c[0].chunk.clone());
                batch.extend(c);
            }
            store
                .upsert(&ns, batch.clone())
                .await
                .expect("upsert qdrant");
            memory.upsert(&ns, batch).await.expect("upsert memory");
            for f in &filters {
                let got = selected(&store, &ns, f).await;
                let mem = selected(&memory, &ns, f).await;
                prop_assert_eq!(&got, &mem, "qdrant vs memory, filter {:?}", f);
                prop_assert_eq!(got, expected(&chunks, f), "filter {:?}", f);
            }
            store.delete_namespace(&ns).await.expect("cleanup");
            memory.delete_namespace(&ns).await.expect("cleanup");
            Ok(())
        })
    });
    rt.block_on(common::drop_collections(&store));
    if let Err(e) = result {
        panic!("{e}");
    }
}
