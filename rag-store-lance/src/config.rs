//! Configuration of [`crate::LanceVectorStore`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rag_core::{Distance, Error, Result};
use serde::{Deserialize, Serialize};

/// The approximate vector index built once a namespace's table reaches
/// [`VectorIndexConfig::build_threshold`] rows; below it, dense search is an
/// exact scan (which is also what every query does until the index exists).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum VectorIndexKind {
    /// Never build one: exact search always.
    None,
    /// IVF partitions with product quantisation (LanceDB's default index).
    /// Queries re-rank `refine_factor × top_k` candidates with the exact
    /// vectors, which restores most of the recall PQ loses.
    IvfPq {
        /// IVF partitions; `None` lets Lance choose (about √rows).
        num_partitions: Option<u32>,
        /// PQ sub-vectors; `None` lets Lance choose (dimension / 16 or / 8).
        num_sub_vectors: Option<u32>,
    },
    /// IVF partitions each holding an HNSW graph over scalar-quantised
    /// (int8) vectors.
    IvfHnswSq {
        /// IVF partitions; `None` lets Lance choose.
        num_partitions: Option<u32>,
        /// Graph neighbours per node (`m`).
        m: u32,
        /// Candidate list while building.
        ef_construction: u32,
    },
}

/// When and how the vector index is built, and how queries use it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct VectorIndexConfig {
    /// The index.
    pub kind: VectorIndexKind,
    /// Rows a table must hold before the index is built (by the upsert that
    /// crosses it, or by [`crate::LanceVectorStore::build_indexes`]).
    /// 50 000 by default: below that an exact scan of 384-d vectors takes a
    /// few milliseconds.
    pub build_threshold: usize,
    /// IVF partitions probed per query (Lance's `nprobes`).
    pub nprobes: usize,
    /// Candidates re-ranked with exact distances, as a multiple of `top_k`
    /// (`None`: no re-ranking).
    pub refine_factor: Option<u32>,
    /// HNSW search breadth (`ef`) for [`VectorIndexKind::IvfHnswSq`].
    pub ef: usize,
}

impl Default for VectorIndexConfig {
    fn default() -> Self {
        Self {
            kind: VectorIndexKind::IvfPq {
                num_partitions: None,
                num_sub_vectors: None,
            },
            build_threshold: 50_000,
            nprobes: 20,
            refine_factor: Some(5),
            ef: 100,
        }
    }
}

impl VectorIndexConfig {
    /// Sets the index kind.
    pub fn with_kind(mut self, kind: VectorIndexKind) -> Self {
        self.kind = kind;
        self
    }
    /// Sets the row count that triggers the build.
    pub fn with_build_threshold(mut self, rows: usize) -> Self {
        self.build_threshold = rows;
        self
    }
    /// Sets `nprobes`.
    pub fn with_nprobes(mut self, nprobes: usize) -> Self {
        self.nprobes = nprobes;
        self
    }
    /// Sets the refine factor.
    pub fn with_refine_factor(mut self, factor: Option<u32>) -> Self {
        self.refine_factor = factor;
        self
    }
    /// Sets HNSW's `ef`.
    pub fn with_ef(mut self, ef: usize) -> Self {
        self.ef = ef;
        self
    }
}

/// The full-text index's analysis (Lance's inverted index). The defaults
/// match rag's in-memory BM25: lower case, English stemming and stop words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct FtsConfig {
    /// Stemming language (Lance's tokenizer languages, e.g. `English`).
    pub language: String,
    /// Stem words.
    pub stem: bool,
    /// Drop the language's stop words.
    pub remove_stop_words: bool,
    /// Fold accents to ASCII (`café` → `cafe`).
    pub ascii_folding: bool,
}

impl Default for FtsConfig {
    fn default() -> Self {
        Self {
            language: "English".to_owned(),
            stem: true,
            remove_stop_words: true,
            ascii_folding: false,
        }
    }
}

/// Configuration of a [`crate::LanceVectorStore`].
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LanceConfig {
    /// Where the database lives: a local directory (created if missing), or
    /// an object-store URI (`s3://…`, `gs://…`, `az://…`) passed through to
    /// LanceDB — those need LanceDB's cloud features, which this crate does
    /// not enable by default.
    pub uri: String,
    /// Vector dimension; every namespace's table is created with it, and a
    /// table of another dimension is refused when opened.
    pub dimensions: usize,
    /// The dense measure.
    pub distance: Distance,
    /// Table names are this prefix plus the namespace.
    pub table_prefix: String,
    /// The vector index.
    pub vector_index: VectorIndexConfig,
    /// The full-text index.
    pub fts: FtsConfig,
    /// How often a table handle checks for versions written by other
    /// processes: `Some(0)` every read (strong consistency, the default),
    /// `None` never (fastest when this process is the only writer).
    pub read_consistency_interval: Option<Duration>,
    /// Options passed to the object store (credentials, endpoint). Values
    /// are treated as secrets: never logged, and `Debug` shows keys only.
    pub storage_options: BTreeMap<String, String>,
}

impl fmt::Debug for LanceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LanceConfig")
            .field("uri", &redact_uri(&self.uri))
            .field("dimensions", &self.dimensions)
            .field("distance", &self.distance)
            .field("table_prefix", &self.table_prefix)
            .field("vector_index", &self.vector_index)
            .field("fts", &self.fts)
            .field("read_consistency_interval", &self.read_consistency_interval)
            .field(
                "storage_options",
                &self
                    .storage_options
                    .keys()
                    .map(|k| (k.as_str(), "<redacted>"))
                    .collect::<BTreeMap<_, _>>(),
            )
            .finish()
    }
}

/// `uri` without any `user:password@` part.
pub fn redact_uri(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://<redacted>@{}", &uri[..scheme], &uri[at + 1..])
        }
        _ => uri.to_owned(),
    }
}

/// Largest vector dimension accepted.
pub const MAX_DIMENSIONS: usize = 16_384;

impl LanceConfig {
    /// A store in `uri` (a directory) for vectors of `dimensions`.
    pub fn new(uri: impl Into<String>, dimensions: usize) -> Self {
        Self {
            uri: uri.into(),
            dimensions,
            distance: Distance::Cosine,
            table_prefix: "rag_".to_owned(),
            vector_index: VectorIndexConfig::default(),
            fts: FtsConfig::default(),
            read_consistency_interval: Some(Duration::ZERO),
            storage_options: BTreeMap::new(),
        }
    }

    /// Sets the distance.
    pub fn with_distance(mut self, distance: Distance) -> Self {
        self.distance = distance;
        self
    }
    /// Sets the table prefix.
    pub fn with_table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }
    /// Sets the vector index configuration.
    pub fn with_vector_index(mut self, index: VectorIndexConfig) -> Self {
        self.vector_index = index;
        self
    }
    /// Sets the full-text configuration.
    pub fn with_fts(mut self, fts: FtsConfig) -> Self {
        self.fts = fts;
        self
    }
    /// Sets the read consistency interval.
    pub fn with_read_consistency_interval(mut self, interval: Option<Duration>) -> Self {
        self.read_consistency_interval = interval;
        self
    }
    /// Adds an object-store option.
    pub fn with_storage_option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.storage_options.insert(key.into(), value.into());
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.uri.trim().is_empty() {
            return Err(Error::invalid_input("lance: uri is empty"));
        }
        if self.dimensions == 0 || self.dimensions > MAX_DIMENSIONS {
            return Err(Error::invalid_input(format!(
                "lance: dimensions must be 1 to {MAX_DIMENSIONS}, got {}",
                self.dimensions
            )));
        }
        if self.table_prefix.len() > 64
            || !self
                .table_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(Error::invalid_input(
                "lance: table_prefix may hold at most 64 ASCII letters, digits, '_' and '-'",
            ));
        }
        let vi = &self.vector_index;
        if vi.nprobes == 0 || vi.ef == 0 {
            return Err(Error::invalid_input("lance: nprobes and ef must be >= 1"));
        }
        if let VectorIndexKind::IvfPq {
            num_sub_vectors: Some(m),
            ..
        } = vi.kind
            && (m == 0 || !self.dimensions.is_multiple_of(m as usize))
        {
            return Err(Error::invalid_input(format!(
                "lance: num_sub_vectors ({m}) must divide the dimension ({})",
                self.dimensions
            )));
        }
        if let VectorIndexKind::IvfHnswSq {
            m, ef_construction, ..
        } = vi.kind
            && (m < 2 || ef_construction < m)
        {
            return Err(Error::invalid_input(
                "lance: HNSW needs m >= 2 and ef_construction >= m",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let cfg = LanceConfig::new("s3://user:hunter2@bucket/db", 4)
            .with_storage_option("aws_secret_access_key", "hunter2");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("aws_secret_access_key"), "{dbg}");
        assert!(dbg.contains("bucket/db"), "{dbg}");
    }

    #[test]
    fn validation() {
        assert!(LanceConfig::new("/tmp/x", 0).validate().is_err());
        assert!(LanceConfig::new("", 4).validate().is_err());
        assert!(
            LanceConfig::new("/tmp/x", 4)
                .with_table_prefix("a b")
                .validate()
                .is_err()
        );
        let pq = VectorIndexConfig::default().with_kind(VectorIndexKind::IvfPq {
            num_partitions: None,
            num_sub_vectors: Some(5),
        });
        assert!(
            LanceConfig::new("/tmp/x", 16)
                .with_vector_index(pq)
                .validate()
                .is_err()
        );
        assert!(LanceConfig::new("/tmp/x", 16).validate().is_ok());
    }
}
