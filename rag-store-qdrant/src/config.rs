//! Configuration of [`crate::QdrantStore`].

use std::fmt;
use std::time::Duration;

use rag_core::text::AnalyzerConfig;
use rag_core::{Distance, Error, Result};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Largest vector dimension accepted (Qdrant's own limit is 65 536).
pub const MAX_DIMENSIONS: usize = 65_536;

/// How namespaces map onto Qdrant.
///
/// * [`Tenancy::Payload`] (the default): one collection holds every
///   namespace; each point carries its namespace in a `namespace` payload
///   field with a keyword index marked `is_tenant`, so Qdrant keeps each
///   tenant's points together on disk and builds per-tenant HNSW links
///   (`payload_m`). This is Qdrant's own advice for multitenancy: thousands
///   of tenants cost one collection, not thousands (each with its own WAL,
///   segments and optimizer), and a new tenant needs no DDL on the write
///   path. The price: Qdrant's IDF statistics for the BM25 sparse vectors
///   are per collection, so a tenant's keyword scores are computed with
///   document frequencies of all tenants together.
/// * [`Tenancy::Collection`]: a collection per namespace
///   (`{collection}_{namespace}`), created on its first write. Keyword
///   scores use the tenant's own statistics (as the in-memory reference
///   does) and `delete_namespace` drops a collection. Choose it for a few
///   large tenants, or when tenants must not influence each other's ranking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Tenancy {
    /// One collection, namespaces as an `is_tenant` payload field.
    #[default]
    Payload,
    /// One collection per namespace.
    Collection,
}

/// HNSW index parameters of the dense vector (Qdrant's `hnsw_config`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HnswConfig {
    /// Edges per node of the global graph (`m`). With
    /// [`Tenancy::Payload`], 0 builds no global graph and relies on the
    /// per-tenant graphs of `payload_m` (every query here filters by
    /// tenant), which is Qdrant's multitenancy recipe.
    pub m: u64,
    /// Edges per node of the per-tenant graphs built for the tenant field
    /// (`payload_m`); used with [`Tenancy::Payload`].
    pub payload_m: u64,
    /// Candidates while building (`ef_construct`).
    pub ef_construct: u64,
    /// Below this many kilobytes of vectors matching a filter, Qdrant
    /// scans exactly instead of using the graph (`full_scan_threshold`).
    pub full_scan_threshold_kb: u64,
    /// Candidates while searching (`hnsw_ef`); higher is more accurate.
    pub ef: u64,
    /// Keep the graph on disk instead of in memory.
    pub on_disk: bool,
}

impl Default for HnswConfig {
    fn default() -> Self {
        Self {
            m: 16,
            payload_m: 16,
            ef_construct: 100,
            full_scan_threshold_kb: 10_000,
            ef: 128,
            on_disk: false,
        }
    }
}

impl HnswConfig {
    /// Sets `m`.
    pub fn with_m(mut self, m: u64) -> Self {
        self.m = m;
        self
    }
    /// Sets `payload_m`.
    pub fn with_payload_m(mut self, m: u64) -> Self {
        self.payload_m = m;
        self
    }
    /// Sets `ef_construct`.
    pub fn with_ef_construct(mut self, ef: u64) -> Self {
        self.ef_construct = ef;
        self
    }
    /// Sets the search-time `ef`.
    pub fn with_ef(mut self, ef: u64) -> Self {
        self.ef = ef;
        self
    }
    /// Sets the full-scan threshold, in kilobytes.
    pub fn with_full_scan_threshold_kb(mut self, kb: u64) -> Self {
        self.full_scan_threshold_kb = kb;
        self
    }
    /// Keeps the graph on disk.
    pub fn with_on_disk(mut self, on: bool) -> Self {
        self.on_disk = on;
        self
    }
}

/// BM25 parameters of the sparse keyword vectors.
///
/// Each chunk's sparse vector holds, per term, BM25's term-frequency part
/// `tf·(k1+1) / (tf + k1·(1 − b + b·len/avg_len))`, computed here when the
/// chunk is written; Qdrant multiplies in the IDF at query time (the `idf`
/// modifier of the sparse vector). `avg_len` is fixed (the corpus average
/// is not known when a chunk is written): set it to the average number of
/// terms (after stop words) of your chunks.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Bm25Config {
    /// Term-frequency saturation; 1.2.
    pub k1: f32,
    /// Length normalisation in `[0, 1]`; 0.75.
    pub b: f32,
    /// The assumed average chunk length in terms; 100 (about what a
    /// 1,000-character chunk of English prose leaves after stop words).
    pub avg_len: f32,
}

impl Default for Bm25Config {
    fn default() -> Self {
        Self {
            k1: 1.2,
            b: 0.75,
            avg_len: 100.0,
        }
    }
}

impl Bm25Config {
    /// Sets `k1`.
    pub fn with_k1(mut self, k1: f32) -> Self {
        self.k1 = k1;
        self
    }
    /// Sets `b`.
    pub fn with_b(mut self, b: f32) -> Self {
        self.b = b;
        self
    }
    /// Sets the assumed average length.
    pub fn with_avg_len(mut self, avg_len: f32) -> Self {
        self.avg_len = avg_len;
        self
    }
}

/// The type of a payload index on a metadata field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FieldIndex {
    /// Strings (`eq`, `in` on strings).
    Keyword,
    /// Numbers, integers or not (`eq`, `in` and ranges on numbers); use it
    /// rather than `Integer` unless every value is an integer.
    Float,
    /// Integers only.
    Integer,
    /// Booleans.
    Bool,
}

/// Configuration of a [`crate::QdrantStore`].
///
/// `Debug` never shows the API key.
#[derive(Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct QdrantConfig {
    /// The server's gRPC URL, `http://host:6334` (`https://` for TLS, with
    /// the system's root certificates).
    pub url: String,
    /// The API key, sent as the `api-key` header; never logged.
    #[serde(skip_serializing)]
    pub api_key: Option<SecretString>,
    /// The collection ([`Tenancy::Payload`]) or the prefix of the
    /// collections ([`Tenancy::Collection`]).
    pub collection: String,
    /// How namespaces map to collections.
    pub tenancy: Tenancy,
    /// The dense vector's dimension.
    pub dimensions: usize,
    /// The dense measure.
    pub distance: Distance,
    /// The dense vector's HNSW parameters.
    pub hnsw: HnswConfig,
    /// Keep dense vectors on disk (memmap) instead of in memory.
    pub vectors_on_disk: bool,
    /// BM25 of the sparse keyword vectors.
    pub bm25: Bm25Config,
    /// The tokenizer of the keyword side: the same analyzer as the
    /// in-memory store's BM25, by default.
    pub analyzer: AnalyzerConfig,
    /// Metadata fields to index for filtering, with their value type.
    /// Filters work on any field without an index (Qdrant then reads the
    /// payload); an index makes selective filters fast.
    pub indexed_fields: Vec<(String, FieldIndex)>,
    /// Deadline of each request.
    pub timeout: Duration,
    /// Deadline of connecting.
    pub connect_timeout: Duration,
    /// Points per upsert request.
    pub batch_size: usize,
    /// Create the collection(s) and indexes when missing.
    pub create_collection: bool,
}

impl fmt::Debug for QdrantConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QdrantConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("collection", &self.collection)
            .field("tenancy", &self.tenancy)
            .field("dimensions", &self.dimensions)
            .field("distance", &self.distance)
            .field("hnsw", &self.hnsw)
            .field("vectors_on_disk", &self.vectors_on_disk)
            .field("bm25", &self.bm25)
            .field("analyzer", &self.analyzer)
            .field("indexed_fields", &self.indexed_fields)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("batch_size", &self.batch_size)
            .field("create_collection", &self.create_collection)
            .finish()
    }
}

impl QdrantConfig {
    /// A store on the server at `url` (gRPC, usually port 6334) for vectors
    /// of `dimensions`, in the collection `rag_chunks`.
    pub fn new(url: impl Into<String>, dimensions: usize) -> Self {
        Self {
            url: url.into(),
            api_key: None,
            collection: "rag_chunks".to_owned(),
            tenancy: Tenancy::Payload,
            dimensions,
            distance: Distance::Cosine,
            hnsw: HnswConfig::default(),
            vectors_on_disk: false,
            bm25: Bm25Config::default(),
            analyzer: AnalyzerConfig::default(),
            indexed_fields: Vec::new(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            batch_size: 256,
            create_collection: true,
        }
    }

    /// From the environment: `RAG_QDRANT_URL` (or `QDRANT_URL`, default
    /// `http://127.0.0.1:6334`), `QDRANT_API_KEY`, and
    /// `RAG_QDRANT_COLLECTION`.
    pub fn from_env(dimensions: usize) -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let url = var("RAG_QDRANT_URL")
            .or_else(|| var("QDRANT_URL"))
            .unwrap_or_else(|| "http://127.0.0.1:6334".to_owned());
        let mut cfg = Self::new(url, dimensions);
        cfg.api_key = var("QDRANT_API_KEY").map(SecretString::from);
        if let Some(c) = var("RAG_QDRANT_COLLECTION") {
            cfg.collection = c;
        }
        cfg
    }

    /// Sets the API key.
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(SecretString::from(key.into()));
        self
    }
    /// Sets the collection (or collection prefix).
    pub fn with_collection(mut self, name: impl Into<String>) -> Self {
        self.collection = name.into();
        self
    }
    /// Sets the tenancy.
    pub fn with_tenancy(mut self, tenancy: Tenancy) -> Self {
        self.tenancy = tenancy;
        self
    }
    /// Sets the distance.
    pub fn with_distance(mut self, distance: Distance) -> Self {
        self.distance = distance;
        self
    }
    /// Sets the HNSW parameters.
    pub fn with_hnsw(mut self, hnsw: HnswConfig) -> Self {
        self.hnsw = hnsw;
        self
    }
    /// Keeps vectors on disk.
    pub fn with_vectors_on_disk(mut self, on: bool) -> Self {
        self.vectors_on_disk = on;
        self
    }
    /// Sets BM25 parameters.
    pub fn with_bm25(mut self, bm25: Bm25Config) -> Self {
        self.bm25 = bm25;
        self
    }
    /// Sets the keyword analyzer.
    pub fn with_analyzer(mut self, analyzer: AnalyzerConfig) -> Self {
        self.analyzer = analyzer;
        self
    }
    /// Indexes a metadata field for filtering.
    pub fn with_indexed_field(mut self, key: impl Into<String>, index: FieldIndex) -> Self {
        self.indexed_fields.push((key.into(), index));
        self
    }
    /// Sets the request deadline.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets the connect deadline.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
    /// Sets the points per upsert request.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }
    /// Whether to create missing collections and indexes.
    pub fn with_create_collection(mut self, on: bool) -> Self {
        self.create_collection = on;
        self
    }

    pub(crate) fn api_key_str(&self) -> Option<&str> {
        self.api_key.as_ref().map(|k| k.expose_secret())
    }

    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid_input(format!("qdrant: {m}")));
        if self.url.trim().is_empty() {
            return bad("url is empty".into());
        }
        if self.dimensions == 0 || self.dimensions > MAX_DIMENSIONS {
            return bad(format!(
                "dimensions must be 1 to {MAX_DIMENSIONS}, got {}",
                self.dimensions
            ));
        }
        // Collection names: the namespace alphabet, so `{collection}_{ns}`
        // stays a valid name.
        if self.collection.is_empty()
            || self.collection.len() > 128
            || !self
                .collection
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return bad("collection must be 1 to 128 ASCII letters, digits, '_' or '-'".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size must be >= 1".into());
        }
        let b = &self.bm25;
        let ok = b.k1.is_finite()
            && b.k1 >= 0.0
            && (0.0..=1.0).contains(&b.b)
            && b.avg_len.is_finite()
            && b.avg_len > 0.0;
        if !ok {
            return bad("bm25 needs k1 >= 0, b in [0, 1] and avg_len > 0".into());
        }
        if self.hnsw.ef == 0 || self.hnsw.ef_construct == 0 {
            return bad("hnsw ef and ef_construct must be >= 1".into());
        }
        for (key, _) in &self.indexed_fields {
            rag_core::filter::validate_key(key)?;
            crate::filter::metadata_path(key)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_api_key() {
        let cfg = QdrantConfig::new("http://127.0.0.1:6334", 4).with_api_key("hunter2-secret");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
        let json = serde_json::to_string(&cfg).expect("serialize");
        assert!(!json.contains("hunter2"), "{json}");
    }

    #[test]
    fn validation() {
        assert!(QdrantConfig::new("http://x:6334", 4).validate().is_ok());
        assert!(QdrantConfig::new("", 4).validate().is_err());
        assert!(QdrantConfig::new("http://x:6334", 0).validate().is_err());
        assert!(
            QdrantConfig::new("http://x:6334", 4)
                .with_collection("a b")
                .validate()
                .is_err()
        );
        assert!(
            QdrantConfig::new("http://x:6334", 4)
                .with_bm25(Bm25Config::default().with_b(2.0))
                .validate()
                .is_err()
        );
        assert!(
            QdrantConfig::new("http://x:6334", 4)
                .with_indexed_field("", FieldIndex::Keyword)
                .validate()
                .is_err()
        );
    }
}
