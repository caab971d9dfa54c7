//! [`LanceVectorStore`]: the [`VectorStore`] on LanceDB.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{RecordBatch, RecordBatchIterator};
use async_trait::async_trait;
use futures::TryStreamExt;
use lancedb::DistanceType;
use lancedb::index::Index;
use lancedb::index::scalar::{FtsIndexBuilder, FullTextSearchQuery};
use lancedb::index::vector::{IvfHnswSqIndexBuilder, IvfPqIndexBuilder};
use lancedb::query::{ExecutableQuery, QueryBase, Select};
use lancedb::table::{CompactionOptions, OptimizeAction, OptimizeOptions};
use lancedb::{Connection, Table};
use rag_core::search::{fuse, validate_upsert};
use rag_core::{
    Capabilities, Chunk, ChunkId, Distance, DocumentId, DocumentInfo, EmbeddedChunk, Error,
    FilterOp, Namespace, Result, ScoredChunk, SearchMode, SearchRequest, VectorStore,
};
use tokio::sync::Mutex as AsyncMutex;

use crate::config::{LanceConfig, VectorIndexKind, redact_uri};
use crate::error::map_err;
use crate::filter::{sql_string, to_sql};
use crate::schema::{self, CHUNK_COLUMNS, TEXT, VECTOR};

/// Backend name used in errors and capabilities.
pub const BACKEND: &str = "lance";

/// Every filter operator: all are translated exactly.
const FILTER_OPS: &[FilterOp] = &FilterOp::ALL;

/// Ids per `IN (…)` list in lookups.
const IN_LIST_CHUNK: usize = 512;

/// One namespace's table.
#[derive(Debug)]
struct TableHandle {
    table: Table,
    /// Whether the full-text index exists: read by searches without the
    /// write lock, set by writers holding it.
    fts_ready: std::sync::atomic::AtomicBool,
    /// Serialises this process's writers of the table, so index builds and
    /// merges do not race each other; readers never wait for it. Holds
    /// whether the vector index exists.
    write: AsyncMutex<bool>,
}

/// What [`LanceVectorStore::optimize`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaintenanceReport {
    /// Fragments rewritten by compaction.
    pub fragments_removed: usize,
    /// Fragments written by compaction.
    pub fragments_added: usize,
    /// Old versions removed.
    pub versions_removed: u64,
    /// Bytes freed by removing old versions.
    pub bytes_removed: u64,
}

/// A [`VectorStore`] on embedded LanceDB: one table per namespace in a local
/// directory (or an object-store URI).
///
/// * Dense search is exact until a table reaches
///   [`crate::VectorIndexConfig::build_threshold`] rows, then uses the
///   configured IVF index; rows added since the index was built are searched
///   exactly alongside it until [`LanceVectorStore::optimize`] folds them in.
/// * Keyword search is Lance's BM25 full-text index on the chunk text,
///   created with the table; rows written since the last
///   [`LanceVectorStore::optimize`] are searched without the index, so
///   results are current after every upsert and delete.
/// * Upserts are one `merge_insert` per call, which also deletes the old
///   chunks of every document in the batch: one new table version, so a
///   reader sees a document's old chunks or its new ones, never a mix.
///
/// ```no_run
/// # async fn demo() -> rag_core::Result<()> {
/// use rag_store_lance::{LanceConfig, LanceVectorStore};
/// let store = LanceVectorStore::open(LanceConfig::new("./rag-data", 384)).await?;
/// # Ok(()) }
/// ```
pub struct LanceVectorStore {
    db: Connection,
    config: LanceConfig,
    tables: parking_lot::Mutex<HashMap<Namespace, Arc<TableHandle>>>,
    /// Serialises table creation and dropping.
    ddl: AsyncMutex<()>,
}

impl std::fmt::Debug for LanceVectorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanceVectorStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn distance_type(d: Distance) -> DistanceType {
    match d {
        Distance::Cosine => DistanceType::Cosine,
        Distance::Dot => DistanceType::Dot,
        Distance::Euclidean => DistanceType::L2,
    }
}

/// Higher is better: cosine and dot distances are `1 - similarity`, L2 is
/// the squared distance (negated, as in the in-memory store).
fn score(d: Distance, distance: f32) -> f32 {
    match d {
        Distance::Cosine | Distance::Dot => 1.0 - distance,
        Distance::Euclidean => -distance,
    }
}

/// The chunks of a query's result with the score read from `column`,
/// best-first, at most `top_k`; `make` drops a row by returning `None`.
async fn ranked(
    stream: lancedb::Result<lancedb::arrow::SendableRecordBatchStream>,
    column: &str,
    top_k: usize,
    make: impl Fn(Chunk, f32) -> Option<ScoredChunk>,
) -> Result<Vec<ScoredChunk>> {
    let batches: Vec<RecordBatch> = stream
        .map_err(map_err)?
        .try_collect()
        .await
        .map_err(map_err)?;
    let mut out = Vec::new();
    for b in &batches {
        let scores = schema::floats(b, column)?;
        for (c, s) in schema::chunks_of(b)?.into_iter().zip(scores) {
            out.extend(make(c, s));
        }
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out.truncate(top_k);
    Ok(out)
}

fn in_list<'a>(column: &str, values: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<String> = values.map(sql_string).collect();
    format!("{column} IN ({})", items.join(", "))
}

impl LanceVectorStore {
    /// Opens (creating if needed) the database at `config.uri`.
    ///
    /// # Errors
    /// `InvalidInput` for a bad configuration; `Corrupt` when the location
    /// exists but is not a directory; a backend error when LanceDB cannot
    /// open it.
    pub async fn open(config: LanceConfig) -> Result<Self> {
        config.validate()?;
        let local = !config.uri.contains("://");
        if local {
            let path = std::path::Path::new(&config.uri);
            if path.exists() && !path.is_dir() {
                return Err(Error::Corrupt {
                    location: config.uri.clone(),
                    message: "exists and is not a directory: a LanceDB database is a directory"
                        .to_owned(),
                });
            }
            std::fs::create_dir_all(path).map_err(|e| {
                Error::backend_with_source(
                    BACKEND,
                    false,
                    format!("cannot create the database directory {}", config.uri),
                    e,
                )
            })?;
        }
        let mut builder = lancedb::connect(&config.uri).storage_options(
            config
                .storage_options
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        if let Some(interval) = config.read_consistency_interval {
            builder = builder.read_consistency_interval(interval);
        }
        let db = builder.execute().await.map_err(|e| {
            Error::backend(
                BACKEND,
                false,
                format!(
                    "cannot open the database at {}: {}",
                    redact_uri(&config.uri),
                    crate::error::redacted(&e.to_string())
                ),
            )
        })?;
        let store = Self {
            db,
            config,
            tables: parking_lot::Mutex::new(HashMap::new()),
            ddl: AsyncMutex::new(()),
        };
        // Check every existing table of ours now, so a directory written by
        // an incompatible layout fails at open rather than at first query.
        for ns in store.namespaces().await? {
            store.handle(&ns).await?;
        }
        Ok(store)
    }

    /// The configuration.
    pub fn config(&self) -> &LanceConfig {
        &self.config
    }

    /// The underlying LanceDB connection (for queries this crate does not
    /// offer; writing to its tables directly bypasses this store's checks).
    pub fn connection(&self) -> &Connection {
        &self.db
    }

    /// The table name of `namespace`.
    pub fn table_name(&self, namespace: &Namespace) -> String {
        format!("{}{}", self.config.table_prefix, namespace.as_str())
    }

    /// The namespaces that have a table.
    pub async fn namespaces(&self) -> Result<Vec<Namespace>> {
        let names = self.db.table_names().execute().await.map_err(map_err)?;
        Ok(names
            .iter()
            .filter_map(|n| n.strip_prefix(&self.config.table_prefix))
            .filter_map(|n| Namespace::new(n).ok())
            .collect())
    }

    /// The LanceDB table of `namespace`, when it exists (to query it
    /// directly, as the benchmarks do).
    pub async fn table(&self, namespace: &Namespace) -> Result<Option<Table>> {
        Ok(self.handle(namespace).await?.map(|h| h.table.clone()))
    }

    async fn handle(&self, namespace: &Namespace) -> Result<Option<Arc<TableHandle>>> {
        if let Some(h) = self.tables.lock().get(namespace) {
            return Ok(Some(h.clone()));
        }
        let name = self.table_name(namespace);
        let table = match self.db.open_table(&name).execute().await {
            Ok(t) => t,
            Err(lancedb::Error::TableNotFound { .. }) => return Ok(None),
            Err(e) => {
                return Err(Error::Corrupt {
                    location: format!("lance table {name}"),
                    message: format!(
                        "cannot be opened as a Lance dataset: {}",
                        crate::error::redacted(&e.to_string())
                    ),
                });
            }
        };
        let found = table.schema().await.map_err(map_err)?;
        schema::check_compatible(&found, self.config.dimensions, &name)?;
        let indices = table.list_indices().await.map_err(map_err)?;
        let indexed = |col: &str| indices.iter().any(|i| i.columns.iter().any(|c| c == col));
        let handle = Arc::new(TableHandle {
            fts_ready: std::sync::atomic::AtomicBool::new(indexed(TEXT)),
            write: AsyncMutex::new(indexed(VECTOR)),
            table,
        });
        Ok(Some(
            self.tables
                .lock()
                .entry(namespace.clone())
                .or_insert(handle)
                .clone(),
        ))
    }

    async fn handle_or_create(&self, namespace: &Namespace) -> Result<Arc<TableHandle>> {
        if let Some(h) = self.handle(namespace).await? {
            return Ok(h);
        }
        let _ddl = self.ddl.lock().await;
        if let Some(h) = self.handle(namespace).await? {
            return Ok(h);
        }
        let name = self.table_name(namespace);
        match self
            .db
            .create_empty_table(&name, schema::schema(self.config.dimensions))
            .execute()
            .await
        {
            Ok(_) | Err(lancedb::Error::TableAlreadyExists { .. }) => {}
            Err(e) => return Err(map_err(e)),
        }
        self.handle(namespace).await?.ok_or_else(|| {
            Error::backend(
                BACKEND,
                true,
                format!("table {name} vanished after creation"),
            )
        })
    }

    /// Creates the full-text index when missing (the caller holds the
    /// table's write lock).
    async fn ensure_fts(&self, h: &TableHandle) -> Result<()> {
        if !h.fts_ready.load(std::sync::atomic::Ordering::Acquire) {
            let fts = &self.config.fts;
            let params = FtsIndexBuilder::default()
                .base_tokenizer("simple".to_owned())
                .language(&fts.language)
                .map_err(|e| Error::invalid_input(format!("lance fts language: {e}")))?
                .stem(fts.stem)
                .remove_stop_words(fts.remove_stop_words)
                .ascii_folding(fts.ascii_folding)
                .lower_case(true)
                .with_position(false);
            h.table
                .create_index(&[TEXT], Index::FTS(params))
                .replace(true)
                .execute()
                .await
                .map_err(map_err)?;
            h.fts_ready
                .store(true, std::sync::atomic::Ordering::Release);
        }
        Ok(())
    }

    /// Creates the full-text index when missing and the vector index once
    /// the table has passed the threshold (the caller holds the write lock,
    /// `vector_built` its guarded flag).
    async fn maintain_indexes(&self, h: &TableHandle, vector_built: &mut bool) -> Result<()> {
        self.ensure_fts(h).await?;
        let vi = &self.config.vector_index;
        if !*vector_built && !matches!(vi.kind, VectorIndexKind::None) {
            let rows = h.table.count_rows(None).await.map_err(map_err)?;
            if rows >= vi.build_threshold.max(256) {
                self.build_vector_index(&h.table).await?;
                *vector_built = true;
            }
        }
        Ok(())
    }

    async fn build_vector_index(&self, table: &Table) -> Result<()> {
        let dt = distance_type(self.config.distance);
        let index = match self.config.vector_index.kind {
            VectorIndexKind::None => return Ok(()),
            VectorIndexKind::IvfPq {
                num_partitions,
                num_sub_vectors,
            } => {
                let mut b = IvfPqIndexBuilder::default().distance_type(dt);
                if let Some(n) = num_partitions {
                    b = b.num_partitions(n);
                }
                if let Some(m) = num_sub_vectors {
                    b = b.num_sub_vectors(m);
                }
                Index::IvfPq(b)
            }
            VectorIndexKind::IvfHnswSq {
                num_partitions,
                m,
                ef_construction,
            } => {
                let mut b = IvfHnswSqIndexBuilder::default()
                    .distance_type(dt)
                    .num_edges(m)
                    .ef_construction(ef_construction);
                if let Some(n) = num_partitions {
                    b = b.num_partitions(n);
                }
                Index::IvfHnswSq(b)
            }
        };
        tracing::info!(table = table.name(), "building the vector index");
        table
            .create_index(&[VECTOR], index)
            .replace(true)
            .execute()
            .await
            .map_err(map_err)
    }

    /// Builds the vector index of `namespace` now, whatever its size (at
    /// least 256 rows are needed to train it), and the full-text index if
    /// missing.
    ///
    /// # Errors
    /// `InvalidInput` when the table has fewer than 256 rows.
    pub async fn build_indexes(&self, namespace: &Namespace) -> Result<()> {
        let Some(h) = self.handle(namespace).await? else {
            return Err(Error::not_found(format!("namespace {namespace}")));
        };
        let mut vector_built = h.write.lock().await;
        let rows = h.table.count_rows(None).await.map_err(map_err)?;
        if rows < 256 {
            return Err(Error::invalid_input(format!(
                "a vector index needs at least 256 rows, {namespace} has {rows}"
            )));
        }
        self.ensure_fts(&h).await?;
        if !matches!(self.config.vector_index.kind, VectorIndexKind::None) {
            self.build_vector_index(&h.table).await?;
            *vector_built = true;
        }
        Ok(())
    }

    /// Maintenance: compacts small files, folds rows written since the last
    /// call into the vector and full-text indexes, and removes table
    /// versions older than `keep_versions_for` (their files stay readable by
    /// readers that already opened them until then). Run it after large
    /// ingests or every few dozen writes.
    pub async fn optimize(
        &self,
        namespace: &Namespace,
        keep_versions_for: Duration,
    ) -> Result<MaintenanceReport> {
        let Some(h) = self.handle(namespace).await? else {
            return Ok(MaintenanceReport::default());
        };
        let _state = h.write.lock().await;
        let mut report = MaintenanceReport::default();
        let compacted = h
            .table
            .optimize(OptimizeAction::Compact {
                options: CompactionOptions::default(),
                remap_options: None,
            })
            .await
            .map_err(map_err)?;
        if let Some(c) = compacted.compaction {
            report.fragments_removed = c.fragments_removed;
            report.fragments_added = c.fragments_added;
        }
        h.table
            .optimize(OptimizeAction::Index(OptimizeOptions::default()))
            .await
            .map_err(map_err)?;
        let older_than = lancedb::table::Duration::from_std(keep_versions_for)
            .map_err(|e| Error::invalid_input(format!("keep_versions_for: {e}")))?;
        let pruned = h
            .table
            .optimize(OptimizeAction::Prune {
                older_than: Some(older_than),
                delete_unverified: Some(keep_versions_for.is_zero()),
                error_if_tagged_old_versions: None,
            })
            .await
            .map_err(map_err)?;
        if let Some(p) = pruned.prune {
            report.versions_removed = p.old_versions;
            report.bytes_removed = p.bytes_removed;
        }
        Ok(report)
    }

    async fn query_chunks(
        &self,
        table: &Table,
        filter: String,
        columns: &[&str],
    ) -> Result<Vec<RecordBatch>> {
        table
            .query()
            .only_if(filter)
            .select(Select::columns(columns))
            .execute()
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)
    }

    async fn dense(
        &self,
        h: &TableHandle,
        vector: &[f32],
        top_k: usize,
        filter: Option<&str>,
    ) -> Result<Vec<ScoredChunk>> {
        let vi = &self.config.vector_index;
        let mut q = h
            .table
            .query()
            .nearest_to(vector)
            .map_err(map_err)?
            .column(VECTOR)
            .distance_type(distance_type(self.config.distance))
            .limit(top_k)
            .select(Select::columns(CHUNK_COLUMNS))
            .nprobes(vi.nprobes)
            .map_err(map_err)?
            .ef(vi.ef);
        if let Some(f) = vi.refine_factor {
            q = q.refine_factor(f);
        }
        if let Some(f) = filter {
            q = q.only_if(f);
        }
        let distance = self.config.distance;
        ranked(q.execute().await, "_distance", top_k, |c, d| {
            Some(ScoredChunk::dense(c, score(distance, d)))
        })
        .await
    }

    async fn keyword(
        &self,
        h: &TableHandle,
        text: &str,
        top_k: usize,
        filter: Option<&str>,
    ) -> Result<Vec<ScoredChunk>> {
        if !h.fts_ready.load(std::sync::atomic::Ordering::Acquire) {
            // A table created but never written to has no index yet.
            return Ok(Vec::new());
        }
        let fts = FullTextSearchQuery::new(text.to_owned())
            .with_column(TEXT.to_owned())
            .map_err(|e| Error::backend(BACKEND, false, e.to_string()))?;
        let mut q = h
            .table
            .query()
            .full_text_search(fts)
            .limit(top_k)
            .select(Select::columns(CHUNK_COLUMNS));
        if let Some(f) = filter {
            q = q.only_if(f);
        }
        ranked(q.execute().await, "_score", top_k, |c, s| {
            (s > 0.0).then(|| ScoredChunk::keyword(c, s))
        })
        .await
    }
}

/// Documents per upsert that ingestion is asked to send (at most a round,
/// `RagConfig::ingest_window`, in practice).
const UPSERT_BATCH_DOCUMENTS: usize = 256;

#[async_trait]
impl VectorStore for LanceVectorStore {
    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::full(BACKEND);
        caps.filter_ops = FILTER_OPS.to_vec();
        caps.distance = self.config.distance;
        caps.dimensions = Some(self.config.dimensions);
        caps.persistent = true;
        // Every upsert is a merge-insert commit (a new table version, a
        // scan for the ids it replaces): ingestion writes whole rounds.
        caps.upsert_batch_documents = UPSERT_BATCH_DOCUMENTS;
        caps
    }

    async fn upsert(&self, namespace: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        validate_upsert(chunks, Some(self.config.dimensions))?;
        let docs: BTreeMap<&str, ()> = chunks
            .iter()
            .map(|c| (c.chunk.document_id.as_str(), ()))
            .collect();
        let replaced = in_list("document_id", docs.keys().copied());
        let batch = schema::to_batch(chunks, self.config.dimensions)?;
        let h = self.handle_or_create(namespace).await?;
        let mut vector_built = h.write.lock().await;
        let reader = RecordBatchIterator::new([Ok(batch)], schema::schema(self.config.dimensions));
        let mut merge = h.table.merge_insert(&["id"]);
        merge
            .when_matched_update_all(None)
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(Some(replaced));
        merge.execute(Box::new(reader)).await.map_err(map_err)?;
        self.maintain_indexes(&h, &mut vector_built).await
    }

    async fn search(
        &self,
        namespace: &Namespace,
        request: SearchRequest,
    ) -> Result<Vec<ScoredChunk>> {
        request.validate(&self.capabilities())?;
        let Some(h) = self.handle(namespace).await? else {
            return Ok(Vec::new());
        };
        let filter = request.filter.as_ref().map(to_sql);
        let filter = filter.as_deref();
        let k = request.top_k;
        let vector = request.vector.as_deref().unwrap_or_default();
        let text = request.text.as_deref().unwrap_or_default();
        match request.mode {
            SearchMode::Dense => self.dense(&h, vector, k, filter).await,
            SearchMode::Keyword => self.keyword(&h, text, k, filter).await,
            SearchMode::Hybrid => {
                // As every store: fuse the best `fusion_pool()` of each side.
                let candidates = request.fusion_pool();
                let (d, kw) = futures::try_join!(
                    self.dense(&h, vector, candidates, filter),
                    self.keyword(&h, text, candidates, filter)
                )?;
                Ok(fuse(d, kw, request.fusion, k))
            }
        }
    }

    async fn delete_document(&self, namespace: &Namespace, id: &DocumentId) -> Result<usize> {
        let Some(h) = self.handle(namespace).await? else {
            return Ok(0);
        };
        let _state = h.write.lock().await;
        let res = h
            .table
            .delete(format!("document_id = {}", sql_string(id.as_str())).as_str())
            .await
            .map_err(map_err)?;
        Ok(usize::try_from(res.num_deleted_rows).unwrap_or(usize::MAX))
    }

    async fn document_hashes(
        &self,
        namespace: &Namespace,
        ids: &[DocumentId],
    ) -> Result<Vec<(DocumentId, String)>> {
        let Some(h) = self.handle(namespace).await? else {
            return Ok(Vec::new());
        };
        let mut found: HashMap<String, String> = HashMap::new();
        for part in ids.chunks(IN_LIST_CHUNK) {
            let filter = in_list("document_id", part.iter().map(DocumentId::as_str));
            for b in self
                .query_chunks(&h.table, filter, &["document_id", "content_hash"])
                .await?
            {
                let doc = schema::strings(&b, "document_id")?;
                let hash = schema::strings(&b, "content_hash")?;
                for i in 0..b.num_rows() {
                    found
                        .entry(doc.value(i).to_owned())
                        .or_insert_with(|| hash.value(i).to_owned());
                }
            }
        }
        let mut seen = HashSet::new();
        Ok(ids
            .iter()
            .filter(|id| seen.insert(id.as_str()))
            .filter_map(|id| found.get(id.as_str()).map(|h| (id.clone(), h.clone())))
            .collect())
    }

    async fn get_chunks(&self, namespace: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>> {
        let Some(h) = self.handle(namespace).await? else {
            return Ok(Vec::new());
        };
        let mut found: HashMap<ChunkId, Chunk> = HashMap::new();
        for part in ids.chunks(IN_LIST_CHUNK) {
            let filter = in_list("id", part.iter().map(ChunkId::as_str));
            for b in self.query_chunks(&h.table, filter, CHUNK_COLUMNS).await? {
                for c in schema::chunks_of(&b)? {
                    found.insert(c.id.clone(), c);
                }
            }
        }
        Ok(ids.iter().filter_map(|id| found.get(id).cloned()).collect())
    }

    async fn list_documents(
        &self,
        namespace: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<DocumentInfo>> {
        let Some(h) = self.handle(namespace).await? else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let filter = match after {
            Some(a) => format!("document_id > {}", sql_string(a.as_str())),
            None => "true".to_owned(),
        };
        let mut docs: BTreeMap<String, (String, String, usize)> = BTreeMap::new();
        for b in self
            .query_chunks(&h.table, filter, &["document_id", "source", "content_hash"])
            .await?
        {
            let doc = schema::strings(&b, "document_id")?;
            let source = schema::strings(&b, "source")?;
            let hash = schema::strings(&b, "content_hash")?;
            for i in 0..b.num_rows() {
                docs.entry(doc.value(i).to_owned())
                    .or_insert_with(|| (source.value(i).to_owned(), hash.value(i).to_owned(), 0))
                    .2 += 1;
            }
        }
        docs.into_iter()
            .take(limit)
            .map(|(id, (source, hash, n))| {
                Ok(DocumentInfo::new(
                    DocumentId::new(id).map_err(|e| Error::Corrupt {
                        location: format!("lance table {}", self.table_name(namespace)),
                        message: e.to_string(),
                    })?,
                    source,
                    hash,
                    n,
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
        let Some(h) = self.handle(namespace).await? else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The page's document ids from the id column alone (O(rows after the
        // cursor), as `list_documents`), then their rows with vectors.
        let filter = match after {
            Some(a) => format!("document_id > {}", sql_string(a.as_str())),
            None => "true".to_owned(),
        };
        let mut page: BTreeSet<String> = BTreeSet::new();
        for b in self
            .query_chunks(&h.table, filter, &["document_id"])
            .await?
        {
            let doc = schema::strings(&b, "document_id")?;
            for i in 0..b.num_rows() {
                let id = doc.value(i);
                if page.len() < limit || page.last().is_some_and(|l| id < l.as_str()) {
                    page.insert(id.to_owned());
                    if page.len() > limit {
                        page.pop_last();
                    }
                }
            }
        }
        let page: Vec<String> = page.into_iter().collect();
        let mut columns = CHUNK_COLUMNS.to_vec();
        columns.push(VECTOR);
        let mut out = Vec::new();
        for part in page.chunks(IN_LIST_CHUNK) {
            let filter = in_list("document_id", part.iter().map(String::as_str));
            for b in self.query_chunks(&h.table, filter, &columns).await? {
                let vectors = schema::vectors_of(&b)?;
                out.extend(
                    schema::chunks_of(&b)?
                        .into_iter()
                        .zip(vectors)
                        .map(|(chunk, vector)| EmbeddedChunk { chunk, vector }),
                );
            }
        }
        out.sort_by(|a, b| {
            (&a.chunk.document_id, a.chunk.position, &a.chunk.id).cmp(&(
                &b.chunk.document_id,
                b.chunk.position,
                &b.chunk.id,
            ))
        });
        Ok(out)
    }

    async fn count(&self, namespace: &Namespace) -> Result<usize> {
        let Some(h) = self.handle(namespace).await? else {
            return Ok(0);
        };
        h.table.count_rows(None).await.map_err(map_err)
    }

    async fn delete_namespace(&self, namespace: &Namespace) -> Result<()> {
        let _ddl = self.ddl.lock().await;
        let handle = self.tables.lock().remove(namespace);
        // Wait for this process's writers of the table to finish.
        let _state = match &handle {
            Some(h) => Some(h.write.lock().await),
            None => None,
        };
        match self.db.drop_table(self.table_name(namespace), &[]).await {
            Ok(()) | Err(lancedb::Error::TableNotFound { .. }) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn health(&self) -> Result<()> {
        self.db
            .table_names()
            .limit(1)
            .execute()
            .await
            .map(|_| ())
            .map_err(map_err)
    }
}
