//! [`QdrantStore`]: the [`VectorStore`] on a Qdrant server.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};

use async_trait::async_trait;
use qdrant_client::qdrant::{
    self, Condition, CountPoints, CreateCollection, CreateFieldIndexCollection, DeletePoints,
    Distance as QDistance, FieldType, GetPoints, HnswConfigDiff, KeywordIndexParams, Modifier,
    PayloadIncludeSelector, PointId, PointStruct, PointsSelector, PointsUpdateOperation,
    PrefetchQuery, Query, QueryBatchPoints, QueryPoints, RetrievedPoint, Rrf, ScoredPoint,
    ScrollPoints, SearchParams, SparseVectorConfig, SparseVectorParams, UpdateBatchPoints,
    VectorInput, VectorParams, VectorParamsMap, VectorsConfig, payload_index_params,
    points_selector, points_update_operation, vectors_config, with_payload_selector,
};
use qdrant_client::{Qdrant, QdrantError};
use rag_core::search::{fuse, validate_upsert};
use rag_core::text::Analyzer;
use rag_core::{
    Capabilities, Chunk, ChunkId, Distance, DocumentId, DocumentInfo, EmbeddedChunk, Error,
    FilterOp, Fusion, Namespace, Result, ScoredChunk, SearchMode, SearchRequest, VectorStore,
};
use tokio::sync::Mutex as AsyncMutex;

use crate::config::{FieldIndex, QdrantConfig, Tenancy};
use crate::error::{BACKEND, is_already_exists, is_missing_collection, map_err};
use crate::filter::{metadata_path, translate};
use crate::schema::{self, DENSE, SPARSE, key};

/// Every filter operator: all are translated exactly (see `filter.rs`).
const FILTER_OPS: &[FilterOp] = &FilterOp::ALL;

/// Server versions this crate is built and tested for (qdrant-client 1.18
/// speaks to servers one minor version either side).
pub const SUPPORTED_SERVERS: &str = "1.17 to 1.19";

/// Above this `top_k`, a search asks for ids and scores first and reads
/// the payloads in pages, so no response exceeds gRPC's 4 MiB default.
const PAYLOAD_INLINE_MAX: usize = 512;

/// Points per page of scrolls and point lookups.
const PAGE: usize = 256;

/// Document lock stripes.
const STRIPES: usize = 64;

/// A [`VectorStore`] on a Qdrant server, through `qdrant-client` (gRPC).
///
/// # Layout
/// A point per chunk: the named dense vector `dense` (HNSW, the configured
/// distance), the named sparse vector `bm25` (BM25 term weights of the
/// chunk text, tokenised by rag's [`Analyzer`] — the in-memory store's
/// tokenizer — with Qdrant's `idf` modifier), and the chunk as payload.
/// Point ids are UUIDs derived from the namespace and the chunk id, so
/// writes are idempotent. Namespaces are an `is_tenant` payload field of one
/// collection, or a collection each ([`Tenancy`]). Keyword indexes on
/// `namespace`, `document_id` and `metadata_keys`, an integer index on
/// `position`, and the indexes declared in
/// [`QdrantConfig::indexed_fields`] are created with the collection.
///
/// # Searches
/// * Dense: a `query` on `dense` with the filter, `hnsw_ef` as configured.
///   Scores: cosine similarity, dot product, or the negated squared
///   Euclidean distance (as the in-memory store), higher is better.
/// * Keyword: a `query` on `bm25` with the query's terms (weight 1 each),
///   so the score is BM25 with the collection's IDF and the configured
///   average length.
/// * Hybrid with [`Fusion::Rrf`] (integer `k`): one request, both as
///   prefetches of the best `SearchRequest::fusion_pool()` (by default
///   `max(4 × top_k, 50)`), fused by Qdrant's RRF with
///   its `k` set so the scores equal `rag_core::search::fuse`'s
///   `Σ 1/(k + rank)`. Weighted fusion: both lists in one batch request,
///   fused here by `rag_core::search::fuse`.
///
/// # Writes
/// Qdrant has no multi-point transactions. `upsert` validates everything
/// first, then writes the new points and deletes the documents' other
/// points (by a `document_id` filter excluding the new ids) in one batch
/// update with `wait`, so when it returns no search sees an old chunk.
/// While it runs, a concurrent search may briefly see both versions (never
/// neither). Writers of one document are serialised within the process; if
/// a write dies between its two steps, [`VectorStore::document_hashes`]
/// reports the document as changed, so the next ingest repairs it.
///
/// ```no_run
/// use rag_store_qdrant::{QdrantConfig, QdrantStore};
/// # async fn demo() -> rag_core::Result<()> {
/// let store = QdrantStore::connect(QdrantConfig::new("http://127.0.0.1:6334", 384)).await?;
/// # let _ = store; Ok(()) }
/// ```
pub struct QdrantStore {
    client: Qdrant,
    config: QdrantConfig,
    analyzer: Analyzer,
    server_version: String,
    /// Collections known to exist ([`Tenancy::Collection`]).
    known: parking_lot::Mutex<HashSet<String>>,
    /// Serialises collection creation.
    ddl: AsyncMutex<()>,
    /// Serialises writers of one document (striped by namespace + id).
    doc_locks: Vec<AsyncMutex<()>>,
}

impl fmt::Debug for QdrantStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QdrantStore")
            .field("config", &self.config)
            .field("server_version", &self.server_version)
            .finish_non_exhaustive()
    }
}

fn distance(d: Distance) -> QDistance {
    match d {
        Distance::Cosine => QDistance::Cosine,
        Distance::Dot => QDistance::Dot,
        Distance::Euclidean => QDistance::Euclid,
    }
}

/// Higher is better; Euclidean as the in-memory store (negated square).
fn score(d: Distance, s: f32) -> f32 {
    match d {
        Distance::Cosine | Distance::Dot => s,
        Distance::Euclidean => -(s * s),
    }
}

fn corrupt(collection: &str, message: String) -> Error {
    Error::Corrupt {
        location: format!("qdrant collection {collection}"),
        message,
    }
}

fn filter_of(conds: Vec<Condition>) -> Option<qdrant::Filter> {
    (!conds.is_empty()).then(|| qdrant::Filter {
        must: conds,
        ..Default::default()
    })
}

fn include(fields: &[&str]) -> with_payload_selector::SelectorOptions {
    with_payload_selector::SelectorOptions::Include(PayloadIncludeSelector {
        fields: fields.iter().map(|s| (*s).to_owned()).collect(),
    })
}

fn keyword_any(key: &str, values: Vec<String>) -> Condition {
    Condition::from(qdrant::FieldCondition {
        key: key.to_owned(),
        r#match: Some(qdrant::Match {
            match_value: Some(qdrant::r#match::MatchValue::Keywords(
                qdrant::RepeatedStrings { strings: values },
            )),
        }),
        ..Default::default()
    })
}

fn keyword_eq(key: &str, value: &str) -> Condition {
    Condition::from(qdrant::FieldCondition {
        key: key.to_owned(),
        r#match: Some(qdrant::Match {
            match_value: Some(qdrant::r#match::MatchValue::Keyword(value.to_owned())),
        }),
        ..Default::default()
    })
}

/// A point id as a map key.
fn id_key(id: &PointId) -> String {
    use qdrant::point_id::PointIdOptions;
    match &id.point_id_options {
        Some(PointIdOptions::Uuid(u)) => u.clone(),
        Some(PointIdOptions::Num(n)) => n.to_string(),
        None => String::new(),
    }
}

/// `major.minor` of a version string.
fn minor_version(v: &str) -> Option<(u64, u64)> {
    let mut it = v.trim_start_matches('v').split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

impl QdrantStore {
    /// Connects, checks the server version, and (with
    /// [`Tenancy::Payload`]) creates or checks the collection. An
    /// unreachable server is a retryable `Error::Backend`; a collection of
    /// another dimension or distance is `Error::Corrupt`.
    pub async fn connect(config: QdrantConfig) -> Result<Self> {
        config.validate()?;
        let mut builder = Qdrant::from_url(&config.url)
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            // Checked below, through tracing: the client's own check
            // prints to stdout.
            .skip_compatibility_check();
        if let Some(key) = config.api_key_str() {
            builder = builder.api_key(key.to_owned());
        }
        let client = builder.build().map_err(map_err)?;
        let health = client.health_check().await.map_err(map_err)?;
        let server_version = health.version;
        match minor_version(&server_version) {
            Some((1, 17..=19)) => {}
            _ => tracing::warn!(
                server = %server_version,
                supported = SUPPORTED_SERVERS,
                "qdrant server version outside the range rag-store-qdrant supports"
            ),
        }
        let store = Self {
            client,
            analyzer: Analyzer::new(config.analyzer.clone()),
            config,
            server_version,
            known: parking_lot::Mutex::new(HashSet::new()),
            ddl: AsyncMutex::new(()),
            doc_locks: (0..STRIPES).map(|_| AsyncMutex::new(())).collect(),
        };
        if store.config.tenancy == Tenancy::Payload {
            let name = store.config.collection.clone();
            store.ensure_collection(&name).await?;
        }
        Ok(store)
    }

    /// The configuration.
    pub fn config(&self) -> &QdrantConfig {
        &self.config
    }

    /// The server's version, as it reported it when connecting.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The underlying client, to query the collections directly.
    pub fn client(&self) -> &Qdrant {
        &self.client
    }

    /// The collection holding `namespace`'s points.
    pub fn collection_name(&self, namespace: &Namespace) -> String {
        match self.config.tenancy {
            Tenancy::Payload => self.config.collection.clone(),
            Tenancy::Collection => format!("{}_{}", self.config.collection, namespace),
        }
    }

    /// Conditions selecting the namespace's points (none when the
    /// collection is the namespace's own).
    fn tenant(&self, namespace: &Namespace) -> Vec<Condition> {
        match self.config.tenancy {
            Tenancy::Payload => vec![keyword_eq(key::NAMESPACE, namespace.as_str())],
            Tenancy::Collection => Vec::new(),
        }
    }

    /// The tenant conditions plus `extra`.
    fn scoped(
        &self,
        namespace: &Namespace,
        extra: impl IntoIterator<Item = Condition>,
    ) -> Option<qdrant::Filter> {
        let mut conds = self.tenant(namespace);
        conds.extend(extra);
        filter_of(conds)
    }

    /// Creates the collection and its indexes when missing (if allowed),
    /// and checks an existing one.
    async fn ensure_collection(&self, name: &str) -> Result<()> {
        if self.known.lock().contains(name) {
            return Ok(());
        }
        let _ddl = self.ddl.lock().await;
        if self.known.lock().contains(name) {
            return Ok(());
        }
        let exists = self.client.collection_exists(name).await.map_err(map_err)?;
        if !exists {
            if !self.config.create_collection {
                return Err(Error::NotFound {
                    what: format!("qdrant collection {name} (create_collection is off)"),
                });
            }
            match self
                .client
                .create_collection(self.collection_spec(name))
                .await
            {
                Ok(_) => {}
                // Another process created it first: check it below.
                Err(e) if is_already_exists(&e) => {}
                Err(e) => return Err(map_err(e)),
            }
        }
        self.check_collection(name).await?;
        self.known.lock().insert(name.to_owned());
        Ok(())
    }

    fn collection_spec(&self, name: &str) -> CreateCollection {
        let h = &self.config.hnsw;
        let hnsw = HnswConfigDiff {
            m: Some(h.m),
            ef_construct: Some(h.ef_construct),
            full_scan_threshold: Some(h.full_scan_threshold_kb),
            on_disk: Some(h.on_disk),
            payload_m: (self.config.tenancy == Tenancy::Payload).then_some(h.payload_m),
            ..Default::default()
        };
        let dense = VectorParams {
            size: self.config.dimensions as u64,
            distance: distance(self.config.distance) as i32,
            hnsw_config: Some(hnsw),
            on_disk: Some(self.config.vectors_on_disk),
            ..Default::default()
        };
        let sparse = SparseVectorParams {
            index: None,
            modifier: Some(Modifier::Idf as i32),
        };
        CreateCollection {
            collection_name: name.to_owned(),
            vectors_config: Some(VectorsConfig {
                config: Some(vectors_config::Config::ParamsMap(VectorParamsMap {
                    map: HashMap::from([(DENSE.to_owned(), dense)]),
                })),
            }),
            sparse_vectors_config: Some(SparseVectorConfig {
                map: HashMap::from([(SPARSE.to_owned(), sparse)]),
            }),
            ..Default::default()
        }
    }

    /// The payload indexes every collection has, plus the declared ones.
    fn index_specs(
        &self,
    ) -> Result<Vec<(String, FieldType, Option<payload_index_params::IndexParams>)>> {
        let tenant = payload_index_params::IndexParams::KeywordIndexParams(KeywordIndexParams {
            is_tenant: Some(true),
            ..Default::default()
        });
        let mut specs = vec![
            (key::DOCUMENT_ID.to_owned(), FieldType::Keyword, None),
            (key::METADATA_KEYS.to_owned(), FieldType::Keyword, None),
            (key::POSITION.to_owned(), FieldType::Integer, None),
        ];
        if self.config.tenancy == Tenancy::Payload {
            specs.push((key::NAMESPACE.to_owned(), FieldType::Keyword, Some(tenant)));
        }
        for (k, index) in &self.config.indexed_fields {
            let t = match index {
                FieldIndex::Keyword => FieldType::Keyword,
                FieldIndex::Float => FieldType::Float,
                FieldIndex::Integer => FieldType::Integer,
                FieldIndex::Bool => FieldType::Bool,
            };
            specs.push((metadata_path(k)?, t, None));
        }
        Ok(specs)
    }

    /// Checks an existing collection's vectors against the configuration
    /// and creates missing payload indexes.
    async fn check_collection(&self, name: &str) -> Result<()> {
        let info = self
            .client
            .collection_info(name)
            .await
            .map_err(map_err)?
            .result
            .ok_or_else(|| corrupt(name, "the server returned no collection info".into()))?;
        let params = info
            .config
            .as_ref()
            .and_then(|c| c.params.as_ref())
            .ok_or_else(|| corrupt(name, "no collection parameters".into()))?;
        let dense = match params
            .vectors_config
            .as_ref()
            .and_then(|v| v.config.as_ref())
        {
            Some(vectors_config::Config::ParamsMap(m)) => m.map.get(DENSE),
            _ => None,
        }
        .ok_or_else(|| corrupt(name, format!("no named dense vector {DENSE:?}")))?;
        if dense.size != self.config.dimensions as u64 {
            return Err(corrupt(
                name,
                format!(
                    "its dense vectors have {} dimensions, the store is configured for {}",
                    dense.size, self.config.dimensions
                ),
            ));
        }
        if dense.distance != distance(self.config.distance) as i32 {
            return Err(corrupt(
                name,
                format!(
                    "its distance is {:?}, the store is configured for {:?}",
                    QDistance::try_from(dense.distance).unwrap_or(QDistance::UnknownDistance),
                    self.config.distance
                ),
            ));
        }
        let sparse_ok = params
            .sparse_vectors_config
            .as_ref()
            .and_then(|s| s.map.get(SPARSE))
            .is_some_and(|s| s.modifier == Some(Modifier::Idf as i32));
        if !sparse_ok {
            return Err(corrupt(
                name,
                format!("no sparse vector {SPARSE:?} with the idf modifier"),
            ));
        }
        for (field, ty, params) in self.index_specs()? {
            if info.payload_schema.contains_key(&field) {
                continue;
            }
            if !self.config.create_collection {
                tracing::warn!(collection = name, field, "qdrant payload index missing");
                continue;
            }
            let req = CreateFieldIndexCollection {
                collection_name: name.to_owned(),
                wait: Some(true),
                field_name: field,
                field_type: Some(ty as i32),
                field_index_params: params.map(|p| qdrant::PayloadIndexParams {
                    index_params: Some(p),
                }),
                ..Default::default()
            };
            self.client.create_field_index(req).await.map_err(map_err)?;
        }
        Ok(())
    }

    /// Runs `op` against the namespace's collection; a missing collection
    /// ([`Tenancy::Collection`] before the first write) reads as `empty`.
    async fn read<T, F>(
        &self,
        namespace: &Namespace,
        empty: T,
        op: impl FnOnce(String) -> F,
    ) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, QdrantError>>,
    {
        let name = self.collection_name(namespace);
        match op(name.clone()).await {
            Ok(v) => Ok(v),
            Err(e) if self.config.tenancy == Tenancy::Collection && is_missing_collection(&e) => {
                self.known.lock().remove(&name);
                Ok(empty)
            }
            Err(e) => Err(map_err(e)),
        }
    }

    fn stripe(namespace: &Namespace, id: &DocumentId) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        namespace.hash(&mut h);
        id.hash(&mut h);
        (h.finish() % STRIPES as u64) as usize
    }

    /// Locks the stripes of these documents, in order (no deadlock).
    async fn lock_documents<'a>(
        &'a self,
        namespace: &Namespace,
        ids: impl IntoIterator<Item = &'a DocumentId>,
    ) -> Vec<tokio::sync::MutexGuard<'a, ()>> {
        let stripes: BTreeSet<usize> = ids
            .into_iter()
            .map(|id| Self::stripe(namespace, id))
            .collect();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.doc_locks[s].lock().await);
        }
        guards
    }

    fn search_params(&self) -> SearchParams {
        SearchParams {
            hnsw_ef: Some(self.config.hnsw.ef),
            ..Default::default()
        }
    }

    /// A nearest-neighbour query on the dense vector (with `hnsw_ef`) or
    /// the sparse one; payloads are chosen by [`Self::run_query`].
    fn nearest(
        &self,
        collection: &str,
        input: VectorInput,
        dense: bool,
        filter: Option<qdrant::Filter>,
        limit: usize,
    ) -> QueryPoints {
        QueryPoints {
            collection_name: collection.to_owned(),
            query: Some(Query::new_nearest(input)),
            using: Some(if dense { DENSE } else { SPARSE }.to_owned()),
            filter,
            limit: Some(limit as u64),
            params: dense.then(|| self.search_params()),
            ..Default::default()
        }
    }

    /// Runs a query; for large `top_k`, without payloads, then reads the
    /// payloads in pages.
    async fn run_query(
        &self,
        namespace: &Namespace,
        mut q: QueryPoints,
    ) -> Result<Vec<(Chunk, f32)>> {
        let inline = q.limit.unwrap_or(10) as usize <= PAYLOAD_INLINE_MAX;
        q.with_payload = Some(inline.into());
        let points = self
            .read(namespace, Vec::new(), |name| {
                q.collection_name = name;
                async { self.client.query(q).await.map(|r| r.result) }
            })
            .await?;
        self.with_chunks(namespace, points, inline).await
    }

    async fn with_chunks(
        &self,
        namespace: &Namespace,
        points: Vec<ScoredPoint>,
        inline: bool,
    ) -> Result<Vec<(Chunk, f32)>> {
        if inline {
            return points
                .iter()
                .map(|p| Ok((schema::chunk_of(&p.payload)?, p.score)))
                .collect();
        }
        let ids: Vec<PointId> = points.iter().filter_map(|p| p.id.clone()).collect();
        let fetched = self.get_points(namespace, ids).await?;
        let by_id: HashMap<String, &RetrievedPoint> = fetched
            .iter()
            .filter_map(|p| Some((id_key(p.id.as_ref()?), p)))
            .collect();
        let mut out = Vec::with_capacity(points.len());
        for p in &points {
            // A point deleted between the two requests is left out.
            if let Some(r) = p.id.as_ref().and_then(|id| by_id.get(&id_key(id))) {
                out.push((schema::chunk_of(&r.payload)?, p.score));
            }
        }
        Ok(out)
    }

    async fn get_points(
        &self,
        namespace: &Namespace,
        ids: Vec<PointId>,
    ) -> Result<Vec<RetrievedPoint>> {
        let mut out = Vec::with_capacity(ids.len());
        for page in ids.chunks(PAGE) {
            let req = GetPoints {
                collection_name: self.collection_name(namespace),
                ids: page.to_vec(),
                with_payload: Some(true.into()),
                with_vectors: Some(false.into()),
                ..Default::default()
            };
            let got = self
                .read(namespace, Vec::new(), |name| {
                    let req = GetPoints {
                        collection_name: name,
                        ..req
                    };
                    async { self.client.get_points(req).await.map(|r| r.result) }
                })
                .await?;
            out.extend(got);
        }
        Ok(out)
    }

    /// Every point matching `filter`, with the payload `fields`, page by
    /// page.
    async fn scroll_all(
        &self,
        namespace: &Namespace,
        filter: Option<qdrant::Filter>,
        fields: &[&str],
    ) -> Result<Vec<RetrievedPoint>> {
        self.scroll_points(namespace, filter, fields, false).await
    }

    /// [`scroll_all`](Self::scroll_all), with the dense vector when `vectors`.
    async fn scroll_points(
        &self,
        namespace: &Namespace,
        filter: Option<qdrant::Filter>,
        fields: &[&str],
        vectors: bool,
    ) -> Result<Vec<RetrievedPoint>> {
        let mut out = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let req = ScrollPoints {
                collection_name: self.collection_name(namespace),
                filter: filter.clone(),
                offset: offset.take(),
                limit: Some(PAGE as u32),
                with_payload: Some(include(fields).into()),
                with_vectors: Some(if vectors {
                    vec![DENSE].into()
                } else {
                    false.into()
                }),
                ..Default::default()
            };
            let page = self
                .read(namespace, None, |_| async {
                    self.client.scroll(req).await.map(Some)
                })
                .await?;
            let Some(page) = page else {
                return Ok(out);
            };
            out.extend(page.result);
            match page.next_page_offset {
                Some(next) => offset = Some(next),
                None => return Ok(out),
            }
        }
    }

    async fn count_where(
        &self,
        namespace: &Namespace,
        filter: Option<qdrant::Filter>,
    ) -> Result<usize> {
        let n = self
            .read(namespace, 0, |name| async move {
                self.client
                    .count(CountPoints {
                        collection_name: name,
                        filter,
                        exact: Some(true),
                        ..Default::default()
                    })
                    .await
                    .map(|r| r.result.map_or(0, |c| c.count))
            })
            .await?;
        Ok(n as usize)
    }

    fn delete_where(&self, collection: &str, filter: qdrant::Filter) -> DeletePoints {
        DeletePoints {
            collection_name: collection.to_owned(),
            wait: Some(true),
            points: Some(PointsSelector {
                points_selector_one_of: Some(points_selector::PointsSelectorOneOf::Filter(filter)),
            }),
            ..Default::default()
        }
    }

    /// Writes the points, then deletes the documents' other points.
    async fn write(
        &self,
        namespace: &Namespace,
        collection: &str,
        points: Vec<PointStruct>,
        docs: Vec<String>,
    ) -> std::result::Result<(), QdrantError> {
        let new_ids: Vec<PointId> = points.iter().filter_map(|p| p.id.clone()).collect();
        let stale = qdrant::Filter {
            must: {
                let mut c = self.tenant(namespace);
                c.push(keyword_any(key::DOCUMENT_ID, docs));
                c
            },
            must_not: vec![Condition::has_id(new_ids)],
            ..Default::default()
        };
        let delete = PointsUpdateOperation {
            operation: Some(points_update_operation::Operation::DeletePoints(
                points_update_operation::DeletePoints {
                    points: Some(PointsSelector {
                        points_selector_one_of: Some(points_selector::PointsSelectorOneOf::Filter(
                            stale.clone(),
                        )),
                    }),
                    ..Default::default()
                },
            )),
        };
        let batch_size = self.config.batch_size;
        if points.len() <= batch_size {
            // One request: both steps applied in order before it returns.
            let upsert = PointsUpdateOperation {
                operation: Some(points_update_operation::Operation::Upsert(
                    points_update_operation::PointStructList {
                        points,
                        ..Default::default()
                    },
                )),
            };
            self.client
                .update_points_batch(UpdateBatchPoints {
                    collection_name: collection.to_owned(),
                    wait: Some(true),
                    operations: vec![upsert, delete],
                    ..Default::default()
                })
                .await?;
            return Ok(());
        }
        let mut points = points;
        while !points.is_empty() {
            let rest = points.split_off(points.len().min(batch_size));
            self.client
                .upsert_points(qdrant::UpsertPoints {
                    collection_name: collection.to_owned(),
                    wait: Some(true),
                    points,
                    ..Default::default()
                })
                .await?;
            points = rest;
        }
        self.client
            .delete_points(self.delete_where(collection, stale))
            .await?;
        Ok(())
    }

    async fn hybrid(
        &self,
        namespace: &Namespace,
        request: &SearchRequest,
        filter: Option<qdrant::Filter>,
    ) -> Result<Vec<ScoredChunk>> {
        let k = request.top_k;
        let n = request.fusion_pool();
        let vector = request.vector.clone().unwrap_or_default();
        let terms =
            schema::query_sparse(&self.analyzer, request.text.as_deref().unwrap_or_default());
        let collection = self.collection_name(namespace);
        let d = self.config.distance;
        match request.fusion {
            Fusion::Rrf { k: rrf_k } if rrf_k >= 0.0 && rrf_k.fract() == 0.0 && rrf_k < 1e6 => {
                // Qdrant scores 1/(position + k) with 0-based positions;
                // rag's fuse scores 1/(k + rank) with 1-based ranks.
                let mut prefetch = vec![PrefetchQuery {
                    query: Some(Query::new_nearest(vector)),
                    using: Some(DENSE.to_owned()),
                    filter: filter.clone(),
                    params: Some(self.search_params()),
                    limit: Some(n as u64),
                    ..Default::default()
                }];
                if !terms.0.is_empty() {
                    prefetch.push(PrefetchQuery {
                        query: Some(Query::new_nearest(VectorInput::new_sparse(
                            terms.0, terms.1,
                        ))),
                        using: Some(SPARSE.to_owned()),
                        filter: filter.clone(),
                        limit: Some(n as u64),
                        ..Default::default()
                    });
                }
                let q = QueryPoints {
                    collection_name: collection,
                    prefetch,
                    query: Some(Query::new_rrf(Rrf {
                        k: Some(rrf_k as u32 + 1),
                        weights: Vec::new(),
                    })),
                    filter,
                    limit: Some(k as u64),
                    ..Default::default()
                };
                Ok(self
                    .run_query(namespace, q)
                    .await?
                    .into_iter()
                    .map(|(c, s)| ScoredChunk {
                        chunk: c,
                        score: s,
                        dense_score: None,
                        keyword_score: None,
                        fused_score: Some(s),
                        rerank_score: None,
                    })
                    .collect())
            }
            fusion => {
                // Both lists in one request, payloads inline only when
                // small (as `run_query`), fused here.
                let inline = n <= PAYLOAD_INLINE_MAX;
                let mut queries =
                    vec![self.nearest(&collection, vector.into(), true, filter.clone(), n)];
                if !terms.0.is_empty() {
                    let sparse = VectorInput::new_sparse(terms.0, terms.1);
                    queries.push(self.nearest(&collection, sparse, false, filter, n));
                }
                for q in &mut queries {
                    q.with_payload = Some(inline.into());
                }
                let results = self
                    .read(namespace, Vec::new(), |name| async move {
                        self.client
                            .query_batch(QueryBatchPoints {
                                collection_name: name,
                                query_points: queries,
                                ..Default::default()
                            })
                            .await
                            .map(|r| r.result)
                    })
                    .await?;
                let mut lists = results.into_iter().map(|b| b.result);
                let dense = self
                    .with_chunks(namespace, lists.next().unwrap_or_default(), inline)
                    .await?
                    .into_iter()
                    .map(|(c, s)| ScoredChunk::dense(c, score(d, s)))
                    .collect();
                let keyword = self
                    .with_chunks(namespace, lists.next().unwrap_or_default(), inline)
                    .await?
                    .into_iter()
                    .map(|(c, s)| ScoredChunk::keyword(c, s))
                    .collect();
                Ok(fuse(dense, keyword, fusion, k))
            }
        }
    }
}

/// The marker [`VectorStore::document_hashes`] reports for a document whose
/// points carry more than one content hash (an interrupted write): it never
/// equals a real hash, so ingestion writes the document again.
pub const MIXED_VERSIONS: &str = "mixed-versions";

#[async_trait]
impl VectorStore for QdrantStore {
    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::full(BACKEND);
        caps.filter_ops = FILTER_OPS.to_vec();
        caps.distance = self.config.distance;
        caps.dimensions = Some(self.config.dimensions);
        caps.persistent = true;
        caps
    }

    async fn upsert(&self, namespace: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        validate_upsert(chunks, Some(self.config.dimensions))?;
        let docs: BTreeSet<DocumentId> =
            chunks.iter().map(|c| c.chunk.document_id.clone()).collect();
        let points: Vec<PointStruct> = chunks
            .iter()
            .map(|c| {
                let sparse =
                    schema::document_sparse(&self.analyzer, &self.config.bm25, &c.chunk.text);
                schema::point(namespace, &c.chunk, c.vector.clone(), sparse)
            })
            .collect();
        let collection = self.collection_name(namespace);
        self.ensure_collection(&collection).await?;
        let _locks = self.lock_documents(namespace, &docs).await;
        let doc_ids: Vec<String> = docs.iter().map(|d| d.as_str().to_owned()).collect();
        match self
            .write(namespace, &collection, points.clone(), doc_ids.clone())
            .await
        {
            Ok(()) => Ok(()),
            // The collection was dropped by someone else since we saw it.
            Err(e) if self.config.tenancy == Tenancy::Collection && is_missing_collection(&e) => {
                self.known.lock().remove(&collection);
                self.ensure_collection(&collection).await?;
                self.write(namespace, &collection, points, doc_ids)
                    .await
                    .map_err(map_err)
            }
            Err(e) => Err(map_err(e)),
        }
    }

    async fn search(
        &self,
        namespace: &Namespace,
        request: SearchRequest,
    ) -> Result<Vec<ScoredChunk>> {
        let caps = self.capabilities();
        request.validate(&caps)?;
        let user = request.filter.as_ref().map(translate).transpose()?;
        let filter = self.scoped(namespace, user);
        let collection = self.collection_name(namespace);
        let d = self.config.distance;
        match request.mode {
            SearchMode::Dense => {
                let v = request.vector.clone().unwrap_or_default();
                let q = self.nearest(&collection, v.into(), true, filter, request.top_k);
                Ok(self
                    .run_query(namespace, q)
                    .await?
                    .into_iter()
                    .map(|(c, s)| ScoredChunk::dense(c, score(d, s)))
                    .collect())
            }
            SearchMode::Keyword => {
                let terms = schema::query_sparse(
                    &self.analyzer,
                    request.text.as_deref().unwrap_or_default(),
                );
                if terms.0.is_empty() {
                    return Ok(Vec::new());
                }
                let q = self.nearest(
                    &collection,
                    VectorInput::new_sparse(terms.0, terms.1),
                    false,
                    filter,
                    request.top_k,
                );
                Ok(self
                    .run_query(namespace, q)
                    .await?
                    .into_iter()
                    .map(|(c, s)| ScoredChunk::keyword(c, s))
                    .collect())
            }
            SearchMode::Hybrid => self.hybrid(namespace, &request, filter).await,
        }
    }

    async fn delete_document(&self, namespace: &Namespace, id: &DocumentId) -> Result<usize> {
        let _locks = self.lock_documents(namespace, [id]).await;
        let filter = self
            .scoped(namespace, [keyword_eq(key::DOCUMENT_ID, id.as_str())])
            .unwrap_or_default();
        let n = self.count_where(namespace, Some(filter.clone())).await?;
        if n == 0 {
            return Ok(0);
        }
        let req = self.delete_where(&self.collection_name(namespace), filter);
        self.read(namespace, (), |_| async {
            self.client.delete_points(req).await.map(|_| ())
        })
        .await?;
        Ok(n)
    }

    async fn document_hashes(
        &self,
        namespace: &Namespace,
        ids: &[DocumentId],
    ) -> Result<Vec<(DocumentId, String)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut hashes: HashMap<String, BTreeSet<String>> = HashMap::new();
        for page in ids.chunks(PAGE) {
            let wanted = page.iter().map(|d| d.as_str().to_owned()).collect();
            let filter = self.scoped(namespace, [keyword_any(key::DOCUMENT_ID, wanted)]);
            let points = self
                .scroll_all(namespace, filter, &[key::DOCUMENT_ID, key::DOCUMENT_HASH])
                .await?;
            for p in &points {
                let doc = schema::payload_str(&p.payload, key::DOCUMENT_ID)?;
                let hash = schema::payload_str(&p.payload, key::DOCUMENT_HASH)?;
                hashes
                    .entry(doc.to_owned())
                    .or_default()
                    .insert(hash.to_owned());
            }
        }
        Ok(ids
            .iter()
            .filter_map(|id| {
                let set = hashes.get(id.as_str())?;
                let hash = if set.len() == 1 {
                    set.iter().next().cloned().unwrap_or_default()
                } else {
                    MIXED_VERSIONS.to_owned()
                };
                Some((id.clone(), hash))
            })
            .collect())
    }

    async fn get_chunks(&self, namespace: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let point_ids: Vec<PointId> = ids.iter().map(|c| schema::point_id(namespace, c)).collect();
        let points = self.get_points(namespace, point_ids).await?;
        let mut by_id: HashMap<String, Chunk> = HashMap::with_capacity(points.len());
        for p in &points {
            if self.config.tenancy == Tenancy::Payload
                && schema::payload_str(&p.payload, key::NAMESPACE)? != namespace.as_str()
            {
                continue;
            }
            let c = schema::chunk_of(&p.payload)?;
            by_id.insert(c.id.as_str().to_owned(), c);
        }
        Ok(ids
            .iter()
            .filter_map(|id| by_id.remove(id.as_str()))
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
        // Qdrant orders scrolls by point id (a hash) and cannot order by a
        // string field, so the first chunk of every document is read (in
        // pages) and sorted here: O(documents) per page.
        let first = Condition::matches(key::POSITION, 0i64);
        let points = self
            .scroll_all(
                namespace,
                self.scoped(namespace, [first]),
                &[key::DOCUMENT_ID, key::SOURCE, key::DOCUMENT_HASH],
            )
            .await?;
        let mut docs: BTreeMap<String, (String, String)> = BTreeMap::new();
        for p in &points {
            let id = schema::payload_str(&p.payload, key::DOCUMENT_ID)?;
            if after.is_some_and(|a| id <= a.as_str()) {
                continue;
            }
            docs.entry(id.to_owned()).or_insert_with(|| {
                (
                    schema::payload_str(&p.payload, key::SOURCE)
                        .unwrap_or_default()
                        .to_owned(),
                    schema::payload_str(&p.payload, key::DOCUMENT_HASH)
                        .unwrap_or_default()
                        .to_owned(),
                )
            });
        }
        let page: Vec<(String, (String, String))> = docs.into_iter().take(limit).collect();
        let mut out = Vec::with_capacity(page.len());
        for (id, (source, hash)) in page {
            let filter = self.scoped(namespace, [keyword_eq(key::DOCUMENT_ID, &id)]);
            let chunks = self.count_where(namespace, filter).await?;
            let id = DocumentId::new(id).map_err(|_| {
                corrupt(
                    &self.collection_name(namespace),
                    "an invalid document id".into(),
                )
            })?;
            out.push(DocumentInfo::new(id, source, hash, chunks));
        }
        Ok(out)
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
        // As `list_documents`: the first chunk of every document gives the
        // page's ids (O(documents) per page), then their points are read
        // with vectors.
        let first = Condition::matches(key::POSITION, 0i64);
        let firsts = self
            .scroll_all(
                namespace,
                self.scoped(namespace, [first]),
                &[key::DOCUMENT_ID],
            )
            .await?;
        let mut page: BTreeSet<String> = BTreeSet::new();
        for p in &firsts {
            let id = schema::payload_str(&p.payload, key::DOCUMENT_ID)?;
            if after.is_none_or(|a| id > a.as_str()) {
                page.insert(id.to_owned());
            }
        }
        let page: Vec<String> = page.into_iter().take(limit).collect();
        if page.is_empty() {
            return Ok(Vec::new());
        }
        let fields = [
            key::CHUNK_ID,
            key::DOCUMENT_ID,
            key::SOURCE,
            key::TEXT,
            key::DOCUMENT_HASH,
            key::POSITION,
            key::BYTE_START,
            key::BYTE_END,
            key::TOKEN_COUNT,
            key::METADATA,
        ];
        let points = self
            .scroll_points(
                namespace,
                self.scoped(namespace, [keyword_any(key::DOCUMENT_ID, page)]),
                &fields,
                true,
            )
            .await?;
        let collection = self.collection_name(namespace);
        let mut out = points
            .into_iter()
            .map(|p| {
                let chunk = schema::chunk_of(&p.payload)?;
                let vector = match p.vectors.as_ref().and_then(|v| v.get_vector_by_name(DENSE)) {
                    Some(qdrant::vector_output::Vector::Dense(d)) => d.data,
                    _ => {
                        return Err(corrupt(
                            &collection,
                            format!("point of chunk {} has no dense vector", chunk.id),
                        ));
                    }
                };
                Ok(EmbeddedChunk { chunk, vector })
            })
            .collect::<Result<Vec<_>>>()?;
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
        self.count_where(namespace, self.scoped(namespace, []))
            .await
    }

    async fn delete_namespace(&self, namespace: &Namespace) -> Result<()> {
        match self.config.tenancy {
            Tenancy::Payload => {
                let filter = self.scoped(namespace, []).unwrap_or_default();
                let req = self.delete_where(&self.config.collection, filter);
                self.client.delete_points(req).await.map_err(map_err)?;
            }
            Tenancy::Collection => {
                let name = self.collection_name(namespace);
                let _ddl = self.ddl.lock().await;
                self.known.lock().remove(&name);
                match self.client.delete_collection(name).await {
                    Ok(_) => {}
                    Err(e) if is_missing_collection(&e) => {}
                    Err(e) => return Err(map_err(e)),
                }
            }
        }
        Ok(())
    }

    async fn health(&self) -> Result<()> {
        self.client.health_check().await.map_err(map_err)?;
        if self.config.tenancy == Tenancy::Payload {
            let exists = self
                .client
                .collection_exists(&self.config.collection)
                .await
                .map_err(map_err)?;
            if !exists {
                return Err(Error::NotFound {
                    what: format!("qdrant collection {}", self.config.collection),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(minor_version("1.18.3"), Some((1, 18)));
        assert_eq!(minor_version("v1.9.0-dev"), Some((1, 9)));
        assert_eq!(minor_version("garbage"), None);
    }

    #[test]
    fn euclidean_scores_match_the_memory_store() {
        assert_eq!(score(Distance::Euclidean, 2.0), -4.0);
        assert_eq!(score(Distance::Cosine, 0.5), 0.5);
    }
}
