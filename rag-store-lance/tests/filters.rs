//! The SQL filter translation of the Lance store against the in-memory
//! store and the reference evaluator (`Filter::matches`), on random metadata
//! and filters with hostile keys and values (quotes, backticks, `' OR 1=1
//! --`, unicode, newlines, NUL).

use std::collections::BTreeSet;

use proptest::prelude::*;
use rag_core::filter::{Field, Filter, RangeOp, Scalar};
use rag_core::testkit::fresh_namespace;
use rag_core::testkit::vector_store::{doc_chunks, unit};
use rag_core::{Chunk, MemoryVectorStore, Namespace, SearchRequest, VectorStore};
use rag_store_lance::{LanceConfig, LanceVectorStore};
use serde_json::{Map, Value, json};

const D: usize = 8;

const KEYS: [&str; 8] = [
    "a",
    "b",
    "it's",
    "ключ",
    "' OR 1=1 --",
    "`tick` \"dq\" \\",
    "a\\\"b $1 ? %s {}",
    "2:ab", // looks like a length-prefixed term
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
                .expect("upsert lance");
            memory.upsert(&ns, batch).await.expect("upsert memory");
            for f in &filters {
                let got = selected(&store, &ns, f).await;
                let mem = selected(&memory, &ns, f).await;
                prop_assert_eq!(&got, &mem, "lance vs memory, filter {:?}", f);
                prop_assert_eq!(got, expected(&chunks, f), "filter {:?}", f);
            }
            store.delete_namespace(&ns).await.expect("cleanup");
            memory.delete_namespace(&ns).await.expect("cleanup");
            Ok(())
        })
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
    let ns = fresh_namespace("boundary");
    let values = [
        json!(1),
        json!(1.0),
        json!(1.5),
        json!(2),
        json!(-1),
        json!("1"),
        json!(true),
        json!(null),
        json!([1, "x"]),
        json!([[1]]),
        json!({"n": 1}),
        json!([]),
        json!(9_007_199_254_740_993_i64),
    ];
    let mut chunks = Vec::new();
    let mut batch = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let c = doc_chunks(&format!("b{i}"), &["text"], json!({ "v": v }), D, i);
        chunks.push(c[0].chunk.clone());
        batch.extend(c);
    }
    let c = doc_chunks("none", &["text"], json!({}), D, 0);
    chunks.push(c[0].chunk.clone());
    batch.extend(c);
    store.upsert(&ns, batch).await.expect("upsert");
    let mut filters = Vec::new();
    for x in [1.0, 1.5, 2.0, 0.0, 9_007_199_254_740_992.0] {
        for op in [RangeOp::Gt, RangeOp::Gte, RangeOp::Lt, RangeOp::Lte] {
            filters.push(Filter::Range {
                field: Field::from("v"),
                op,
                value: x,
            });
        }
        filters.push(Filter::eq("v", x));
        filters.push(Filter::ne("v", x));
    }
    for s in [
        Scalar::from("1"),
        Scalar::from("x"),
        Scalar::Bool(true),
        Scalar::Bool(false),
    ] {
        filters.push(Filter::eq("v", s.clone()));
        filters.push(Filter::ne("v", s.clone()));
        filters.push(Filter::is_in("v", [s.clone(), Scalar::Number(2.0)]));
        filters.push(Filter::not_in("v", [s]));
    }
    filters.push(Filter::exists("v"));
    filters.push(Filter::not(Filter::exists("v")));
    for f in &filters {
        assert_eq!(
            selected(&store, &ns, f).await,
            expected(&chunks, f),
            "filter {f:?}"
        );
    }
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
