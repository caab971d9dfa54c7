//! The point layout: ids, payload, and the sparse BM25 vectors.

use std::collections::HashMap;

use qdrant_client::qdrant::{
    self, ListValue, PointId, PointStruct, Struct, Vector, Vectors, value::Kind,
};
use rag_core::text::Analyzer;
use rag_core::{Chunk, ChunkId, DocumentId, Error, Metadata, Namespace, Result};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::config::Bm25Config;
use crate::error::BACKEND;

/// The dense vector's name in the collection.
pub const DENSE: &str = "dense";
/// The sparse BM25 vector's name in the collection.
pub const SPARSE: &str = "bm25";

/// Payload keys of a point.
pub(crate) mod key {
    pub(crate) const NAMESPACE: &str = "namespace";
    pub(crate) const DOCUMENT_ID: &str = "document_id";
    pub(crate) const CHUNK_ID: &str = "chunk_id";
    pub(crate) const SOURCE: &str = "source";
    pub(crate) const TEXT: &str = "text";
    pub(crate) const DOCUMENT_HASH: &str = "document_hash";
    pub(crate) const POSITION: &str = "position";
    pub(crate) const BYTE_START: &str = "byte_start";
    pub(crate) const BYTE_END: &str = "byte_end";
    pub(crate) const TOKEN_COUNT: &str = "token_count";
    pub(crate) const METADATA: &str = "metadata";
    /// The metadata keys whose value is not `null`: `exists` filters match
    /// on it, because Qdrant's `is_empty` cannot tell a missing field from
    /// an empty array (which `exists` must match).
    pub(crate) const METADATA_KEYS: &str = "metadata_keys";
}

/// The point id of a chunk in a namespace: a UUID made of the first 128
/// bits of SHA-256 over the namespace and the chunk id. The namespace is
/// part of it because with [`crate::Tenancy::Payload`] one collection holds
/// every namespace, and two tenants may store the same document.
pub fn point_id(namespace: &Namespace, chunk: &ChunkId) -> PointId {
    let mut h = Sha256::new();
    h.update(b"rag-qdrant-point-v1\0");
    h.update(namespace.as_str().as_bytes());
    h.update([0]);
    h.update(chunk.as_str().as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    PointId::from(uuid::Uuid::from_bytes(bytes).to_string())
}

/// The term id of an analysed term: FNV-1a (32 bits) of its bytes. A
/// collision merges two rare terms' statistics; with a 32-bit space and
/// vocabularies of 10⁵ terms it touches a handful of terms at most.
pub fn term_id(term: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in term.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The sparse vector of a chunk's text: BM25's term-frequency part per
/// term (the IDF is applied by Qdrant). Empty when the text has no terms.
pub fn document_sparse(analyzer: &Analyzer, bm25: &Bm25Config, text: &str) -> (Vec<u32>, Vec<f32>) {
    let mut tf: HashMap<u32, u32> = HashMap::new();
    let mut len = 0u32;
    analyzer.for_each_term(text, |t| {
        *tf.entry(term_id(t)).or_default() += 1;
        len += 1;
    });
    let norm = bm25.k1 * (1.0 - bm25.b + bm25.b * len as f32 / bm25.avg_len);
    let mut terms: Vec<(u32, f32)> = tf
        .into_iter()
        .map(|(id, n)| {
            let n = n as f32;
            (id, n * (bm25.k1 + 1.0) / (n + norm))
        })
        .collect();
    terms.sort_unstable_by_key(|(id, _)| *id);
    terms.into_iter().unzip()
}

/// The sparse vector of a query: weight 1 per distinct term, so the score
/// is Σ idf(t) · tf-part(t) — BM25 with the configured average length.
pub fn query_sparse(analyzer: &Analyzer, text: &str) -> (Vec<u32>, Vec<f32>) {
    let mut ids: Vec<u32> = Vec::new();
    analyzer.for_each_term(text, |t| ids.push(term_id(t)));
    ids.sort_unstable();
    ids.dedup();
    let values = vec![1.0; ids.len()];
    (ids, values)
}

/// JSON → Qdrant payload value. Integers stay integers (so they read back
/// as written), other numbers are doubles.
pub(crate) fn to_value(v: &Json) -> qdrant::Value {
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Kind::IntegerValue(i),
            None => Kind::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(to_value).collect(),
        }),
        Json::Object(m) => Kind::StructValue(Struct {
            fields: m.iter().map(|(k, v)| (k.clone(), to_value(v))).collect(),
        }),
    };
    qdrant::Value { kind: Some(kind) }
}

/// Qdrant payload value → JSON.
pub(crate) fn to_json(v: &qdrant::Value) -> Json {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::IntegerValue(i)) => Json::from(*i),
        Some(Kind::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(l)) => Json::Array(l.values.iter().map(to_json).collect()),
        Some(Kind::StructValue(s)) => Json::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect(),
        ),
    }
}

fn string(s: &str) -> qdrant::Value {
    qdrant::Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    }
}

fn integer(i: i64) -> qdrant::Value {
    qdrant::Value {
        kind: Some(Kind::IntegerValue(i)),
    }
}

/// The point of a chunk: the dense vector, the sparse vector (when the
/// text has terms) and the chunk as payload.
pub fn point(
    namespace: &Namespace,
    chunk: &Chunk,
    vector: Vec<f32>,
    sparse: (Vec<u32>, Vec<f32>),
) -> PointStruct {
    let mut payload: HashMap<String, qdrant::Value> = HashMap::with_capacity(12);
    payload.insert(key::NAMESPACE.into(), string(namespace.as_str()));
    payload.insert(key::DOCUMENT_ID.into(), string(chunk.document_id.as_str()));
    payload.insert(key::CHUNK_ID.into(), string(chunk.id.as_str()));
    payload.insert(key::SOURCE.into(), string(&chunk.source));
    payload.insert(key::TEXT.into(), string(&chunk.text));
    payload.insert(key::DOCUMENT_HASH.into(), string(&chunk.document_hash));
    payload.insert(key::POSITION.into(), integer(i64::from(chunk.position)));
    payload.insert(
        key::BYTE_START.into(),
        integer(chunk.byte_range.start as i64),
    );
    payload.insert(key::BYTE_END.into(), integer(chunk.byte_range.end as i64));
    if let Some(n) = chunk.token_count {
        payload.insert(key::TOKEN_COUNT.into(), integer(i64::from(n)));
    }
    payload.insert(
        key::METADATA.into(),
        to_value(&Json::Object(chunk.metadata.clone())),
    );
    payload.insert(
        key::METADATA_KEYS.into(),
        qdrant::Value {
            kind: Some(Kind::ListValue(ListValue {
                values: chunk
                    .metadata
                    .iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, _)| string(k))
                    .collect(),
            })),
        },
    );
    let mut vectors: HashMap<String, Vector> = HashMap::with_capacity(2);
    vectors.insert(DENSE.into(), Vector::new_dense(vector));
    if !sparse.0.is_empty() {
        vectors.insert(SPARSE.into(), Vector::new_sparse(sparse.0, sparse.1));
    }
    PointStruct {
        id: Some(point_id(namespace, &chunk.id)),
        payload,
        vectors: Some(Vectors::from(vectors)),
    }
}

fn corrupt(what: &str) -> Error {
    Error::Corrupt {
        location: format!("{BACKEND} payload"),
        message: format!("a point's payload has no valid {what}: not written by rag-store-qdrant?"),
    }
}

fn get_str<'a>(p: &'a HashMap<String, qdrant::Value>, k: &str) -> Result<&'a str> {
    match p.get(k).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => Ok(s),
        _ => Err(corrupt(k)),
    }
}

fn get_int(p: &HashMap<String, qdrant::Value>, k: &str) -> Result<Option<i64>> {
    match p.get(k).and_then(|v| v.kind.as_ref()) {
        Some(Kind::IntegerValue(i)) => Ok(Some(*i)),
        Some(Kind::DoubleValue(d)) if d.fract() == 0.0 => Ok(Some(*d as i64)),
        None | Some(Kind::NullValue(_)) => Ok(None),
        _ => Err(corrupt(k)),
    }
}

fn get_usize(p: &HashMap<String, qdrant::Value>, k: &str) -> Result<usize> {
    get_int(p, k)?
        .and_then(|i| usize::try_from(i).ok())
        .ok_or_else(|| corrupt(k))
}

/// The payload field of a string key (document id, hash, source).
pub(crate) fn payload_str<'a>(p: &'a HashMap<String, qdrant::Value>, k: &str) -> Result<&'a str> {
    get_str(p, k)
}

/// A chunk read back from a point's payload.
pub(crate) fn chunk_of(p: &HashMap<String, qdrant::Value>) -> Result<Chunk> {
    let metadata: Metadata = match p.get(key::METADATA).map(to_json) {
        Some(Json::Object(m)) => m,
        None | Some(Json::Null) => Metadata::new(),
        Some(_) => return Err(corrupt(key::METADATA)),
    };
    let position = u32::try_from(get_usize(p, key::POSITION)?).map_err(|_| corrupt("position"))?;
    let token_count = get_int(p, key::TOKEN_COUNT)?.and_then(|n| u32::try_from(n).ok());
    Ok(Chunk {
        id: ChunkId::from_string(get_str(p, key::CHUNK_ID)?.to_owned()),
        document_id: DocumentId::new(get_str(p, key::DOCUMENT_ID)?)
            .map_err(|_| corrupt(key::DOCUMENT_ID))?,
        source: get_str(p, key::SOURCE)?.to_owned(),
        text: get_str(p, key::TEXT)?.to_owned(),
        byte_range: get_usize(p, key::BYTE_START)?..get_usize(p, key::BYTE_END)?,
        position,
        token_count,
        metadata,
        document_hash: get_str(p, key::DOCUMENT_HASH)?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rag_core::Document;
    use serde_json::json;

    #[test]
    fn point_ids_are_deterministic_and_per_namespace() {
        let a = Namespace::new("a").unwrap();
        let b = Namespace::new("b").unwrap();
        let c = ChunkId::from_string("1282edf98deda797c9f5efcd9344cca5".into());
        assert_eq!(point_id(&a, &c), point_id(&a, &c));
        assert_ne!(point_id(&a, &c), point_id(&b, &c));
        // Pinned: ids are stored, so a change must be deliberate.
        assert_eq!(
            point_id(&a, &c),
            PointId::from("4a9eec0b-df8d-06b5-771f-cc88b7220c17".to_owned()),
        );
    }

    #[test]
    fn payload_round_trips_a_chunk() {
        let doc = Document::new("ü.md", "Café crème, 東京 🚀").with_metadata(
            json!({"n": 2021, "f": 2020.5, "tags": ["a", "b"], "nil": null,
                                  "o": {"x": [1, {"y": true}]}, "big": 18446744073709551615u64}),
        );
        let mut chunk = Chunk::from_document(&doc, 3, 0..6);
        chunk.token_count = Some(7);
        let ns = Namespace::default();
        let p = point(&ns, &chunk, vec![0.0; 4], (vec![], vec![]));
        let back = chunk_of(&p.payload).unwrap();
        let mut expected = chunk;
        // u64 beyond i64 is stored as a double.
        expected.metadata["big"] = json!(18446744073709551615f64);
        assert_eq!(back, expected);
        // Key order follows the metadata map (insertion order when
        // serde_json's `preserve_order` is on in the build).
        let mut keys: Vec<String> = serde_json::from_value(to_json(&p.payload[key::METADATA_KEYS]))
            .expect("a list of keys");
        keys.sort();
        assert_eq!(keys, ["big", "f", "n", "o", "tags"]);
    }

    #[test]
    fn sparse_vectors_follow_bm25() {
        let a = Analyzer::default();
        let cfg = Bm25Config::default();
        let (ids, vals) = document_sparse(&a, &cfg, "keys keys rotated");
        assert_eq!(ids.len(), 2);
        let key = ids.iter().position(|i| *i == term_id("key")).unwrap();
        let rot = ids.iter().position(|i| *i == term_id("rotat")).unwrap();
        // len 3, avg 100: norm = 1.2 * (0.25 + 0.75 * 0.03)
        let norm = 1.2 * (0.25 + 0.75 * 3.0 / 100.0);
        assert!((vals[key] - 2.0 * 2.2 / (2.0 + norm)).abs() < 1e-6);
        assert!((vals[rot] - 2.2 / (1.0 + norm)).abs() < 1e-6);
        let (q, w) = query_sparse(&a, "the rotated keys, keys");
        assert_eq!(q.len(), 2);
        assert_eq!(w, [1.0, 1.0]);
        assert!(query_sparse(&a, "the of and").0.is_empty());
    }
}
