//! Property tests of a store's filter translation: random metadata and
//! random filters (proptest strategies), and one case checked against the
//! reference evaluator ([`Filter::matches`]) and, optionally, a second store.
//!
//! ```no_run
//! # async fn demo(store: &dyn rag_core::VectorStore) {
//! use proptest::prelude::*;
//! use rag_core::testkit::filter_props::{self, HOSTILE_KEYS, HOSTILE_STRINGS};
//! let strategy = (
//!     prop::collection::vec(filter_props::metadata(&HOSTILE_KEYS, &HOSTILE_STRINGS), 4..16),
//!     prop::collection::vec(filter_props::filter(&HOSTILE_KEYS, &HOSTILE_STRINGS), 4..12),
//! );
//! // In a proptest runner: filter_props::check_case(store, None, &metas, &filters).await
//! # }
//! ```

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

use crate::filter::{Field, Filter, RangeOp, Scalar};
use crate::search::SearchRequest;
use crate::testkit::fresh_namespace;
use crate::testkit::vector_store::{doc_chunks, unit};
use crate::traits::VectorStore;
use crate::types::{Chunk, Namespace};

/// The vector dimension of the generated chunks.
pub const D: usize = 8;

/// Metadata keys that break naive translations: quotes, SQL, backslashes,
/// unicode, what looks like a path or a length-prefixed term.
pub const HOSTILE_KEYS: [&str; 10] = [
    "a",
    "b",
    "it's",
    "ключ",
    "' OR 1=1 --",
    "`tick` \"dq\" \\",
    "a\\\"b $1 ? %s {}",
    "2:ab",
    "a.b",
    "x y[0]",
];

/// String values of the same kind, plus strings that look like other types.
pub const HOSTILE_STRINGS: [&str; 11] = [
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

/// A JSON scalar: booleans, integers, halves, 2^53 + 1, -0.0, strings.
pub fn scalar(strings: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        (-3i32..4).prop_map(|n| json!(n)),
        (-3i32..4).prop_map(|n| json!(f64::from(n) + 0.5)),
        Just(json!(0.1)),
        Just(json!(9_007_199_254_740_993_i64)),
        Just(json!(-0.0)),
        prop::sample::select(strings).prop_map(|s| json!(s)),
    ]
}

/// A metadata value: scalars, null, arrays (nested too), objects.
pub fn meta_value(strings: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => scalar(strings),
        1 => Just(Value::Null),
        2 => prop::collection::vec(scalar(strings), 0..3).prop_map(Value::Array),
        1 => prop::collection::vec(scalar(strings), 1..2).prop_map(|v| json!([v, 1])),
        1 => Just(json!({"nested": 1})),
        1 => Just(json!([null, "x"])),
    ]
}

/// A metadata object of up to three of `keys`.
pub fn metadata(
    keys: &'static [&'static str],
    strings: &'static [&'static str],
) -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(prop::sample::select(keys), meta_value(strings), 0..4)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// A filter value.
pub fn filter_scalar(strings: &'static [&'static str]) -> impl Strategy<Value = Scalar> {
    prop_oneof![
        any::<bool>().prop_map(Scalar::Bool),
        (-3i32..4).prop_map(|n| Scalar::Number(f64::from(n))),
        (-3i32..4).prop_map(|n| Scalar::Number(f64::from(n) + 0.5)),
        Just(Scalar::Number(0.1)),
        Just(Scalar::Number(9_007_199_254_740_992.0)),
        Just(Scalar::Number(0.0)),
        prop::sample::select(strings).prop_map(Scalar::from),
        Just(Scalar::from("d1")),
        Just(Scalar::from("d2.txt")),
    ]
}

/// A field: one of `keys`, a missing key, or a built-in field.
pub fn field(keys: &'static [&'static str]) -> impl Strategy<Value = Field> {
    prop_oneof![
        6 => prop::sample::select(keys).prop_map(Field::from),
        1 => Just(Field::from("missing")),
        1 => Just(Field::DocumentId),
        1 => Just(Field::Source),
    ]
}

/// A leaf condition of every operator.
pub fn leaf(
    keys: &'static [&'static str],
    strings: &'static [&'static str],
) -> impl Strategy<Value = Filter> {
    let op = prop::sample::select(vec![RangeOp::Gt, RangeOp::Gte, RangeOp::Lt, RangeOp::Lte]);
    prop_oneof![
        (field(keys), filter_scalar(strings)).prop_map(|(f, v)| Filter::eq(f, v)),
        (field(keys), filter_scalar(strings)).prop_map(|(f, v)| Filter::ne(f, v)),
        (field(keys), op, -4i32..5).prop_map(|(f, op, n)| Filter::Range {
            field: f,
            op,
            value: f64::from(n) / 2.0
        }),
        (
            field(keys),
            prop::collection::vec(filter_scalar(strings), 0..4)
        )
            .prop_map(|(f, vs)| Filter::is_in(f, vs)),
        (
            field(keys),
            prop::collection::vec(filter_scalar(strings), 0..4)
        )
            .prop_map(|(f, vs)| Filter::not_in(f, vs)),
        field(keys).prop_map(Filter::exists),
    ]
}

/// A filter tree up to three levels deep.
pub fn filter(
    keys: &'static [&'static str],
    strings: &'static [&'static str],
) -> impl Strategy<Value = Filter> {
    leaf(keys, strings).prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::all),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Filter::any),
            inner.prop_map(Filter::not),
        ]
    })
}

/// The document ids `f` selects in a dense search of `ns`.
pub async fn selected(store: &dyn VectorStore, ns: &Namespace, f: &Filter) -> BTreeSet<String> {
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

/// The document ids the reference evaluator selects.
pub fn expected(chunks: &[Chunk], f: &Filter) -> BTreeSet<String> {
    chunks
        .iter()
        .filter(|c| f.matches(c))
        .map(|c| c.document_id.to_string())
        .collect()
}

/// One case: stores a one-chunk document `d{i}` per metadata object in a
/// fresh namespace (of `store` and of `other`, when given), checks that
/// every filter selects what the reference selects (and what `other`
/// selects), and deletes the namespace.
pub async fn check_case(
    store: &dyn VectorStore,
    other: Option<&dyn VectorStore>,
    metas: &[Map<String, Value>],
    filters: &[Filter],
) -> Result<(), TestCaseError> {
    let ns = fresh_namespace("props");
    let mut chunks = Vec::new();
    let mut batch = Vec::new();
    for (i, m) in metas.iter().enumerate() {
        let c = doc_chunks(&format!("d{i}"), &["text"], Value::Object(m.clone()), D, i);
        chunks.push(c[0].chunk.clone());
        batch.extend(c);
    }
    if let Some(o) = other {
        o.upsert(&ns, &batch).await.expect("upsert (other)");
    }
    store.upsert(&ns, &batch).await.expect("upsert");
    for f in filters {
        let got = selected(store, &ns, f).await;
        if let Some(o) = other {
            let theirs = selected(o, &ns, f).await;
            prop_assert_eq!(&got, &theirs, "store vs other store, filter {:?}", f);
        }
        prop_assert_eq!(got, expected(&chunks, f), "filter {:?}", f);
    }
    store.delete_namespace(&ns).await.expect("cleanup");
    if let Some(o) = other {
        o.delete_namespace(&ns).await.expect("cleanup (other)");
    }
    Ok(())
}

/// Every operator at and around its boundaries, on every JSON type.
pub async fn boundary_table(store: &dyn VectorStore) {
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
    store.upsert(&ns, &batch).await.expect("upsert");
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
            selected(store, &ns, f).await,
            expected(&chunks, f),
            "filter {f:?}"
        );
    }
    store.delete_namespace(&ns).await.expect("cleanup");
}
