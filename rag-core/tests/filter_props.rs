//! Property tests: the in-memory store's filtered results, and
//! `Filter::matches`, equal an independent naive evaluator's on random
//! metadata and random filters.

use std::collections::BTreeSet;

use proptest::prelude::*;
use rag_core::filter::{Field, Filter, RangeOp, Scalar};
use rag_core::testkit::vector_store::{doc_chunks, unit};
use rag_core::{MemoryVectorStore, Namespace, SearchRequest, VectorStore};
use serde_json::{Map, Value, json};

const KEYS: [&str; 4] = ["a", "b", "it's", "ключ"];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        (-3i32..4).prop_map(|n| json!(n)),
        (-3i32..4).prop_map(|n| json!(f64::from(n) + 0.5)),
        prop::sample::select(vec!["x", "y", "", "Ünï", "'; DROP TABLE t; --"])
            .prop_map(|s| json!(s)),
    ]
}

fn meta_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => scalar(),
        1 => Just(Value::Null),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array),
        1 => Just(json!({"nested": 1})),
    ]
}

fn metadata() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), meta_value(), 0..4)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn to_scalar(v: &Value) -> Scalar {
    match v {
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Number(n) => Scalar::Number(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Scalar::String(s.clone()),
        _ => Scalar::Bool(false),
    }
}

fn field() -> impl Strategy<Value = Field> {
    prop_oneof![
        6 => prop::sample::select(KEYS.to_vec()).prop_map(Field::from),
        1 => Just(Field::DocumentId),
        1 => Just(Field::Source),
    ]
}

fn leaf() -> impl Strategy<Value = Filter> {
    let op = prop::sample::select(vec![RangeOp::Gt, RangeOp::Gte, RangeOp::Lt, RangeOp::Lte]);
    prop_oneof![
        (field(), scalar()).prop_map(|(f, v)| Filter::eq(f, to_scalar(&v))),
        (field(), scalar()).prop_map(|(f, v)| Filter::ne(f, to_scalar(&v))),
        (field(), op, -4i32..5).prop_map(|(f, op, n)| Filter::Range {
            field: f,
            op,
            value: f64::from(n)
        }),
        (field(), prop::collection::vec(scalar(), 0..3))
            .prop_map(|(f, vs)| Filter::is_in(f, vs.iter().map(to_scalar).collect::<Vec<_>>())),
        (field(), prop::collection::vec(scalar(), 0..3))
            .prop_map(|(f, vs)| Filter::not_in(f, vs.iter().map(to_scalar).collect::<Vec<_>>())),
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

// ---- the naive evaluator, written from the documented semantics ----

fn values_of<'a>(
    field: &Field,
    id: &'a str,
    source: &'a str,
    meta: &'a Map<String, Value>,
) -> Option<Vec<Value>> {
    match field {
        Field::DocumentId => Some(vec![json!(id)]),
        Field::Source => Some(vec![json!(source)]),
        Field::Metadata(k) => match meta.get(k) {
            None => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(v) => Some(vec![v.clone()]),
        },
    }
}

fn scalar_eq(s: &Scalar, v: &Value) -> bool {
    match (s, v) {
        (Scalar::Bool(a), Value::Bool(b)) => a == b,
        (Scalar::Number(a), Value::Number(b)) => b.as_f64() == Some(*a),
        (Scalar::String(a), Value::String(b)) => a == b,
        _ => false,
    }
}

fn naive(f: &Filter, id: &str, source: &str, meta: &Map<String, Value>) -> bool {
    let vals = |field: &Field| values_of(field, id, source, meta).unwrap_or_default();
    match f {
        Filter::Eq { field, value } => vals(field).iter().any(|v| scalar_eq(value, v)),
        Filter::Ne { field, value } => !vals(field).iter().any(|v| scalar_eq(value, v)),
        Filter::Range { field, op, value } => vals(field).iter().any(|v| match v.as_f64() {
            Some(x) if v.is_number() => match op {
                RangeOp::Gt => x > *value,
                RangeOp::Gte => x >= *value,
                RangeOp::Lt => x < *value,
                RangeOp::Lte => x <= *value,
            },
            _ => false,
        }),
        Filter::In { field, values } => vals(field)
            .iter()
            .any(|v| values.iter().any(|s| scalar_eq(s, v))),
        Filter::NotIn { field, values } => !vals(field)
            .iter()
            .any(|v| values.iter().any(|s| scalar_eq(s, v))),
        Filter::Exists { field } => match field {
            Field::Metadata(k) => meta.get(k).is_some_and(|v| !v.is_null()),
            _ => true,
        },
        Filter::And(v) => v.iter().all(|f| naive(f, id, source, meta)),
        Filter::Or(v) => v.iter().any(|f| naive(f, id, source, meta)),
        Filter::Not(f) => !naive(f, id, source, meta),
        _ => unreachable!("new operator without a naive evaluation"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn store_filter_equals_naive(metas in prop::collection::vec(metadata(), 1..12), filters in prop::collection::vec(filter(), 1..8)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let store = MemoryVectorStore::default();
            let ns = Namespace::new("props").unwrap();
            let mut docs = Vec::new();
            for (i, m) in metas.iter().enumerate() {
                let id = format!("d{i}");
                let chunks = doc_chunks(&id, &["text"], Value::Object(m.clone()), 8, i);
                docs.push((id, chunks[0].chunk.clone()));
                store.upsert(&ns, &chunks).await.unwrap();
            }
            for f in &filters {
                let expected: BTreeSet<String> = docs
                    .iter()
                    .filter(|(id, c)| naive(f, id, &c.source, &c.metadata))
                    .map(|(id, _)| id.clone())
                    .collect();
                let by_matches: BTreeSet<String> = docs
                    .iter()
                    .filter(|(_, c)| f.matches(c))
                    .map(|(id, _)| id.clone())
                    .collect();
                prop_assert_eq!(&by_matches, &expected, "Filter::matches vs naive for {:?}", f);
                let hits = store
                    .search(&ns, SearchRequest::dense(unit(8, 0, 0.0), 100).with_filter(f.clone()))
                    .await
                    .unwrap();
                let got: BTreeSet<String> = hits.iter().map(|h| h.chunk.document_id.to_string()).collect();
                prop_assert_eq!(&got, &expected, "store vs naive for {:?}", f);
            }
            Ok(())
        })?;
    }
}
