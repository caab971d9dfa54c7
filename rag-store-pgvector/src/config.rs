//! Configuration of [`crate::PgVectorStore`] and [`crate::PgSessionStore`].

use std::fmt;
use std::time::Duration;

use rag_core::{Distance, Error, Result};
use serde::{Deserialize, Serialize};

/// Largest dimension pgvector's HNSW index accepts for `vector` columns.
pub const MAX_VECTOR_DIMS: usize = 2_000;
/// Largest dimension pgvector's HNSW index accepts for `halfvec` columns.
pub const MAX_HALFVEC_DIMS: usize = 4_000;

/// How vectors are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorType {
    /// `vector(d)`: 32-bit floats, up to 2 000 dimensions in an HNSW index.
    #[default]
    Vector,
    /// `halfvec(d)`: 16-bit floats, half the space, up to 4 000 dimensions
    /// in an HNSW index. Queries are cast to `halfvec` too.
    HalfVec,
}

impl VectorType {
    pub(crate) fn sql_name(self) -> &'static str {
        match self {
            Self::Vector => "vector",
            Self::HalfVec => "halfvec",
        }
    }
}

/// pgvector 0.8's iterative index scans (`hnsw.iterative_scan`): when a
/// filter rejects most candidates of the first `ef_search`, the scan goes on
/// until `top_k` rows pass (or `max_scan_tuples` were visited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IterativeScan {
    /// No iterative scan: a selective filter may return fewer than `top_k`.
    Off,
    /// Results may come slightly out of order from the index; the store
    /// re-sorts them by distance. The default.
    #[default]
    RelaxedOrder,
    /// Results in exact distance order (slower).
    StrictOrder,
}

impl IterativeScan {
    pub(crate) fn guc(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::RelaxedOrder => "relaxed_order",
            Self::StrictOrder => "strict_order",
        }
    }
}

/// HNSW index and query parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct HnswConfig {
    /// Neighbours per node (`m`), 2 to 100; 16 by default. Fixed when the
    /// index is created.
    pub m: u32,
    /// Candidate list size while building (`ef_construction`), at least
    /// `2 * m`; 64 by default. Fixed when the index is created.
    pub ef_construction: u32,
    /// Candidate list size while searching (`hnsw.ef_search`), 1 to 1 000;
    /// 100 by default. Raised to `top_k` for larger requests; overridable per
    /// query with [`crate::PgVectorStore::search_with_ef`].
    pub ef_search: u32,
    /// Iterative scans for filtered queries.
    pub iterative_scan: IterativeScan,
    /// Most tuples an iterative scan visits (`hnsw.max_scan_tuples`);
    /// pgvector's default (20 000) when `None`.
    pub max_scan_tuples: Option<u32>,
}

impl Default for HnswConfig {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 64,
            ef_search: 100,
            iterative_scan: IterativeScan::RelaxedOrder,
            max_scan_tuples: None,
        }
    }
}

impl HnswConfig {
    /// Sets `m` and `ef_construction`.
    pub fn with_build(mut self, m: u32, ef_construction: u32) -> Self {
        self.m = m;
        self.ef_construction = ef_construction;
        self
    }
    /// Sets the default `ef_search`.
    pub fn with_ef_search(mut self, ef_search: u32) -> Self {
        self.ef_search = ef_search;
        self
    }
    /// Sets the iterative scan mode.
    pub fn with_iterative_scan(mut self, mode: IterativeScan) -> Self {
        self.iterative_scan = mode;
        self
    }
    /// Sets `hnsw.max_scan_tuples`.
    pub fn with_max_scan_tuples(mut self, n: Option<u32>) -> Self {
        self.max_scan_tuples = n;
        self
    }

    fn validate(&self) -> Result<()> {
        if !(2..=100).contains(&self.m) {
            return Err(Error::invalid_input(format!(
                "hnsw m must be 2 to 100, got {}",
                self.m
            )));
        }
        if self.ef_construction < 2 * self.m || self.ef_construction > 1_000 {
            return Err(Error::invalid_input(format!(
                "hnsw ef_construction must be 2*m to 1000, got {}",
                self.ef_construction
            )));
        }
        validate_ef_search(self.ef_search)
    }
}

pub(crate) fn validate_ef_search(ef: u32) -> Result<()> {
    if !(1..=1_000).contains(&ef) {
        return Err(Error::invalid_input(format!(
            "hnsw ef_search must be 1 to 1000, got {ef}"
        )));
    }
    Ok(())
}

/// Connection pool settings (used by `connect`; a pool handed to
/// `from_pool` keeps its own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Most connections; 10 by default.
    pub max_connections: u32,
    /// Connections kept open when idle; 0 by default.
    pub min_connections: u32,
    /// How long to wait for a free connection before failing with a
    /// retryable error; 30 s by default.
    pub acquire_timeout: Duration,
    /// Idle connections are closed after this; 10 minutes by default.
    pub idle_timeout: Option<Duration>,
    /// Connections are replaced after this; 30 minutes by default.
    pub max_lifetime: Option<Duration>,
    /// `statement_timeout` set on every connection; none by default.
    pub statement_timeout: Option<Duration>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(30),
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(1800)),
            statement_timeout: None,
        }
    }
}

impl PoolConfig {
    /// Sets the most connections.
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }
    /// Sets the idle minimum.
    pub fn with_min_connections(mut self, n: u32) -> Self {
        self.min_connections = n;
        self
    }
    /// Sets the acquire timeout.
    pub fn with_acquire_timeout(mut self, t: Duration) -> Self {
        self.acquire_timeout = t;
        self
    }
    /// Sets the idle timeout.
    pub fn with_idle_timeout(mut self, t: Option<Duration>) -> Self {
        self.idle_timeout = t;
        self
    }
    /// Sets the connection lifetime.
    pub fn with_max_lifetime(mut self, t: Option<Duration>) -> Self {
        self.max_lifetime = t;
        self
    }
    /// Sets the per-connection `statement_timeout`.
    pub fn with_statement_timeout(mut self, t: Option<Duration>) -> Self {
        self.statement_timeout = t;
        self
    }
}

/// Configuration of a [`crate::PgVectorStore`].
///
/// ```
/// use rag_core::Distance;
/// use rag_store_pgvector::{HnswConfig, PgVectorConfig};
///
/// let cfg = PgVectorConfig::default()
///     .with_dimensions(384)
///     .with_distance(Distance::Cosine)
///     .with_table_prefix("docs")
///     .with_hnsw(HnswConfig::default().with_ef_search(80))
///     .with_url("postgres://app:secret@db.internal/rag");
/// assert!(!format!("{cfg:?}").contains("secret"), "Debug redacts the password");
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PgVectorConfig {
    /// The database URL, for [`crate::PgVectorStore::from_config`]. Never
    /// serialized, and redacted by `Debug`.
    #[serde(skip_serializing)]
    pub url: Option<String>,
    /// Prefix of the tables: `{prefix}_chunks`, `{prefix}_migrations`,
    /// `{prefix}_sessions`, `{prefix}_messages`. 1 to 40 characters of
    /// `[a-z0-9_]`, starting with a letter or `_`; `rag` by default. Stores
    /// with different dimensions or distances need different prefixes.
    pub table_prefix: String,
    /// The vector dimension; 384 by default.
    pub dimensions: usize,
    /// The similarity measure the index is built for.
    pub distance: Distance,
    /// `vector` or `halfvec` storage.
    pub vector_type: VectorType,
    /// HNSW parameters.
    pub hnsw: HnswConfig,
    /// The text search configuration (a `pg_ts_config` name) of the keyword
    /// index; `english` by default. Fixed when the table is created.
    pub language: String,
    /// Rows per `INSERT … SELECT FROM UNNEST(…)` statement; 500 by default.
    pub batch_size: usize,
    /// Run the migrations on connect; true by default.
    pub run_migrations: bool,
    /// Pool settings used by `connect`.
    pub pool: PoolConfig,
}

impl Default for PgVectorConfig {
    fn default() -> Self {
        Self {
            url: None,
            table_prefix: "rag".to_owned(),
            dimensions: 384,
            distance: Distance::Cosine,
            vector_type: VectorType::Vector,
            hnsw: HnswConfig::default(),
            language: "english".to_owned(),
            batch_size: 500,
            run_migrations: true,
            pool: PoolConfig::default(),
        }
    }
}

impl fmt::Debug for PgVectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgVectorConfig")
            .field("url", &self.url.as_deref().map(redact_url))
            .field("table_prefix", &self.table_prefix)
            .field("dimensions", &self.dimensions)
            .field("distance", &self.distance)
            .field("vector_type", &self.vector_type)
            .field("hnsw", &self.hnsw)
            .field("language", &self.language)
            .field("batch_size", &self.batch_size)
            .field("run_migrations", &self.run_migrations)
            .field("pool", &self.pool)
            .finish()
    }
}

impl PgVectorConfig {
    /// The defaults, overridden by the environment: the URL from
    /// `RAG_PG_URL` or else `DATABASE_URL`; `RAG_PG_DIMENSIONS`,
    /// `RAG_PG_TABLE_PREFIX` and `RAG_PG_LANGUAGE` when set. A malformed
    /// value is `InvalidInput`.
    pub fn from_env() -> Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let mut cfg = Self {
            url: var("RAG_PG_URL").or_else(|| var("DATABASE_URL")),
            ..Self::default()
        };
        if let Some(d) = var("RAG_PG_DIMENSIONS") {
            cfg.dimensions = d.parse().map_err(|_| {
                Error::invalid_input(format!("RAG_PG_DIMENSIONS must be a number, got {d:?}"))
            })?;
        }
        if let Some(p) = var("RAG_PG_TABLE_PREFIX") {
            cfg.table_prefix = p;
        }
        if let Some(l) = var("RAG_PG_LANGUAGE") {
            cfg.language = l;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Sets the URL.
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }
    /// Sets the table prefix.
    pub fn with_table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }
    /// Sets the dimension.
    pub fn with_dimensions(mut self, d: usize) -> Self {
        self.dimensions = d;
        self
    }
    /// Sets the distance.
    pub fn with_distance(mut self, d: Distance) -> Self {
        self.distance = d;
        self
    }
    /// Sets the vector storage type.
    pub fn with_vector_type(mut self, t: VectorType) -> Self {
        self.vector_type = t;
        self
    }
    /// Sets the HNSW parameters.
    pub fn with_hnsw(mut self, h: HnswConfig) -> Self {
        self.hnsw = h;
        self
    }
    /// Sets the text search configuration.
    pub fn with_language(mut self, language: impl Into<String>) -> Self {
        self.language = language.into();
        self
    }
    /// Sets the rows per insert statement.
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }
    /// Whether `connect` runs the migrations.
    pub fn with_run_migrations(mut self, run: bool) -> Self {
        self.run_migrations = run;
        self
    }
    /// Sets the pool settings.
    pub fn with_pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// Checks every field; stores call this before touching the database.
    pub fn validate(&self) -> Result<()> {
        validate_prefix(&self.table_prefix)?;
        validate_language(&self.language)?;
        let max = match self.vector_type {
            VectorType::Vector => MAX_VECTOR_DIMS,
            VectorType::HalfVec => MAX_HALFVEC_DIMS,
        };
        if self.dimensions == 0 || self.dimensions > max {
            return Err(Error::invalid_input(format!(
                "dimensions must be 1 to {max} for {} (use halfvec for up to {MAX_HALFVEC_DIMS}), got {}",
                self.vector_type.sql_name(),
                self.dimensions
            )));
        }
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return Err(Error::invalid_input(format!(
                "batch_size must be 1 to 10000, got {}",
                self.batch_size
            )));
        }
        self.hnsw.validate()
    }
}

/// Configuration of a [`crate::PgSessionStore`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct PgSessionConfig {
    /// Prefix of the tables (`{prefix}_sessions`, `{prefix}_messages`,
    /// `{prefix}_migrations`); `rag` by default, as for the vector store.
    pub table_prefix: String,
    /// Idle time to live of a session created without one; `None`: such
    /// sessions never expire. 24 hours by default.
    pub default_ttl: Option<Duration>,
    /// Most messages kept per session (the oldest are dropped); 1 000 by
    /// default.
    pub max_messages: usize,
}

impl Default for PgSessionConfig {
    fn default() -> Self {
        Self {
            table_prefix: "rag".to_owned(),
            default_ttl: Some(Duration::from_secs(24 * 60 * 60)),
            max_messages: 1_000,
        }
    }
}

impl PgSessionConfig {
    /// Sets the table prefix.
    pub fn with_table_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.table_prefix = prefix.into();
        self
    }
    /// Sets the default idle TTL.
    pub fn with_default_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.default_ttl = ttl;
        self
    }
    /// Sets the most messages kept per session.
    pub fn with_max_messages(mut self, n: usize) -> Self {
        self.max_messages = n;
        self
    }
    /// Checks the prefix.
    pub fn validate(&self) -> Result<()> {
        validate_prefix(&self.table_prefix)
    }
}

/// Table prefixes are formatted into SQL as identifiers, so they are held to
/// a strict allow-list.
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 40
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !prefix.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "table prefix must be 1 to 40 of [a-z0-9_], not starting with a digit, got {prefix:?}"
        )))
    }
}

/// The text search configuration is the one value written into DDL as a
/// literal (a generated column cannot take a parameter): only `[a-z_]+` is
/// accepted here, and the migration checks it names a `pg_ts_config`.
pub(crate) fn validate_language(language: &str) -> Result<()> {
    let ok = !language.is_empty()
        && language.len() <= 63
        && language
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "language must be a text search configuration name of [a-z_], got {language:?}"
        )))
    }
}

/// The URL with its password replaced by `***`.
pub fn redact_url(url: &str) -> String {
    // scheme://user:password@host/...
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            let redacted = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!(
                "{}{}@{}",
                &url[..scheme_end + 3],
                redacted,
                &authority[at + 1..]
            )
        }
        None => url[..scheme_end + 3 + authority_end].to_owned(),
    };
    let tail = &rest[authority_end..];
    // `?password=...` in the query string.
    match tail.split_once('?') {
        Some((path, query)) => {
            let q: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            out.push_str(path);
            out.push('?');
            out.push_str(&q.join("&"));
        }
        None => out.push_str(tail),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("postgres://u:p%40ss@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=hunter2&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(redact_url("not a url"), "not a url");
        let cfg = PgVectorConfig::default().with_url("postgres://a:hunter2@h/db");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("a:***@h/db"));
        let json = serde_json::to_string(&cfg).unwrap();
        assert!(!json.contains("hunter2"), "url is never serialized: {json}");
    }

    #[test]
    fn validation() {
        assert!(PgVectorConfig::default().validate().is_ok());
        assert!(
            PgVectorConfig::default()
                .with_table_prefix("x; drop")
                .validate()
                .is_err()
        );
        assert!(
            PgVectorConfig::default()
                .with_table_prefix("9a")
                .validate()
                .is_err()
        );
        assert!(
            PgVectorConfig::default()
                .with_language("english'")
                .validate()
                .is_err()
        );
        assert!(
            PgVectorConfig::default()
                .with_dimensions(3072)
                .validate()
                .is_err()
        );
        assert!(
            PgVectorConfig::default()
                .with_dimensions(3072)
                .with_vector_type(VectorType::HalfVec)
                .validate()
                .is_ok()
        );
        assert!(
            PgVectorConfig::default()
                .with_hnsw(HnswConfig::default().with_build(16, 8))
                .validate()
                .is_err()
        );
        let cfg: PgVectorConfig = serde_json::from_str(r#"{"dimensions": 8}"#).unwrap();
        assert_eq!(cfg.dimensions, 8);
        assert_eq!(cfg.table_prefix, "rag");
    }
}
