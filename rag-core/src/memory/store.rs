use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::filter::FilterOp;
use crate::search::{Capabilities, Distance, ScoredChunk, SearchMode, SearchRequest, fuse};
use crate::text::{Analyzer, AnalyzerConfig};
use crate::traits::{DocumentInfo, VectorStore};
use crate::types::{Chunk, ChunkId, DocumentId, EmbeddedChunk, Namespace};

/// BM25 parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bm25Params {
    /// Term-frequency saturation; 1.2 by default.
    pub k1: f32,
    /// Length normalisation in `[0, 1]`; 0.75 by default.
    pub b: f32,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Self { k1: 1.2, b: 0.75 }
    }
}

/// Configuration of a [`MemoryVectorStore`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MemoryConfig {
    /// Fixed vector dimension; `None` lets each namespace take the dimension
    /// of its first upsert.
    pub dimensions: Option<usize>,
    /// Cosine (vectors normalised once at insert), dot product or Euclidean.
    pub distance: Distance,
    /// Keyword ranking parameters.
    pub bm25: Bm25Params,
    /// Keyword tokenizer.
    pub analyzer: AnalyzerConfig,
}

impl MemoryConfig {
    /// Sets the dimension.
    pub fn with_dimensions(mut self, d: usize) -> Self {
        self.dimensions = Some(d);
        self
    }
    /// Sets the distance.
    pub fn with_distance(mut self, d: Distance) -> Self {
        self.distance = d;
        self
    }
    /// Sets BM25 parameters.
    pub fn with_bm25(mut self, p: Bm25Params) -> Self {
        self.bm25 = p;
        self
    }
    /// Sets the analyzer.
    pub fn with_analyzer(mut self, a: AnalyzerConfig) -> Self {
        self.analyzer = a;
        self
    }
}

/// The in-memory reference [`VectorStore`].
///
/// * Dense search is exact: every live vector of the namespace is scored
///   (contiguous `f32` storage, cosine vectors normalised once at insert).
/// * Keyword search is BM25 over the chunk text, tokenized by the
///   [`Analyzer`] (Unicode words, lowercase, optional stop words and stems).
/// * Hybrid search fuses the best `SearchRequest::fusion_pool()` (by default
///   `max(4 × top_k, 50)`) of each side.
/// * The whole [`crate::Filter`] AST is evaluated exactly (it is the
///   reference semantics).
/// * Each namespace has its own lock: searches share it, an upsert takes it
///   for the short time it needs to swap rows in (vectors are normalised and
///   text tokenized before). Different namespaces never wait on each other.
/// * [`save`](Self::save) and [`load`](Self::load) persist it to one file
///   (versioned, checksummed, written atomically).
#[derive(Debug)]
pub struct MemoryVectorStore {
    config: MemoryConfig,
    analyzer: Analyzer,
    namespaces: RwLock<HashMap<Namespace, Arc<RwLock<NsState>>>>,
}

impl Default for MemoryVectorStore {
    fn default() -> Self {
        Self::new(MemoryConfig::default())
    }
}

#[derive(Debug)]
struct Slot {
    chunk: Arc<Chunk>,
    /// (term id, term frequency)
    terms: Vec<(u32, u32)>,
    len: u32,
}

#[derive(Debug)]
struct DocEntry {
    rows: Vec<u32>,
    hash: String,
    source: String,
}

#[derive(Debug, Default)]
pub(super) struct NsState {
    dims: Option<usize>,
    slots: Vec<Option<Slot>>,
    vectors: Vec<f32>,
    free: Vec<u32>,
    docs: BTreeMap<DocumentId, DocEntry>,
    by_chunk: foldhash::HashMap<ChunkId, u32>,
    dictionary: foldhash::HashMap<Arc<str>, u32>,
    postings: Vec<Vec<(u32, u32)>>,
    total_len: u64,
    live: usize,
}

/// A chunk ready to be inserted: normalised vector, counted terms.
pub(super) struct Prepared {
    pub(super) chunk: Chunk,
    pub(super) vector: Vec<f32>,
    terms: Vec<(Arc<str>, u32)>,
}

impl NsState {
    fn remove_row(&mut self, row: u32) {
        if let Some(slot) = self.slots[row as usize].take() {
            for (tid, _) in &slot.terms {
                let list = &mut self.postings[*tid as usize];
                if let Some(i) = list.iter().position(|(r, _)| *r == row) {
                    list.swap_remove(i);
                }
            }
            self.total_len -= u64::from(slot.len);
            self.live -= 1;
            self.by_chunk.remove(&slot.chunk.id);
            self.free.push(row);
        }
    }

    fn remove_document(&mut self, id: &DocumentId) -> usize {
        match self.docs.remove(id) {
            Some(entry) => {
                let n = entry.rows.len();
                for row in entry.rows {
                    self.remove_row(row);
                }
                n
            }
            None => 0,
        }
    }

    fn insert(&mut self, p: Prepared) -> u32 {
        let dims = p.vector.len();
        let row = match self.free.pop() {
            Some(r) => {
                let start = r as usize * dims;
                self.vectors[start..start + dims].copy_from_slice(&p.vector);
                r
            }
            None => {
                self.vectors.extend_from_slice(&p.vector);
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        let mut terms = Vec::with_capacity(p.terms.len());
        let mut len = 0u32;
        for (term, tf) in p.terms {
            let next = self.dictionary.len() as u32;
            let tid = *self.dictionary.entry(term).or_insert(next);
            if tid as usize == self.postings.len() {
                self.postings.push(Vec::new());
            }
            self.postings[tid as usize].push((row, tf));
            terms.push((tid, tf));
            len += tf;
        }
        self.total_len += u64::from(len);
        self.live += 1;
        self.by_chunk.insert(p.chunk.id.clone(), row);
        let doc = self
            .docs
            .entry(p.chunk.document_id.clone())
            .or_insert_with(|| DocEntry {
                rows: Vec::new(),
                hash: p.chunk.document_hash.clone(),
                source: p.chunk.source.clone(),
            });
        doc.rows.push(row);
        doc.hash.clone_from(&p.chunk.document_hash);
        self.slots[row as usize] = Some(Slot {
            chunk: Arc::new(p.chunk),
            terms,
            len,
        });
        row
    }

    pub(super) fn export(&self) -> (Option<usize>, Vec<(Chunk, Vec<f32>)>) {
        let dims = self.dims.unwrap_or(0);
        let mut out = Vec::with_capacity(self.live);
        for entry in self.docs.values() {
            for &row in &entry.rows {
                if let Some(slot) = &self.slots[row as usize] {
                    let start = row as usize * dims;
                    out.push((
                        (*slot.chunk).clone(),
                        self.vectors[start..start + dims].to_vec(),
                    ));
                }
            }
        }
        (self.dims, out)
    }
}

/// Total order on scores for the top-k heap: higher score first, then lower
/// row (deterministic ties).
#[derive(PartialEq)]
struct Ranked(f32, u32);
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    // "Greater" means better; the heap keeps the worst on top via Reverse.
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| other.1.cmp(&self.1))
    }
}

fn top_k(scores: impl Iterator<Item = (u32, f32)>, k: usize) -> Vec<(u32, f32)> {
    let mut heap: BinaryHeap<std::cmp::Reverse<Ranked>> = BinaryHeap::with_capacity(k + 1);
    for (row, s) in scores {
        if heap.len() < k {
            heap.push(std::cmp::Reverse(Ranked(s, row)));
        } else if let Some(worst) = heap.peek()
            && Ranked(s, row) > worst.0
        {
            heap.pop();
            heap.push(std::cmp::Reverse(Ranked(s, row)));
        }
    }
    let mut v: Vec<(u32, f32)> = heap.into_iter().map(|r| (r.0.1, r.0.0)).collect();
    v.sort_by_key(|&(row, s)| std::cmp::Reverse(Ranked(s, row)));
    v
}

/// Dot product with eight independent accumulators, which the compiler
/// vectorises.
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[inline]
fn neg_sq_l2(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += (x - y) * (x - y);
    }
    -s
}

fn normalize(v: &mut [f32]) {
    let n = dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

impl MemoryVectorStore {
    /// An empty store.
    pub fn new(config: MemoryConfig) -> Self {
        Self {
            analyzer: Analyzer::new(config.analyzer.clone()),
            config,
            namespaces: RwLock::new(HashMap::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MemoryConfig {
        &self.config
    }

    fn ns(&self, ns: &Namespace) -> Option<Arc<RwLock<NsState>>> {
        self.namespaces.read().get(ns).cloned()
    }

    fn ns_or_create(&self, ns: &Namespace) -> Arc<RwLock<NsState>> {
        if let Some(s) = self.ns(ns) {
            return s;
        }
        self.namespaces
            .write()
            .entry(ns.clone())
            .or_insert_with(|| {
                Arc::new(RwLock::new(NsState {
                    dims: self.config.dimensions,
                    ..NsState::default()
                }))
            })
            .clone()
    }

    pub(super) fn snapshot(&self) -> Vec<(Namespace, Arc<RwLock<NsState>>)> {
        let mut v: Vec<_> = self
            .namespaces
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub(super) fn prepare(&self, chunk: Chunk, vector: Vec<f32>) -> Prepared {
        prepare(&self.analyzer, self.config.distance, chunk, vector)
    }

    /// Inserts prepared rows into a namespace (used by `load`).
    pub(super) fn install(&self, ns: &Namespace, dims: Option<usize>, rows: Vec<Prepared>) {
        let state = self.ns_or_create(ns);
        let mut st = state.write();
        st.dims = dims.or(st.dims);
        for p in rows {
            st.insert(p);
        }
    }

    /// Saves every namespace to `path`, atomically (a temporary file renamed
    /// over it). See [`load`](Self::load).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        super::persist::save(self, path.as_ref())
    }

    /// Loads a store saved by [`save`](Self::save). A missing, corrupt or
    /// foreign file is an error (`NotFound` or `Corrupt`), never a panic.
    pub fn load(path: impl AsRef<Path>, config: MemoryConfig) -> Result<Self> {
        super::persist::load(path.as_ref(), config)
    }

    fn dense_scores(
        &self,
        st: &NsState,
        query: &[f32],
        keep: &dyn Fn(u32) -> bool,
        k: usize,
    ) -> Vec<(u32, f32)> {
        let dims = query.len();
        let score: fn(&[f32], &[f32]) -> f32 = match self.config.distance {
            Distance::Cosine | Distance::Dot => dot,
            Distance::Euclidean => neg_sq_l2,
        };
        let iter = st
            .vectors
            .chunks_exact(dims)
            .enumerate()
            .filter_map(|(row, v)| {
                let row = row as u32;
                (st.slots[row as usize].is_some() && keep(row)).then(|| (row, score(query, v)))
            });
        let mut out = top_k(iter, k);
        if self.config.distance == Distance::Euclidean {
            // Report the distance itself, negated, not its square.
            for (_, s) in &mut out {
                *s = -(-*s).sqrt();
            }
        }
        out
    }

    fn keyword_scores(
        &self,
        st: &NsState,
        text: &str,
        keep: &dyn Fn(u32) -> bool,
        k: usize,
    ) -> Vec<(u32, f32)> {
        if st.live == 0 {
            return Vec::new();
        }
        let mut query_terms: Vec<u32> = Vec::new();
        self.analyzer.for_each_term(text, |t| {
            if let Some(&tid) = st.dictionary.get(t)
                && !query_terms.contains(&tid)
            {
                query_terms.push(tid);
            }
        });
        if query_terms.is_empty() {
            return Vec::new();
        }
        let n = st.live as f32;
        let avg = (st.total_len as f32 / n).max(1.0);
        let Bm25Params { k1, b } = self.config.bm25;
        let mut acc: foldhash::HashMap<u32, f32> = Default::default();
        for tid in query_terms {
            let list = &st.postings[tid as usize];
            if list.is_empty() {
                continue;
            }
            let df = list.len() as f32;
            let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
            for &(row, tf) in list {
                let Some(slot) = &st.slots[row as usize] else {
                    continue;
                };
                let tf = tf as f32;
                let norm = k1 * (1.0 - b + b * slot.len as f32 / avg);
                *acc.entry(row).or_default() += idf * tf * (k1 + 1.0) / (tf + norm);
            }
        }
        top_k(acc.into_iter().filter(|(row, _)| keep(*row)), k)
    }
}

/// Normalises a chunk's vector (cosine) and counts its terms.
fn prepare(
    analyzer: &Analyzer,
    distance: Distance,
    chunk: Chunk,
    mut vector: Vec<f32>,
) -> Prepared {
    if distance == Distance::Cosine {
        normalize(&mut vector);
    }
    let mut counts: foldhash::HashMap<Arc<str>, u32> = Default::default();
    analyzer.for_each_shared_term(&chunk.text, |t| {
        *counts.entry(Arc::clone(t)).or_default() += 1
    });
    // Terms are shared with the analyzer's cache (no copies); their order
    // decides only the ids of new dictionary entries, which scores ignore.
    let terms: Vec<(Arc<str>, u32)> = counts.into_iter().collect();
    Prepared {
        chunk,
        vector,
        terms,
    }
}

#[async_trait]
impl VectorStore for MemoryVectorStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            backend: "memory".into(),
            dense: true,
            keyword: true,
            hybrid: true,
            filter_ops: FilterOp::ALL.to_vec(),
            distance: self.config.distance,
            dimensions: self.config.dimensions,
            persistent: false,
            // Per-document calls (measured on SciFact: 138 ms per ingest;
            // 16 documents per call, analysis moved to the CPU pool: 168 ms).
            upsert_batch_documents: 1,
        }
    }

    async fn upsert(&self, ns: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        // Validate everything before touching the store.
        let dims = chunks[0].vector.len();
        crate::search::validate_upsert(chunks, Some(self.config.dimensions.unwrap_or(dims)))?;
        let docs: HashSet<DocumentId> =
            chunks.iter().map(|c| c.chunk.document_id.clone()).collect();
        let bytes: usize = chunks.iter().map(|c| c.chunk.text.len()).sum();
        let prepared: Vec<Prepared> = if bytes < crate::cpu::OFFLOAD_BYTES {
            // The store keeps its own copy of what it was given.
            chunks
                .iter()
                .map(|c| {
                    prepare(
                        &self.analyzer,
                        self.config.distance,
                        c.chunk.clone(),
                        c.vector.clone(),
                    )
                })
                .collect()
        } else {
            // Analysis (segmenting, stemming) of a large upsert runs on the
            // rayon pool (`crate::cpu`), so that concurrent upserts use several cores.
            let analyzer = self.analyzer.clone();
            let distance = self.config.distance;
            let chunks = chunks.to_vec();
            crate::cpu::run(move || {
                chunks
                    .into_iter()
                    .map(|c| prepare(&analyzer, distance, c.chunk, c.vector))
                    .collect()
            })
            .await
        };

        let state = self.ns_or_create(ns);
        let mut st = state.write();
        if let Some(d) = st.dims
            && d != dims
        {
            return Err(Error::invalid_input(format!(
                "vectors have {dims} dimensions, namespace {ns} has {d}"
            )));
        }
        for p in &prepared {
            if let Some(&row) = st.by_chunk.get(&p.chunk.id)
                && let Some(slot) = &st.slots[row as usize]
                && !docs.contains(&slot.chunk.document_id)
            {
                return Err(Error::invalid_input(format!(
                    "chunk id {} already belongs to document {:?}",
                    p.chunk.id,
                    slot.chunk.document_id.as_str()
                )));
            }
        }
        st.dims = Some(dims);
        for d in &docs {
            st.remove_document(d);
        }
        for p in prepared {
            st.insert(p);
        }
        Ok(())
    }

    async fn search(&self, ns: &Namespace, request: SearchRequest) -> Result<Vec<ScoredChunk>> {
        let mut caps = self.capabilities();
        let Some(state) = self.ns(ns) else {
            request.validate(&caps)?;
            return Ok(Vec::new());
        };
        let st = state.read();
        caps.dimensions = st.dims.or(caps.dimensions);
        request.validate(&caps)?;
        let filter = request.filter.as_ref();
        let keep = |row: u32| match (filter, &st.slots[row as usize]) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(f), Some(slot)) => f.matches(&slot.chunk),
        };
        let query_vec = request.vector.as_ref().map(|v| {
            let mut v = v.clone();
            if self.config.distance == Distance::Cosine {
                normalize(&mut v);
            }
            v
        });
        let chunk_of = |row: u32| -> Chunk {
            st.slots[row as usize]
                .as_ref()
                .map(|s| (*s.chunk).clone())
                .unwrap_or_else(unreachable_chunk)
        };
        let k = request.top_k;
        let empty = st.dims.is_none();
        Ok(match request.mode {
            SearchMode::Dense => {
                let q = query_vec.unwrap_or_default();
                if empty {
                    return Ok(Vec::new());
                }
                self.dense_scores(&st, &q, &keep, k)
                    .into_iter()
                    .map(|(row, s)| ScoredChunk::dense(chunk_of(row), s))
                    .collect()
            }
            SearchMode::Keyword => self
                .keyword_scores(&st, request.text.as_deref().unwrap_or_default(), &keep, k)
                .into_iter()
                .map(|(row, s)| ScoredChunk::keyword(chunk_of(row), s))
                .collect(),
            SearchMode::Hybrid => {
                if empty {
                    return Ok(Vec::new());
                }
                let pool = request.fusion_pool();
                let q = query_vec.unwrap_or_default();
                let dense = self
                    .dense_scores(&st, &q, &keep, pool)
                    .into_iter()
                    .map(|(row, s)| ScoredChunk::dense(chunk_of(row), s))
                    .collect();
                let kw = self
                    .keyword_scores(
                        &st,
                        request.text.as_deref().unwrap_or_default(),
                        &keep,
                        pool,
                    )
                    .into_iter()
                    .map(|(row, s)| ScoredChunk::keyword(chunk_of(row), s))
                    .collect();
                fuse(dense, kw, request.fusion, k)
            }
        })
    }

    async fn delete_document(&self, ns: &Namespace, id: &DocumentId) -> Result<usize> {
        Ok(match self.ns(ns) {
            Some(state) => state.write().remove_document(id),
            None => 0,
        })
    }

    async fn document_hashes(
        &self,
        ns: &Namespace,
        ids: &[DocumentId],
    ) -> Result<Vec<(DocumentId, String)>> {
        let Some(state) = self.ns(ns) else {
            return Ok(Vec::new());
        };
        let st = state.read();
        Ok(ids
            .iter()
            .filter_map(|id| st.docs.get(id).map(|d| (id.clone(), d.hash.clone())))
            .collect())
    }

    async fn get_chunks(&self, ns: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>> {
        let Some(state) = self.ns(ns) else {
            return Ok(Vec::new());
        };
        let st = state.read();
        Ok(ids
            .iter()
            .filter_map(|id| st.by_chunk.get(id))
            .filter_map(|&row| st.slots[row as usize].as_ref())
            .map(|s| (*s.chunk).clone())
            .collect())
    }

    async fn list_documents(
        &self,
        ns: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<DocumentInfo>> {
        let Some(state) = self.ns(ns) else {
            return Ok(Vec::new());
        };
        let st = state.read();
        let range = match after {
            Some(a) => st.docs.range((
                std::ops::Bound::Excluded(a.clone()),
                std::ops::Bound::Unbounded,
            )),
            None => st.docs.range(..),
        };
        Ok(range
            .take(limit)
            .map(|(id, d)| {
                DocumentInfo::new(id.clone(), d.source.clone(), d.hash.clone(), d.rows.len())
            })
            .collect())
    }

    async fn scan(
        &self,
        ns: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<EmbeddedChunk>> {
        let Some(state) = self.ns(ns) else {
            return Ok(Vec::new());
        };
        let st = state.read();
        let Some(dims) = st.dims else {
            return Ok(Vec::new());
        };
        let docs = match after {
            Some(a) => st.docs.range((
                std::ops::Bound::Excluded(a.clone()),
                std::ops::Bound::Unbounded,
            )),
            None => st.docs.range(..),
        };
        let mut out = Vec::new();
        for (_, doc) in docs.take(limit) {
            let first = out.len();
            for &row in &doc.rows {
                if let Some(slot) = &st.slots[row as usize] {
                    let start = row as usize * dims;
                    out.push(EmbeddedChunk {
                        chunk: (*slot.chunk).clone(),
                        vector: st.vectors[start..start + dims].to_vec(),
                    });
                }
            }
            out[first..].sort_by_key(|c| c.chunk.position);
        }
        Ok(out)
    }

    async fn count(&self, ns: &Namespace) -> Result<usize> {
        Ok(self.ns(ns).map_or(0, |s| s.read().live))
    }

    async fn delete_namespace(&self, ns: &Namespace) -> Result<()> {
        self.namespaces.write().remove(ns);
        Ok(())
    }

    async fn health(&self) -> Result<()> {
        Ok(())
    }
}

#[cold]
fn unreachable_chunk() -> Chunk {
    // Rows handed to `chunk_of` were live under the same read lock; this is
    // never reached, but an empty chunk beats a panic in a server.
    Chunk {
        id: ChunkId::from_string(String::new()),
        document_id: DocumentId::from_source("?"),
        source: String::new(),
        text: String::new(),
        byte_range: 0..0,
        position: 0,
        token_count: None,
        metadata: crate::types::Metadata::new(),
        document_hash: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_breaks_ties_by_row() {
        let v = top_k([(0, 0.5), (1, 0.9), (2, 0.5), (3, 0.1)].into_iter(), 3);
        assert_eq!(v, vec![(1, 0.9), (0, 0.5), (2, 0.5)]);
        assert!(top_k(std::iter::empty(), 3).is_empty());
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.1).collect();
        let b: Vec<f32> = (0..37).map(|i| (37 - i) as f32 * 0.2).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }
}
