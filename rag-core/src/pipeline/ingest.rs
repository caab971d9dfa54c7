//! Ingestion: chunk, embed in batches, upsert; skip unchanged documents.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::types::{Chunk, Document, DocumentId, EmbeddedChunk, Namespace};

use super::{Inner, Rag};

/// Documents of a failed group written alone that may fail in a row, for a
/// reason other than their content, before the store is taken to be failing
/// and the rest of the group is not tried.
const STORE_DOWN_AFTER: usize = 3;

/// A progress callback, called once per document as it finishes.
pub type ProgressFn = Arc<dyn Fn(&IngestProgress) + Send + Sync>;

/// How to ingest.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct IngestOptions {
    /// The tenant written to; [`Namespace::default`] unless set.
    pub namespace: Namespace,
    /// Called once per document as it finishes (for progress bars).
    pub progress: Option<ProgressFn>,
    /// The number of documents expected, passed on in
    /// [`IngestProgress::total`].
    pub total: Option<usize>,
}

impl fmt::Debug for IngestOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestOptions")
            .field("namespace", &self.namespace)
            .field("progress", &self.progress.is_some())
            .field("total", &self.total)
            .finish()
    }
}

impl IngestOptions {
    /// Options for `namespace`.
    pub fn new(namespace: Namespace) -> Self {
        Self {
            namespace,
            ..Self::default()
        }
    }
    /// Sets the progress callback.
    pub fn with_progress(mut self, f: impl Fn(&IngestProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(f));
        self
    }
    /// Sets the expected number of documents.
    pub fn with_total(mut self, total: usize) -> Self {
        self.total = Some(total);
        self
    }
}

/// What happened to one document.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IngestOutcome {
    /// New: written with this many chunks.
    Added {
        /// Chunks written.
        chunks: usize,
    },
    /// Changed: its old chunks replaced by this many.
    Replaced {
        /// Chunks written.
        chunks: usize,
    },
    /// Its content hash was unchanged: nothing done.
    Unchanged,
    /// It failed; the stored version (if any) is untouched. The error is in
    /// the report.
    Failed,
}

/// One progress event.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct IngestProgress {
    /// Documents finished so far, this one included.
    pub processed: usize,
    /// Documents expected, when known.
    pub total: Option<usize>,
    /// The document.
    pub document_id: DocumentId,
    /// Its source.
    pub source: String,
    /// What happened to it.
    pub outcome: IngestOutcome,
}

/// A document that failed to ingest.
#[derive(Debug)]
#[non_exhaustive]
pub struct IngestFailure {
    /// The document.
    pub document_id: DocumentId,
    /// Its source.
    pub source: String,
    /// Why.
    pub error: Error,
}

/// The result of an ingestion.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct IngestReport {
    /// New documents.
    pub added: Vec<DocumentId>,
    /// Changed documents whose chunks were replaced.
    pub replaced: Vec<DocumentId>,
    /// Documents skipped because their content hash was unchanged.
    pub unchanged: Vec<DocumentId>,
    /// Documents that failed, each with its error; their stored versions
    /// are untouched.
    pub failed: Vec<IngestFailure>,
    /// Chunks written.
    pub chunks_written: usize,
    /// Embedder calls made.
    pub embed_calls: usize,
    /// Wall time.
    pub elapsed: Duration,
}

impl IngestReport {
    /// Documents seen.
    pub fn total(&self) -> usize {
        self.added.len() + self.replaced.len() + self.unchanged.len() + self.failed.len()
    }

    /// Whether nothing failed.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
    }
}

/// (work index, chunk index) of each chunk of one embedder call.
type Batch = Vec<(usize, usize)>;

/// A document being ingested.
struct Work {
    doc: Document,
    existed: bool,
    chunks: Vec<Chunk>,
    vectors: Vec<Option<Vec<f32>>>,
    error: Option<Error>,
}

/// A document ready to store: whether it was stored before, its chunks.
type Ready = (Document, bool, Vec<EmbeddedChunk>);

/// A prepared round: the documents whose outcome is already known
/// (unchanged, or failed before storing), those ready to upsert (with
/// whether they were stored before), and the embedder calls it took.
#[derive(Default)]
struct Prepared {
    settled: Vec<(Document, IngestOutcome, Option<Error>)>,
    ready: Vec<Ready>,
    embed_calls: usize,
}

/// Progress bookkeeping shared by a whole ingestion.
struct Tally<'a> {
    report: IngestReport,
    options: &'a IngestOptions,
}

impl Tally<'_> {
    fn record(&mut self, doc: &Document, outcome: IngestOutcome, error: Option<Error>) {
        let id = doc.id().clone();
        match (&outcome, error) {
            (IngestOutcome::Added { chunks }, _) => {
                self.report.chunks_written += chunks;
                self.report.added.push(id.clone());
            }
            (IngestOutcome::Replaced { chunks }, _) => {
                self.report.chunks_written += chunks;
                self.report.replaced.push(id.clone());
            }
            (IngestOutcome::Unchanged, _) => self.report.unchanged.push(id.clone()),
            (IngestOutcome::Failed, error) => self.report.failed.push(IngestFailure {
                document_id: id.clone(),
                source: doc.source().to_owned(),
                error: error.unwrap_or_else(|| Error::backend("ingest", false, "unknown failure")),
            }),
        }
        if let Some(p) = &self.options.progress {
            p(&IngestProgress {
                processed: self.report.total(),
                total: self.options.total,
                document_id: id,
                source: doc.source().to_owned(),
                outcome,
            });
        }
    }
}

impl Rag {
    /// Ingests one document into the default namespace. Unlike
    /// [`ingest_many`](Self::ingest_many), a failure is returned as the
    /// error (and the stored version, if any, is untouched).
    pub async fn ingest(&self, doc: Document) -> Result<IngestReport> {
        self.ingest_in(&Namespace::default(), doc).await
    }

    /// Ingests one document into `namespace`; a failure is the error.
    pub async fn ingest_in(&self, namespace: &Namespace, doc: Document) -> Result<IngestReport> {
        let mut report = self
            .ingest_stream(
                futures::stream::iter([doc]),
                IngestOptions::new(namespace.clone()),
            )
            .await;
        match report.failed.pop() {
            Some(f) => Err(f.error),
            None => Ok(report),
        }
    }

    /// Ingests documents into the default namespace; failures are collected
    /// in the report and do not stop the others.
    pub async fn ingest_many<I>(&self, docs: I) -> IngestReport
    where
        I: IntoIterator<Item = Document>,
        I::IntoIter: Send,
    {
        let iter = docs.into_iter();
        let total = match iter.size_hint() {
            (lo, Some(hi)) if lo == hi => Some(lo),
            _ => None,
        };
        let options = IngestOptions {
            total,
            ..IngestOptions::default()
        };
        self.ingest_stream(futures::stream::iter(iter), options)
            .await
    }

    /// Ingests a stream of documents: each round takes up to
    /// [`RagConfig::ingest_window`](super::RagConfig::ingest_window)
    /// documents, looks up their stored hashes in one call, skips the
    /// unchanged, chunks the rest, embeds their chunks in batches of
    /// `embed_batch_size` with at most `embed_concurrency` calls in flight,
    /// and upserts each document's chunks in one call (which replaces its
    /// old chunks atomically; several documents per call when the store's
    /// [`Capabilities::upsert_batch_documents`](crate::Capabilities) asks
    /// for it). While one round is written, the next is
    /// looked up, chunked and embedded, unless the two share a document
    /// id (then the next waits for the writes).
    ///
    /// A failure (invalid document, chunking, embedding, storing) is
    /// reported for that document only: its stored version is untouched and
    /// the others go on. When an embedder batch that mixes documents fails,
    /// each document of it is retried alone, so one bad document does not
    /// fail its neighbours.
    pub async fn ingest_stream<S>(&self, docs: S, options: IngestOptions) -> IngestReport
    where
        S: Stream<Item = Document> + Send,
    {
        let started = Instant::now();
        let mut tally = Tally {
            report: IngestReport::default(),
            options: &options,
        };
        let window = self.inner.config.ingest_window;
        let ns = &options.namespace;
        let mut docs = std::pin::pin!(docs);
        let mut carry: Option<Document> = None;
        // The round being written, and its document ids: the next round is
        // prepared (hash lookup, chunking, embedding) while it is written,
        // unless the two share a document.
        let mut writing: Option<(Prepared, HashSet<DocumentId>)> = None;
        loop {
            let mut batch: Vec<Document> = Vec::new();
            let mut ids: HashSet<DocumentId> = HashSet::new();
            if let Some(d) = carry.take() {
                ids.insert(d.id().clone());
                batch.push(d);
            }
            while batch.len() < window {
                let Some(d) = docs.next().await else { break };
                // The same id twice in one round would race: the later one
                // starts the next round.
                if !ids.insert(d.id().clone()) {
                    carry = Some(d);
                    break;
                }
                batch.push(d);
            }
            if batch.is_empty() {
                break;
            }
            let n = batch.len();
            let prepare = self
                .inner
                .prepare_round(ns, batch)
                .instrument(tracing::info_span!("rag.ingest_round", documents = n));
            let prepared = match writing.take() {
                // A document of this round is being written: its stored
                // hash (and so whether it changed) is only known after.
                Some((previous, previous_ids)) if !previous_ids.is_disjoint(&ids) => {
                    self.inner.write_round(ns, previous, &mut tally).await;
                    prepare.await
                }
                Some((previous, _)) => {
                    let write = self.inner.write_round(ns, previous, &mut tally);
                    futures::join!(prepare, write).0
                }
                None => prepare.await,
            };
            writing = Some((prepared, ids));
        }
        if let Some((last, _)) = writing {
            self.inner.write_round(ns, last, &mut tally).await;
        }
        let mut report = tally.report;
        report.elapsed = started.elapsed();
        tracing::info!(
            added = report.added.len(),
            replaced = report.replaced.len(),
            unchanged = report.unchanged.len(),
            failed = report.failed.len(),
            chunks = report.chunks_written,
            "ingest finished"
        );
        report
    }

    /// Removes a document from every index of the default namespace;
    /// returns how many chunks were removed.
    pub async fn delete_document(&self, id: &DocumentId) -> Result<usize> {
        self.delete_document_in(&Namespace::default(), id).await
    }

    /// Removes a document from every index of `namespace`.
    pub async fn delete_document_in(
        &self,
        namespace: &Namespace,
        id: &DocumentId,
    ) -> Result<usize> {
        let result = self.inner.store.delete_document(namespace, id).await;
        // Bumped even on error: a failed delete may have removed a part.
        self.inner.versions.bump(namespace);
        result
    }
}

/// A document to chunk (with whether it was stored before), and its chunks.
type Chunked = ((Document, bool), Result<Vec<Chunk>>);

impl Inner {
    /// Chunks documents in order: inline when they are small, else in
    /// about equal parts, one per core, on rayon's pool (`crate::cpu`).
    async fn chunk_all(&self, docs: Vec<(Document, bool)>) -> Vec<Chunked> {
        let bytes: usize = docs.iter().map(|(d, _)| d.text().len()).sum();
        let parts = crate::cpu::parallelism().min(bytes / crate::cpu::OFFLOAD_BYTES);
        let chunk = |chunker: &dyn crate::Chunker, docs: Vec<(Document, bool)>| {
            docs.into_iter()
                .map(|d| {
                    let chunks = chunker.chunk(&d.0);
                    (d, chunks)
                })
                .collect::<Vec<Chunked>>()
        };
        if parts < 2 {
            return chunk(self.chunker.as_ref(), docs);
        }
        let groups = crate::cpu::split_by_weight(docs, parts, |(d, _)| d.text().len());
        let runs = groups.into_iter().map(|group| {
            let chunker = Arc::clone(&self.chunker);
            crate::cpu::run(move || chunk(chunker.as_ref(), group))
        });
        futures::future::join_all(runs)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// A round's first stage: validate, look up stored hashes, chunk the
    /// changed documents, embed their chunks. Decides every outcome but the
    /// writes' and touches no stored data, so it may run while the previous
    /// round is written.
    async fn prepare_round(&self, ns: &Namespace, docs: Vec<Document>) -> Prepared {
        let mut out = Prepared::default();
        // 1. Validate.
        let mut valid = Vec::with_capacity(docs.len());
        for doc in docs {
            match doc.validate() {
                Ok(()) => valid.push(doc),
                Err(e) => out.settled.push((doc, IngestOutcome::Failed, Some(e))),
            }
        }
        if valid.is_empty() {
            return out;
        }

        // 2. Skip unchanged documents.
        let ids: Vec<DocumentId> = valid.iter().map(|d| d.id().clone()).collect();
        let stored: HashMap<DocumentId, String> = match self.store.document_hashes(ns, &ids).await {
            Ok(v) => v.into_iter().collect(),
            Err(e) => {
                for doc in valid {
                    let e = e.clone();
                    out.settled.push((doc, IngestOutcome::Failed, Some(e)));
                }
                return out;
            }
        };

        // 3. Chunk the changed ones, spread over the cores when there is
        //    enough text (chunking is CPU-bound: tokenizing, segmenting).
        let mut changed: Vec<(Document, bool)> = Vec::new();
        for doc in valid {
            let old = stored.get(doc.id());
            if old.is_some_and(|h| *h == doc.content_hash()) {
                out.settled.push((doc, IngestOutcome::Unchanged, None));
                continue;
            }
            let existed = old.is_some();
            changed.push((doc, existed));
        }
        let mut work: Vec<Work> = Vec::new();
        for ((doc, existed), chunked) in self.chunk_all(changed).await {
            match chunked {
                Ok(chunks) if chunks.is_empty() => {
                    let e = Error::invalid_input(format!(
                        "document {:?} produced no chunks",
                        doc.id().as_str()
                    ));
                    out.settled.push((doc, IngestOutcome::Failed, Some(e)));
                }
                Ok(chunks) => work.push(Work {
                    existed,
                    vectors: vec![None; chunks.len()],
                    chunks,
                    doc,
                    error: None,
                }),
                Err(e) => out.settled.push((doc, IngestOutcome::Failed, Some(e))),
            }
        }

        // 4. Embed in batches that may span documents, bounded concurrency.
        out.embed_calls = self.embed_all(&mut work).await;
        for w in work {
            if let Some(e) = w.error {
                out.settled.push((w.doc, IngestOutcome::Failed, Some(e)));
                continue;
            }
            let embedded: Option<Vec<EmbeddedChunk>> = w
                .chunks
                .into_iter()
                .zip(w.vectors)
                .map(|(chunk, v)| v.map(|vector| EmbeddedChunk { chunk, vector }))
                .collect();
            match embedded {
                Some(e) => out.ready.push((w.doc, w.existed, e)),
                None => {
                    let e = Error::backend(
                        self.embedder.model_id(),
                        false,
                        "a chunk was left without a vector",
                    );
                    out.settled.push((w.doc, IngestOutcome::Failed, Some(e)));
                }
            }
        }
        out
    }

    /// A round's second stage: record the outcomes decided by
    /// [`prepare_round`](Self::prepare_round), then upsert the ready
    /// documents (each in one call, or as many per call as the store asks;
    /// bounded concurrency) and record how each went.
    async fn write_round(&self, ns: &Namespace, round: Prepared, tally: &mut Tally<'_>) {
        tally.report.embed_calls += round.embed_calls;
        for (doc, outcome, error) in round.settled {
            tally.record(&doc, outcome, error);
        }
        if round.ready.is_empty() {
            return;
        }
        let per_call = self.store.capabilities().upsert_batch_documents.max(1);
        let mut groups: Vec<Vec<Ready>> = Vec::new();
        for r in round.ready {
            match groups.last_mut() {
                Some(g) if g.len() < per_call => g.push(r),
                _ => groups.push(vec![r]),
            }
        }
        let mut upserts = futures::stream::iter(groups)
            .map(|group| self.upsert_group(ns, group))
            .buffer_unordered(self.config.upsert_concurrency);
        while let Some(written) = upserts.next().await {
            for (doc, existed, n, result) in written {
                match result {
                    Ok(()) if existed => {
                        tally.record(&doc, IngestOutcome::Replaced { chunks: n }, None)
                    }
                    Ok(()) => tally.record(&doc, IngestOutcome::Added { chunks: n }, None),
                    Err(e) => tally.record(&doc, IngestOutcome::Failed, Some(e)),
                }
            }
        }
        // After the writes, so an answer computed from the old data is
        // never stored under the new version.
        self.versions.bump(ns);
    }

    /// Upserts documents in one call; when a call of several fails, each
    /// document is retried alone (until [`STORE_DOWN_AFTER`] in a row fail
    /// for a reason other than their content: then the rest fail with that
    /// error) (upserts replace, so a part the failed
    /// call may have written is simply written again). The chunks are
    /// moved into one batch and each document's retry borrows its part of
    /// it: nothing is copied. Returns each document with whether it
    /// existed, its chunk count and the result.
    async fn upsert_group(
        &self,
        ns: &Namespace,
        group: Vec<Ready>,
    ) -> Vec<(Document, bool, usize, Result<()>)> {
        let mut docs = Vec::with_capacity(group.len());
        let mut all: Vec<EmbeddedChunk> = Vec::new();
        for (doc, existed, chunks) in group {
            let start = all.len();
            all.extend(chunks);
            docs.push((doc, existed, start..all.len()));
        }
        if docs.len() > 1 {
            match self.store.upsert(ns, &all).await {
                Ok(()) => {
                    return docs
                        .into_iter()
                        .map(|(doc, existed, range)| (doc, existed, range.len(), Ok(())))
                        .collect();
                }
                Err(e) => tracing::warn!(
                    namespace = %ns,
                    documents = docs.len(),
                    error = %e,
                    "a grouped upsert failed; writing its documents one by one"
                ),
            }
        }
        let mut out = Vec::with_capacity(docs.len());
        // Writing alone isolates a document the store refuses; when several
        // in a row fail for a reason that is not the document (a full disk,
        // a dead database), the store is failing and the rest are not tried.
        let mut failing_in_a_row = 0;
        let mut store_down: Option<Error> = None;
        for (doc, existed, range) in docs {
            let n = range.len();
            let result = match &store_down {
                Some(e) => Err(e.clone()),
                None => self.store.upsert(ns, &all[range]).await,
            };
            match &result {
                Err(e) if !matches!(e, Error::InvalidInput { .. }) => {
                    failing_in_a_row += 1;
                    if failing_in_a_row >= STORE_DOWN_AFTER && store_down.is_none() {
                        tracing::warn!(
                            namespace = %ns,
                            error = %e,
                            "{STORE_DOWN_AFTER} documents in a row failed to write: not trying the rest of the group"
                        );
                        store_down = Some(e.clone());
                    }
                }
                _ => failing_in_a_row = 0,
            }
            out.push((doc, existed, n, result));
        }
        out
    }

    /// Embeds every chunk of `work`; returns the embedder calls made.
    async fn embed_all(&self, work: &mut [Work]) -> usize {
        // (work index, chunk index) of every chunk, in batches.
        let all: Vec<(usize, usize)> = work
            .iter()
            .enumerate()
            .flat_map(|(w, item)| (0..item.chunks.len()).map(move |c| (w, c)))
            .collect();
        let batches: Vec<Batch> = all
            .chunks(self.config.embed_batch_size)
            .map(<[_]>::to_vec)
            .collect();
        let mut calls = batches.len();
        let results: Vec<(Batch, Result<Vec<Vec<f32>>>)> = {
            let work_ref: &[Work] = work;
            futures::stream::iter(batches)
                .map(|batch| async move {
                    let texts: Vec<String> = batch
                        .iter()
                        .map(|&(w, c)| work_ref[w].chunks[c].text.clone())
                        .collect();
                    let result = self.embed_checked(&texts).await;
                    (batch, result)
                })
                .buffer_unordered(self.config.embed_concurrency)
                .collect()
                .await
        };
        for (batch, result) in results {
            match result {
                Ok(vectors) => {
                    for ((w, c), v) in batch.into_iter().zip(vectors) {
                        work[w].vectors[c] = Some(v);
                    }
                }
                Err(e) => {
                    let docs: Vec<usize> = {
                        let mut d: Vec<usize> = batch.iter().map(|(w, _)| *w).collect();
                        d.dedup();
                        d
                    };
                    if docs.len() == 1 {
                        work[docs[0]].error.get_or_insert(e);
                        continue;
                    }
                    // Retry each document of a mixed batch alone, so one bad
                    // document does not fail the others.
                    for w in docs {
                        if work[w].error.is_some() {
                            continue;
                        }
                        let part: Vec<usize> = batch
                            .iter()
                            .filter(|(bw, _)| *bw == w)
                            .map(|(_, c)| *c)
                            .collect();
                        let texts: Vec<String> = part
                            .iter()
                            .map(|&c| work[w].chunks[c].text.clone())
                            .collect();
                        calls += 1;
                        match self.embed_checked(&texts).await {
                            Ok(vectors) => {
                                for (c, v) in part.into_iter().zip(vectors) {
                                    work[w].vectors[c] = Some(v);
                                }
                            }
                            Err(e) => work[w].error = Some(e),
                        }
                    }
                }
            }
        }
        calls
    }

    /// Embeds and checks that one vector came back per text.
    async fn embed_checked(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let vectors = self.embedder.embed(texts).await?;
        if vectors.len() != texts.len() {
            return Err(Error::backend(
                self.embedder.model_id(),
                false,
                format!(
                    "embedder returned {} vectors for {} texts",
                    vectors.len(),
                    texts.len()
                ),
            ));
        }
        Ok(vectors)
    }
}
