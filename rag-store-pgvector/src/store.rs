//! [`PgVectorStore`]: the [`VectorStore`] on PostgreSQL + pgvector.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use pgvector::Vector;
use rag_core::filter::FilterOp;
use rag_core::search::{fuse, validate_upsert};
use rag_core::{
    Capabilities, Chunk, ChunkId, Distance, DocumentId, DocumentInfo, EmbeddedChunk, Error,
    Metadata, Namespace, Result, ScoredChunk, SearchMode, SearchRequest, VectorStore,
};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::config::{PgVectorConfig, VectorType, validate_ef_search};
use crate::error::{BACKEND, db};
use crate::filter::{bind_all, translate};
use crate::schema::{self, Tables};

/// The operators the SQL translation implements (listed, not
/// `FilterOp::ALL`, so that an operator added to the core later is
/// `Unsupported` here until it is translated).
const FILTER_OPS: [FilterOp; 7] = [
    FilterOp::Eq,
    FilterOp::Ne,
    FilterOp::Range,
    FilterOp::In,
    FilterOp::NotIn,
    FilterOp::Exists,
    FilterOp::Logic,
];

const COLUMNS: &str = "id, document_id, source, document_hash, position, byte_start, byte_end, token_count, text, metadata";

/// A [`VectorStore`] on PostgreSQL with pgvector, through a `sqlx` pool.
///
/// # Layout
/// One table, `{prefix}_chunks`, holds every namespace: `namespace` is the
/// first column of the primary key `(namespace, id)` and of the
/// `(namespace, document_id)` index, so per-tenant lookups, counts and
/// deletes are index range scans, and one HNSW index and one GIN index serve
/// all tenants. A table per namespace would multiply catalog entries and
/// index builds by the number of tenants (thousands of small tenants are the
/// common case), need DDL on the write path, and give each small tenant a
/// poorly connected HNSW graph; with one table, a namespace is just a filter
/// that iterative index scans satisfy. Stores of different dimensions or
/// distances use different table prefixes.
///
/// # Searches
/// * Dense: `ORDER BY embedding <=> $q` (`<#>` inner product, `<->` L2)
///   through the HNSW index, inside a transaction that sets
///   `hnsw.ef_search` and `hnsw.iterative_scan` locally, so a selective
///   filter still fills `top_k`. Scores: cosine similarity `1 - distance`,
///   the inner product, or the negated L2 distance (higher is better).
/// * Keyword: `tsv @@ websearch_to_tsquery(language, $q)` ranked by
///   `ts_rank_cd`, through a GIN index on a generated `tsvector` column.
/// * Hybrid: both lists (the best `SearchRequest::fusion_pool()` of each, by
///   default `max(4 × top_k, 50)`) read in one
///   repeatable-read transaction and fused by the request's [`rag_core::Fusion`].
/// * Filters: translated to SQL with every key and value bound (see
///   `filter.rs`), with exactly [`rag_core::Filter::matches`]' semantics.
///
/// # Writes
/// `upsert` runs in one transaction: it takes an advisory lock per document
/// (so concurrent upserts of one document serialize), deletes the
/// documents' old chunks and inserts the new ones with
/// `INSERT … SELECT FROM UNNEST(…)` in batches of `batch_size` rows. A
/// reader sees the old version or the new one; a failure, including a lost
/// connection, rolls everything back.
///
/// ```no_run
/// use rag_store_pgvector::{PgVectorConfig, PgVectorStore};
/// # async fn demo() -> rag_core::Result<()> {
/// let store = PgVectorStore::connect(
///     "postgres://postgres@127.0.0.1:5432/rag",
///     PgVectorConfig::default().with_dimensions(384),
/// )
/// .await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgVectorStore {
    pool: PgPool,
    config: PgVectorConfig,
    tables: Tables,
    /// Whether the pool's connections were set up with the configured
    /// hnsw settings (pools made by `connect`).
    session_defaults: bool,
}

/// `SET` statements for the hnsw settings: `SET LOCAL` inside a transaction
/// (`local`), session-wide otherwise. Only validated integers and fixed
/// keywords are formatted here.
fn hnsw_settings(cfg: &PgVectorConfig, ef_search: Option<u32>, local: bool) -> String {
    let scope = if local { "SET LOCAL" } else { "SET" };
    let h = &cfg.hnsw;
    let mut s = format!(
        "{scope} hnsw.ef_search = {}; {scope} hnsw.iterative_scan = {}",
        ef_search.unwrap_or(h.ef_search),
        h.iterative_scan.guc()
    );
    if let Some(n) = h.max_scan_tuples {
        s.push_str(&format!("; {scope} hnsw.max_scan_tuples = {n}"));
    }
    s
}

impl fmt::Debug for PgVectorStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgVectorStore")
            .field("table", &self.tables.chunks)
            .field("config", &self.config)
            .field("pool_size", &self.pool.size())
            .finish()
    }
}

/// Builds a pool from the config's [`crate::PoolConfig`].
/// `init`, when given, runs on every new connection (session settings).
pub(crate) async fn connect_pool(
    url: &str,
    pool: &crate::PoolConfig,
    init: Option<String>,
) -> Result<PgPool> {
    let mut opts = PgConnectOptions::from_str(url).map_err(db)?;
    opts = opts.application_name("rag");
    if let Some(t) = pool.statement_timeout {
        opts = opts.options([("statement_timeout", format!("{}", t.as_millis()))]);
    }
    let mut options = PgPoolOptions::new();
    if let Some(init) = init {
        let init: std::sync::Arc<str> = init.into();
        options = options.after_connect(move |conn, _| {
            let init = init.clone();
            Box::pin(async move {
                sqlx::Executor::execute(conn, &*init).await?;
                Ok(())
            })
        });
    }
    options
        .max_connections(pool.max_connections)
        .min_connections(pool.min_connections)
        .acquire_timeout(pool.acquire_timeout)
        .idle_timeout(pool.idle_timeout)
        .max_lifetime(pool.max_lifetime)
        .connect_with(opts)
        .await
        .map_err(db)
}

impl PgVectorStore {
    /// Connects a new pool to `url` (pool settings from `config.pool`) and,
    /// unless `config.run_migrations` is false, creates or upgrades the
    /// schema. A server that cannot be reached is a retryable
    /// `Error::Backend`; an invalid config is `InvalidInput`.
    pub async fn connect(url: &str, config: PgVectorConfig) -> Result<Self> {
        config.validate()?;
        let pool =
            connect_pool(url, &config.pool, Some(hnsw_settings(&config, None, false))).await?;
        let mut store = Self::from_pool(pool, config).await?;
        // Every connection of this pool carries the configured hnsw
        // settings, so default searches need no transaction.
        store.session_defaults = true;
        Ok(store)
    }

    /// [`connect`](Self::connect) to `config.url` (see
    /// [`PgVectorConfig::from_env`]).
    pub async fn from_config(config: PgVectorConfig) -> Result<Self> {
        let url = config.url.clone().ok_or_else(|| {
            Error::invalid_input("no database URL: set RAG_PG_URL or DATABASE_URL, or config.url")
        })?;
        Self::connect(&url, config).await
    }

    /// A store on an existing pool (its own settings apply); runs the
    /// migrations unless `config.run_migrations` is false.
    pub async fn from_pool(pool: PgPool, config: PgVectorConfig) -> Result<Self> {
        config.validate()?;
        let tables = Tables::new(&config.table_prefix)?;
        let store = Self {
            pool,
            config,
            tables,
            session_defaults: false,
        };
        if store.config.run_migrations {
            store.migrate().await?;
        }
        Ok(store)
    }

    /// Creates or upgrades the schema (idempotent; safe to run from many
    /// processes at once). An existing table created with another
    /// dimension, vector type, distance or language is `Error::Corrupt`.
    pub async fn migrate(&self) -> Result<()> {
        schema::migrate_chunks(&self.pool, &self.config).await
    }

    /// The pool, for sharing with a [`crate::PgSessionStore`].
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The configuration.
    pub fn config(&self) -> &PgVectorConfig {
        &self.config
    }

    /// The chunks table's name.
    pub fn table(&self) -> &str {
        &self.tables.chunks
    }

    /// [`VectorStore::search`] with this query's own `hnsw.ef_search` (1 to
    /// 1 000) instead of the configured default: higher is slower and
    /// recalls more.
    pub async fn search_with_ef(
        &self,
        namespace: &Namespace,
        request: SearchRequest,
        ef_search: u32,
    ) -> Result<Vec<ScoredChunk>> {
        validate_ef_search(ef_search)?;
        self.search_impl(namespace, request, ef_search).await
    }

    /// The SQL of a dense query, with placeholders `$1` (query vector),
    /// `$2` (namespace), `$3` (limit) and the filter's from `$4`. Public for
    /// benchmarks that compare the store with the bare query.
    pub fn dense_sql(&self, filter_sql: &str) -> String {
        let op = self.operator();
        let q = self.query_cast();
        format!(
            "SELECT {COLUMNS}, embedding {op} $1{q} AS distance FROM {t} \
             WHERE namespace = $2 AND {filter_sql} ORDER BY embedding {op} $1{q} LIMIT $3",
            t = self.tables.chunks
        )
    }

    fn operator(&self) -> &'static str {
        match self.config.distance {
            Distance::Cosine => "<=>",
            Distance::Dot => "<#>",
            Distance::Euclidean => "<->",
        }
    }

    fn query_cast(&self) -> String {
        match self.config.vector_type {
            VectorType::Vector => String::new(),
            VectorType::HalfVec => format!("::halfvec({})", self.config.dimensions),
        }
    }

    fn score(&self, distance: f64) -> f32 {
        let s = match self.config.distance {
            Distance::Cosine => 1.0 - distance,
            Distance::Dot | Distance::Euclidean => -distance,
        };
        s as f32
    }

    /// A transaction with the hnsw settings of this query, begun in one
    /// round trip.
    async fn begin_search(
        &self,
        ef_search: u32,
        snapshot: bool,
    ) -> Result<Transaction<'static, Postgres>> {
        // Both lists of a hybrid query come from one snapshot.
        let begin = if snapshot {
            "BEGIN ISOLATION LEVEL REPEATABLE READ"
        } else {
            "BEGIN"
        };
        let sql = format!(
            "{begin}; {}",
            hnsw_settings(&self.config, Some(ef_search), true)
        );
        self.pool.begin_with(sql).await.map_err(db)
    }

    /// The `ef_search` a query of `top_k` runs with: at least `top_k` (up to
    /// pgvector's limit of 1 000), so that scans without iterative mode can
    /// fill it.
    fn effective_ef(ef_search: u32, top_k: usize) -> u32 {
        ef_search.max(top_k.min(1_000) as u32)
    }

    async fn dense_in<'e, E>(
        &self,
        exec: E,
        namespace: &Namespace,
        vector: &[f32],
        request: &SearchRequest,
        limit: usize,
    ) -> Result<Vec<ScoredChunk>>
    where
        E: sqlx::Executor<'e, Database = Postgres>,
    {
        let f = translate(request.filter.as_ref(), 4);
        let sql = self.dense_sql(&f.sql);
        let q = sqlx::query(&sql)
            .bind(Vector::from(vector.to_vec()))
            .bind(namespace.as_str())
            .bind(limit as i64);
        let rows = bind_all(q, &f.binds).fetch_all(exec).await.map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let distance: f64 = r.try_get("distance").map_err(db)?;
            out.push((distance, row_to_chunk(r)?));
        }
        // Iterative scans in relaxed order may return rows slightly out of
        // order: sort by distance (ties by id, for determinism).
        out.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
        Ok(out
            .into_iter()
            .map(|(d, c)| ScoredChunk::dense(c, self.score(d)))
            .collect())
    }

    async fn keyword_in<'e, E>(
        &self,
        exec: E,
        namespace: &Namespace,
        text: &str,
        request: &SearchRequest,
        limit: usize,
    ) -> Result<Vec<ScoredChunk>>
    where
        E: sqlx::Executor<'e, Database = Postgres>,
    {
        let f = translate(request.filter.as_ref(), 5);
        let sql = format!(
            "SELECT {COLUMNS}, ts_rank_cd(tsv, query) AS rank \
             FROM {t}, websearch_to_tsquery($1::regconfig, $2) AS query \
             WHERE namespace = $3 AND tsv @@ query AND {filter} \
             ORDER BY rank DESC, id LIMIT $4",
            t = self.tables.chunks,
            filter = f.sql
        );
        let q = sqlx::query(&sql)
            .bind(self.config.language.as_str())
            .bind(text)
            .bind(namespace.as_str())
            .bind(limit as i64);
        let rows = bind_all(q, &f.binds).fetch_all(exec).await.map_err(db)?;
        rows.iter()
            .map(|r| {
                let rank: f32 = r.try_get("rank").map_err(db)?;
                Ok(ScoredChunk::keyword(row_to_chunk(r)?, rank))
            })
            .collect()
    }

    async fn search_impl(
        &self,
        namespace: &Namespace,
        request: SearchRequest,
        ef_search: u32,
    ) -> Result<Vec<ScoredChunk>> {
        request.validate(&self.capabilities())?;
        let k = request.top_k;
        match request.mode {
            SearchMode::Dense => {
                let v = request.vector.clone().unwrap_or_default();
                let ef = Self::effective_ef(ef_search, k);
                if self.session_defaults && ef == self.config.hnsw.ef_search {
                    // The pool's sessions already carry these settings.
                    return self.dense_in(&self.pool, namespace, &v, &request, k).await;
                }
                let mut tx = self.begin_search(ef, false).await?;
                let hits = self.dense_in(&mut *tx, namespace, &v, &request, k).await?;
                tx.commit().await.map_err(db)?;
                Ok(hits)
            }
            SearchMode::Keyword => {
                let text = request.text.clone().unwrap_or_default();
                self.keyword_in(&self.pool, namespace, &text, &request, k)
                    .await
            }
            SearchMode::Hybrid => {
                let v = request.vector.clone().unwrap_or_default();
                let text = request.text.clone().unwrap_or_default();
                let candidates = request.fusion_pool();
                let ef = Self::effective_ef(ef_search, candidates);
                let mut tx = self.begin_search(ef, true).await?;
                let dense = self
                    .dense_in(&mut *tx, namespace, &v, &request, candidates)
                    .await?;
                let keyword = self
                    .keyword_in(&mut *tx, namespace, &text, &request, candidates)
                    .await?;
                tx.commit().await.map_err(db)?;
                Ok(fuse(dense, keyword, request.fusion, k))
            }
        }
    }

    /// Checks a batch before anything is sent: the checks of every store
    /// ([`validate_upsert`]), then PostgreSQL's own limits.
    fn check_batch(&self, chunks: &[EmbeddedChunk]) -> Result<()> {
        validate_upsert(chunks, Some(self.config.dimensions))?;
        for (i, c) in chunks.iter().enumerate() {
            let ch = &c.chunk;
            if ch.text.contains('\0') || ch.source.contains('\0') || ch.document_hash.contains('\0')
            {
                return Err(Error::invalid_input(format!(
                    "chunk {i}: PostgreSQL text cannot contain NUL characters"
                )));
            }
            if ch.id.as_str().is_empty() || ch.id.as_str().contains('\0') {
                return Err(Error::invalid_input(format!("chunk {i}: invalid chunk id")));
            }
            if ch
                .metadata
                .iter()
                .any(|(k, v)| k.contains('\0') || has_nul(v))
            {
                return Err(Error::invalid_input(format!(
                    "chunk {i}: metadata cannot contain NUL characters (jsonb rejects \\u0000)"
                )));
            }
            if i32::try_from(ch.position).is_err()
                || i64::try_from(ch.byte_range.end).is_err()
                || ch.token_count.is_some_and(|t| i32::try_from(t).is_err())
            {
                return Err(Error::invalid_input(format!(
                    "chunk {i}: position, byte range or token count out of range"
                )));
            }
        }
        Ok(())
    }

    /// Takes the per-document advisory locks of `docs` (sorted) in `tx`.
    async fn lock_documents(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        namespace: &Namespace,
        docs: &[&str],
    ) -> Result<()> {
        sqlx::query(
            "SELECT pg_advisory_xact_lock(k) FROM \
             (SELECT DISTINCT hashtextextended($1 || chr(31) || d, 0) AS k \
              FROM unnest($2::text[]) AS d ORDER BY 1) AS keys",
        )
        .bind(format!(
            "{}{}{}",
            self.tables.chunks,
            '\u{1f}',
            namespace.as_str()
        ))
        .bind(docs)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn insert_batch(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        namespace: &Namespace,
        batch: &[EmbeddedChunk],
    ) -> Result<()> {
        let n = batch.len();
        let mut ids = Vec::with_capacity(n);
        let mut doc_ids = Vec::with_capacity(n);
        let mut sources = Vec::with_capacity(n);
        let mut hashes = Vec::with_capacity(n);
        let mut positions = Vec::with_capacity(n);
        let mut starts = Vec::with_capacity(n);
        let mut ends = Vec::with_capacity(n);
        let mut tokens = Vec::with_capacity(n);
        let mut texts = Vec::with_capacity(n);
        let mut metas = Vec::with_capacity(n);
        let mut vectors = Vec::with_capacity(n);
        for c in batch {
            let ch = &c.chunk;
            ids.push(ch.id.as_str());
            doc_ids.push(ch.document_id.as_str());
            sources.push(ch.source.as_str());
            hashes.push(ch.document_hash.as_str());
            positions.push(ch.position as i32);
            starts.push(ch.byte_range.start as i64);
            ends.push(ch.byte_range.end as i64);
            tokens.push(ch.token_count.map(|t| t as i32));
            texts.push(ch.text.as_str());
            metas.push(Json(&ch.metadata));
            vectors.push(Vector::from(c.vector.clone()));
        }
        let cast = match self.config.vector_type {
            VectorType::Vector => String::new(),
            VectorType::HalfVec => format!("::halfvec({})", self.config.dimensions),
        };
        let sql = format!(
            "INSERT INTO {t} (namespace, id, document_id, source, document_hash, position, \
                 byte_start, byte_end, token_count, text, metadata, embedding) \
             SELECT $1, u.id, u.document_id, u.source, u.document_hash, u.position, u.byte_start, \
                 u.byte_end, u.token_count, u.text, u.metadata, u.embedding{cast} \
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::int8[], \
                 $8::int8[], $9::int4[], $10::text[], $11::jsonb[], $12::vector[]) \
                 AS u(id, document_id, source, document_hash, position, byte_start, byte_end, \
                      token_count, text, metadata, embedding) \
             ON CONFLICT (namespace, id) DO UPDATE SET document_id = EXCLUDED.document_id, \
                 source = EXCLUDED.source, document_hash = EXCLUDED.document_hash, \
                 position = EXCLUDED.position, byte_start = EXCLUDED.byte_start, \
                 byte_end = EXCLUDED.byte_end, token_count = EXCLUDED.token_count, \
                 text = EXCLUDED.text, metadata = EXCLUDED.metadata, embedding = EXCLUDED.embedding",
            t = self.tables.chunks
        );
        sqlx::query(&sql)
            .bind(namespace.as_str())
            .bind(ids)
            .bind(doc_ids)
            .bind(sources)
            .bind(hashes)
            .bind(positions)
            .bind(starts)
            .bind(ends)
            .bind(tokens)
            .bind(texts)
            .bind(metas)
            .bind(vectors)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        Ok(())
    }
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn corrupt(what: &str, e: impl fmt::Display) -> Error {
    Error::Corrupt {
        location: "pgvector chunks table".to_owned(),
        message: format!("{what}: {e}"),
    }
}

fn row_to_chunk(r: &PgRow) -> Result<Chunk> {
    let id: String = r.try_get("id").map_err(db)?;
    let document_id: String = r.try_get("document_id").map_err(db)?;
    let position: i32 = r.try_get("position").map_err(db)?;
    let start: i64 = r.try_get("byte_start").map_err(db)?;
    let end: i64 = r.try_get("byte_end").map_err(db)?;
    let tokens: Option<i32> = r.try_get("token_count").map_err(db)?;
    let Json(metadata): Json<Metadata> = r.try_get("metadata").map_err(db)?;
    Ok(Chunk {
        id: ChunkId::from_string(id),
        document_id: DocumentId::new(document_id).map_err(|e| corrupt("document id", e))?,
        source: r.try_get("source").map_err(db)?,
        text: r.try_get("text").map_err(db)?,
        byte_range: usize::try_from(start).map_err(|e| corrupt("byte_start", e))?
            ..usize::try_from(end).map_err(|e| corrupt("byte_end", e))?,
        position: u32::try_from(position).map_err(|e| corrupt("position", e))?,
        token_count: tokens
            .map(u32::try_from)
            .transpose()
            .map_err(|e| corrupt("token_count", e))?,
        metadata,
        document_hash: r.try_get("document_hash").map_err(db)?,
    })
}

/// Documents per upsert that ingestion is asked to send.
const UPSERT_BATCH_DOCUMENTS: usize = 16;

#[async_trait]
impl VectorStore for PgVectorStore {
    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::full(BACKEND);
        caps.filter_ops = FILTER_OPS.to_vec();
        caps.distance = self.config.distance;
        caps.dimensions = Some(self.config.dimensions);
        caps.persistent = true;
        // One transaction per call: a few documents per call save round
        // trips, and their advisory locks are taken in key order, so
        // concurrent calls cannot deadlock.
        caps.upsert_batch_documents = UPSERT_BATCH_DOCUMENTS;
        caps
    }

    async fn upsert(&self, namespace: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        // Each chunk id once (checked), as one INSERT cannot touch a row twice.
        self.check_batch(chunks)?;
        let mut docs: Vec<&str> = chunks
            .iter()
            .map(|c| c.chunk.document_id.as_str())
            .collect();
        docs.sort_unstable();
        docs.dedup();

        let mut tx = self.pool.begin().await.map_err(db)?;
        self.lock_documents(&mut tx, namespace, &docs).await?;
        sqlx::query(&format!(
            "DELETE FROM {} WHERE namespace = $1 AND document_id = ANY($2::text[])",
            self.tables.chunks
        ))
        .bind(namespace.as_str())
        .bind(&docs)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        for batch in chunks.chunks(self.config.batch_size) {
            self.insert_batch(&mut tx, namespace, batch).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn search(
        &self,
        namespace: &Namespace,
        request: SearchRequest,
    ) -> Result<Vec<ScoredChunk>> {
        self.search_impl(namespace, request, self.config.hnsw.ef_search)
            .await
    }

    async fn delete_document(&self, namespace: &Namespace, id: &DocumentId) -> Result<usize> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        self.lock_documents(&mut tx, namespace, &[id.as_str()])
            .await?;
        let n = sqlx::query(&format!(
            "DELETE FROM {} WHERE namespace = $1 AND document_id = $2",
            self.tables.chunks
        ))
        .bind(namespace.as_str())
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(n as usize)
    }

    async fn document_hashes(
        &self,
        namespace: &Namespace,
        ids: &[DocumentId],
    ) -> Result<Vec<(DocumentId, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let asked: Vec<&str> = ids.iter().map(DocumentId::as_str).collect();
        let rows = sqlx::query(&format!(
            "SELECT DISTINCT ON (document_id) document_id, document_hash FROM {} \
             WHERE namespace = $1 AND document_id = ANY($2::text[]) ORDER BY document_id",
            self.tables.chunks
        ))
        .bind(namespace.as_str())
        .bind(&asked)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut found: HashMap<String, String> = HashMap::with_capacity(rows.len());
        for r in rows {
            found.insert(
                r.try_get("document_id").map_err(db)?,
                r.try_get("document_hash").map_err(db)?,
            );
        }
        // In the order asked.
        Ok(ids
            .iter()
            .filter_map(|id| found.remove(id.as_str()).map(|h| (id.clone(), h)))
            .collect())
    }

    async fn get_chunks(&self, namespace: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let asked: Vec<&str> = ids.iter().map(ChunkId::as_str).collect();
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {} WHERE namespace = $1 AND id = ANY($2::text[])",
            self.tables.chunks
        ))
        .bind(namespace.as_str())
        .bind(&asked)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut by_id: HashMap<String, Chunk> = HashMap::with_capacity(rows.len());
        for r in &rows {
            let c = row_to_chunk(r)?;
            by_id.insert(c.id.as_str().to_owned(), c);
        }
        Ok(ids
            .iter()
            .filter_map(|id| by_id.get(id.as_str()).cloned())
            .collect())
    }

    async fn list_documents(
        &self,
        namespace: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<DocumentInfo>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT document_id, min(source) AS source, min(document_hash) AS document_hash, \
                 count(*) AS chunks \
             FROM {} WHERE namespace = $1 AND ($2::text IS NULL OR document_id > $2::text) \
             GROUP BY document_id ORDER BY document_id LIMIT $3",
            self.tables.chunks
        ))
        .bind(namespace.as_str())
        .bind(after.map(DocumentId::as_str))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("document_id").map_err(db)?;
                let chunks: i64 = r.try_get("chunks").map_err(db)?;
                Ok(DocumentInfo::new(
                    DocumentId::new(id).map_err(|e| corrupt("document id", e))?,
                    r.try_get("source").map_err(db)?,
                    r.try_get("document_hash").map_err(db)?,
                    chunks as usize,
                ))
            })
            .collect()
    }

    async fn scan(
        &self,
        namespace: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<EmbeddedChunk>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The page's document ids, then their rows, both through the
        // `(namespace, document_id)` index; a halfvec column is cast up.
        let rows = sqlx::query(&format!(
            "WITH page AS (SELECT DISTINCT document_id FROM {c} \
                 WHERE namespace = $1 AND ($2::text IS NULL OR document_id > $2::text) \
                 ORDER BY document_id LIMIT $3) \
             SELECT {COLUMNS}, embedding::vector AS vector FROM {c} \
             WHERE namespace = $1 AND document_id IN (SELECT document_id FROM page) \
             ORDER BY document_id, position, id",
            c = self.tables.chunks
        ))
        .bind(namespace.as_str())
        .bind(after.map(DocumentId::as_str))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let vector: Vector = r.try_get("vector").map_err(db)?;
                Ok(EmbeddedChunk {
                    chunk: row_to_chunk(r)?,
                    vector: vector.to_vec(),
                })
            })
            .collect()
    }

    async fn count(&self, namespace: &Namespace) -> Result<usize> {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {} WHERE namespace = $1",
            self.tables.chunks
        ))
        .bind(namespace.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(n as usize)
    }

    async fn delete_namespace(&self, namespace: &Namespace) -> Result<()> {
        sqlx::query(&format!(
            "DELETE FROM {} WHERE namespace = $1",
            self.tables.chunks
        ))
        .bind(namespace.as_str())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn health(&self) -> Result<()> {
        match schema::extension_version(&self.pool).await? {
            Some(_) => Ok(()),
            None => Err(Error::backend(
                BACKEND,
                false,
                "the pgvector extension is not installed in this database",
            )),
        }
    }
}
