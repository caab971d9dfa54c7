//! The retrieve-rerank-generate pipeline and ingestion, end to end on the
//! in-memory store, the HashEmbedder, the ScriptedLlm and the extractive
//! answerer. Session behaviour is tested in `src/pipeline/session_tests.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;
use proptest::prelude::*;
use rag_core::Chunker as _;
use rag_core::pipeline::{IngestOutcome, count_prompt_tokens};
use rag_core::testkit::{ScriptedLlm, Step, fresh_namespace};
use rag_core::{
    Answer, Ask, AskEvent, Capabilities, Chunk, ChunkId, Document, DocumentId, DocumentInfo,
    EmbeddedChunk, Embedder, Error, Fusion, HashEmbedder, IngestOptions, LlmClient,
    MemoryVectorStore, Namespace, Rag, RagConfig, Reranker, Result, ScoredChunk, SearchMode,
    SearchRequest, TextChunker, TokenBudget, TokenEncoding, VectorStore,
};

fn corpus() -> Vec<Document> {
    vec![
        Document::new(
            "keys.md",
            "# Keys\n\nAPI keys are rotated every month by the ops team. Revoke a leaked key at once.",
        ),
        Document::new(
            "deploy.md",
            "# Deploys\n\nDeploys run every Tuesday through the release pipeline. Rollbacks use the previous image.",
        ),
        Document::new(
            "tests.md",
            "# Tests\n\nRun the test suite with cargo test. Integration tests need a database.",
        ),
        Document::new(
            "lunch.txt",
            "The cafeteria serves lunch at noon. Vegetarian options are available daily.",
        ),
    ]
}

fn small_chunker() -> TextChunker {
    TextChunker::by_tokens(TokenEncoding::Cl100k, 64, 8).unwrap()
}

fn rag_with(store: Arc<dyn VectorStore>, llm: Arc<dyn LlmClient>) -> Rag {
    Rag::builder()
        .store_arc(store)
        .llm_arc(llm)
        .embedder(HashEmbedder::new(128))
        .chunker(small_chunker())
        .build()
        .unwrap()
}

fn text_of(events: &[AskEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            AskEvent::Delta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- ingestion

#[tokio::test]
async fn reingesting_a_corpus_changes_nothing() {
    let store = Arc::new(MemoryVectorStore::default());
    let rag = rag_with(store.clone(), Arc::new(ScriptedLlm::new()));
    let ns = Namespace::default();
    let first = rag.ingest_many(corpus()).await;
    assert!(first.is_success(), "{:?}", first.failed);
    assert_eq!(first.added.len(), 4);
    let count = store.count(&ns).await.unwrap();
    assert!(count >= 4);
    let second = rag.ingest_many(corpus()).await;
    assert_eq!(second.unchanged.len(), 4, "unchanged documents are skipped");
    assert!(second.added.is_empty() && second.replaced.is_empty());
    assert_eq!(second.chunks_written, 0);
    assert_eq!(second.embed_calls, 0, "skipped documents are not embedded");
    assert_eq!(store.count(&ns).await.unwrap(), count);
}

#[tokio::test]
async fn a_changed_document_leaves_no_stale_chunk() {
    let store = Arc::new(MemoryVectorStore::default());
    let rag = rag_with(store.clone(), Arc::new(ScriptedLlm::new()));
    let ns = Namespace::default();
    let long_v1 = "Zebra stripes are unique. ".repeat(60);
    rag.ingest(Document::new("doc.md", long_v1)).await.unwrap();
    let old_ids: Vec<ChunkId> = store
        .search(&ns, SearchRequest::keyword("zebra", 100))
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.chunk.id)
        .collect();
    assert!(old_ids.len() > 1, "v1 has several chunks");

    let report = rag
        .ingest(Document::new("doc.md", "Giraffes have long necks."))
        .await
        .unwrap();
    assert_eq!(report.replaced, [DocumentId::new("doc.md").unwrap()]);
    assert!(store.get_chunks(&ns, &old_ids).await.unwrap().is_empty());
    assert!(
        store
            .search(&ns, SearchRequest::keyword("zebra", 100))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.count(&ns).await.unwrap(), 1);
    let listed = store.list_documents(&ns, None, 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].chunks, 1);
}

/// An embedder that fails on cue: any batch containing `POISON`.
#[derive(Debug)]
struct PoisonEmbedder {
    inner: HashEmbedder,
    calls: AtomicUsize,
}

#[async_trait]
impl Embedder for PoisonEmbedder {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if texts.iter().any(|t| t.contains("POISON")) {
            return Err(Error::backend("poison", true, "embedding failed on cue"));
        }
        self.inner.embed(texts).await
    }
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        self.inner.embed_query(query).await
    }
}

#[tokio::test]
async fn embedding_failure_keeps_the_old_version_and_the_others_go_on() {
    let store = Arc::new(MemoryVectorStore::default());
    let embedder = Arc::new(PoisonEmbedder {
        inner: HashEmbedder::new(128),
        calls: AtomicUsize::new(0),
    });
    let rag = Rag::builder()
        .store_arc(store.clone())
        .embedder_arc(embedder.clone())
        .chunker(small_chunker())
        // Big batches so the poisoned document shares a batch with others.
        .config(RagConfig::default().with_embed_batch_size(64))
        .build()
        .unwrap();
    let ns = Namespace::default();
    rag.ingest(Document::new("a.md", "Original alpha text about otters."))
        .await
        .unwrap();

    let progress = Arc::new(Mutex::new(Vec::new()));
    let seen = progress.clone();
    let docs = vec![
        Document::new("b.md", "Beta text about beavers."),
        Document::new("a.md", "Changed alpha text. POISON here."),
        Document::new("c.md", "Gamma text about cormorants."),
        Document::new("empty.md", "   "),
    ];
    let report = rag
        .ingest_stream(
            futures::stream::iter(docs),
            IngestOptions::new(ns.clone())
                .with_total(4)
                .with_progress(move |p| seen.lock().push((p.processed, p.outcome.clone()))),
        )
        .await;
    let failed: Vec<&str> = report
        .failed
        .iter()
        .map(|f| f.document_id.as_str())
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(failed.contains(&"a.md") && failed.contains(&"empty.md"));
    let a = report
        .failed
        .iter()
        .find(|f| f.document_id.as_str() == "a.md")
        .unwrap();
    assert!(matches!(a.error, Error::Backend { .. }), "{}", a.error);
    let empty = report
        .failed
        .iter()
        .find(|f| f.document_id.as_str() == "empty.md")
        .unwrap();
    assert!(matches!(empty.error, Error::InvalidInput { .. }));
    assert_eq!(report.added.len(), 2, "b and c are ingested");

    // The old version of a.md is still searchable, the new one is not there.
    let hits = store
        .search(&ns, SearchRequest::keyword("otters", 5))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].chunk.document_id.as_str(), "a.md");
    assert!(
        store
            .search(&ns, SearchRequest::keyword("POISON", 5))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .search(&ns, SearchRequest::keyword("beavers", 5))
            .await
            .unwrap()
            .len(),
        1
    );

    // Progress: one event per document, counting up to the total.
    let events = progress.lock().clone();
    assert_eq!(events.len(), 4);
    assert_eq!(events.iter().map(|e| e.0).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.1 == IngestOutcome::Failed)
            .count(),
        2
    );

    // The mixed batch failed, then each document was retried alone.
    assert_eq!(report.embed_calls, 1 + 3);
}

/// Records the most embedder calls in flight at once.
#[derive(Debug, Default)]
struct ConcurrencyProbe {
    inner: HashEmbedder,
    in_flight: AtomicUsize,
    max: AtomicUsize,
    calls: AtomicUsize,
}

#[async_trait]
impl Embedder for ConcurrencyProbe {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.inner.embed(texts).await
    }
}

#[tokio::test]
async fn embedding_is_batched_with_bounded_concurrency() {
    let probe = Arc::new(ConcurrencyProbe::default());
    let rag = Rag::builder()
        .embedder_arc(probe.clone())
        .config(
            RagConfig::default()
                .with_embed_batch_size(2)
                .with_embed_concurrency(3)
                .with_ingest_window(16),
        )
        .build()
        .unwrap();
    let docs = (0..40).map(|i| Document::new(format!("d{i}.txt"), format!("document number {i}")));
    let report = rag.ingest_many(docs).await;
    assert_eq!(report.added.len(), 40);
    // 40 one-chunk documents in rounds of 16, 16, 8: 8 + 8 + 4 batches of 2.
    assert_eq!(report.embed_calls, 20);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 20);
    let max = probe.max.load(Ordering::SeqCst);
    assert!((2..=3).contains(&max), "max in flight {max}");
}

#[tokio::test]
async fn single_ingest_returns_the_failure_as_an_error() {
    let rag = Rag::builder().build().unwrap();
    let err = rag.ingest(Document::new("x", " ")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }));
}

#[tokio::test]
async fn deleted_document_is_gone_from_dense_and_keyword_search() {
    let store = Arc::new(MemoryVectorStore::default());
    let rag = rag_with(store.clone(), Arc::new(ScriptedLlm::new()));
    let ns = Namespace::default();
    rag.ingest_many(corpus()).await;
    let id = DocumentId::new("keys.md").unwrap();
    let removed = rag.delete_document(&id).await.unwrap();
    assert!(removed >= 1);
    let q = rag
        .embedder()
        .embed_query("API keys rotated")
        .await
        .unwrap();
    let dense = store
        .search(&ns, SearchRequest::dense(q, 100))
        .await
        .unwrap();
    assert!(!dense.is_empty());
    assert!(dense.iter().all(|s| s.chunk.document_id != id));
    let kw = store
        .search(&ns, SearchRequest::keyword("keys rotated", 100))
        .await
        .unwrap();
    assert!(kw.iter().all(|s| s.chunk.document_id != id));
    let answer = rag
        .ask(Ask::new("How often are API keys rotated?"))
        .await
        .unwrap();
    assert!(answer.sources.iter().all(|s| s.document_id != id));
    assert_eq!(rag.delete_document(&id).await.unwrap(), 0);
}

#[tokio::test]
async fn namespaces_are_isolated() {
    let rag = rag_with(
        Arc::new(MemoryVectorStore::default()),
        Arc::new(ScriptedLlm::new()),
    );
    let a = fresh_namespace("iso_a");
    let b = fresh_namespace("iso_b");
    rag.ingest_in(&a, Document::new("keys.md", "API keys rotate monthly."))
        .await
        .unwrap();
    let in_a = rag.ask(Ask::new("API keys?").namespace(a)).await.unwrap();
    assert_eq!(in_a.sources.len(), 1);
    let in_b = rag.ask(Ask::new("API keys?").namespace(b)).await.unwrap();
    assert!(in_b.sources.is_empty());
}

// ---------------------------------------------------------------------- ask

async fn ingested(llm: ScriptedLlm) -> Rag {
    let rag = rag_with(Arc::new(MemoryVectorStore::default()), Arc::new(llm));
    assert!(rag.ingest_many(corpus()).await.is_success());
    rag
}

#[tokio::test]
async fn every_citation_maps_to_a_source_and_invalid_markers_are_removed() {
    let llm = ScriptedLlm::new().then_reply("Keys rotate monthly [1]. Also [2, 42] and [99].");
    let rag = ingested(llm.clone()).await;
    let answer = rag
        .ask(Ask::new("How often are API keys rotated?"))
        .await
        .unwrap();
    assert_eq!(answer.text, "Keys rotate monthly [1]. Also [2] and .");
    assert_eq!(answer.trace.removed_markers, 2);
    assert_eq!(answer.citations.len(), 2);
    let docs: Vec<Document> = corpus();
    for c in &answer.citations {
        let source = &answer.sources[c.number - 1];
        assert_eq!(source.number, c.number);
        assert_eq!(source.chunk_id, c.chunk_id);
        assert_eq!(source.document_id, c.document_id);
        assert_eq!(source.source, c.source);
        let doc = docs.iter().find(|d| *d.id() == c.document_id).unwrap();
        assert_eq!(
            &doc.text()[c.byte_range.clone()],
            source.text,
            "byte range maps to the chunk"
        );
    }
    assert_eq!(answer.sources[0].source, "keys.md", "best source first");
    // The prompt asked for [n] markers and numbered the sources.
    let req = &llm.requests()[0];
    assert!(req.messages[0].content.contains("[1]"));
    assert!(
        req.messages[0]
            .content
            .contains("<source n=\"1\" from=\"keys.md\">")
    );
    assert_eq!(
        req.messages.last().unwrap().content,
        "How often are API keys rotated?"
    );
    assert_eq!(req.max_tokens, Some(512));
}

#[tokio::test]
async fn stream_yields_sources_then_deltas_then_done_without_invalid_markers() {
    let llm = ScriptedLlm::new().then(Step::Deltas(vec![
        "Keys rotate [".into(),
        "1]".into(),
        " monthly [".into(),
        "7".into(),
        "] ok [2".into(),
        "]".into(),
    ]));
    let rag = ingested(llm).await;
    let events: Vec<AskEvent> = rag
        .ask_stream(Ask::new("How often are API keys rotated?"))
        .await
        .unwrap()
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert!(matches!(events.first(), Some(AskEvent::Sources(s)) if !s.is_empty()));
    assert!(matches!(events.last(), Some(AskEvent::Done(_))));
    for e in &events[1..events.len() - 1] {
        assert!(
            matches!(e, AskEvent::Delta(d) if !d.contains("[7") && !d.contains("7]")),
            "{e:?}"
        );
    }
    let streamed = text_of(&events);
    assert_eq!(streamed, "Keys rotate [1] monthly  ok [2]");
    let Some(AskEvent::Done(answer)) = events.last() else {
        unreachable!()
    };
    assert_eq!(answer.text, streamed);
    assert_eq!(answer.trace.removed_markers, 1);
    assert_eq!(answer.citations.len(), 2);
    let AskEvent::Sources(sources) = &events[0] else {
        unreachable!()
    };
    assert_eq!(sources, &answer.sources);
    assert!(answer.usage.completion_tokens > 0);
}

#[tokio::test]
async fn a_failing_stream_ends_with_an_error() {
    let llm = ScriptedLlm::new().then(Step::FailMidStream(
        vec!["partial ".into()],
        Error::backend("scripted", true, "connection reset"),
    ));
    let rag = ingested(llm).await;
    let items: Vec<Result<AskEvent>> = rag
        .ask_stream(Ask::new("keys?"))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(matches!(items[0], Ok(AskEvent::Sources(_))));
    assert!(matches!(items[1], Ok(AskEvent::Delta(_))));
    assert!(matches!(items.last(), Some(Err(Error::Backend { .. }))));
    assert!(!items.iter().any(|i| matches!(i, Ok(AskEvent::Done(_)))));
}

/// The in-memory store, recording each search's mode and depth; with
/// `native_hybrid` off it declares no hybrid search and refuses one, with
/// `keyword` off no keyword search either (refusing all but dense).
#[derive(Debug)]
struct Recording {
    inner: MemoryVectorStore,
    native_hybrid: bool,
    keyword: bool,
    searches: Mutex<Vec<(SearchMode, usize)>>,
}

impl Recording {
    fn new(native_hybrid: bool) -> Self {
        Self {
            inner: MemoryVectorStore::default(),
            native_hybrid,
            keyword: true,
            searches: Mutex::new(Vec::new()),
        }
    }

    /// A store without keyword (or hybrid) search.
    fn dense_only() -> Self {
        Self {
            keyword: false,
            ..Self::new(false)
        }
    }
}

#[async_trait]
impl VectorStore for Recording {
    fn capabilities(&self) -> Capabilities {
        let mut caps = self.inner.capabilities();
        caps.hybrid = self.native_hybrid;
        if !self.keyword {
            caps.keyword = false;
            caps.backend = "dense-only".into();
        }
        caps
    }
    async fn upsert(&self, ns: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()> {
        self.inner.upsert(ns, chunks).await
    }
    async fn search(&self, ns: &Namespace, req: SearchRequest) -> Result<Vec<ScoredChunk>> {
        self.searches.lock().push((req.mode, req.top_k));
        if req.mode == SearchMode::Hybrid && !self.native_hybrid {
            return Err(Error::unsupported("recording", "hybrid search"));
        }
        if req.mode == SearchMode::Keyword && !self.keyword {
            return Err(Error::unsupported("dense-only", "keyword search"));
        }
        self.inner.search(ns, req).await
    }
    async fn delete_document(&self, ns: &Namespace, id: &DocumentId) -> Result<usize> {
        self.inner.delete_document(ns, id).await
    }
    async fn document_hashes(
        &self,
        ns: &Namespace,
        ids: &[DocumentId],
    ) -> Result<Vec<(DocumentId, String)>> {
        self.inner.document_hashes(ns, ids).await
    }
    async fn get_chunks(&self, ns: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>> {
        self.inner.get_chunks(ns, ids).await
    }
    async fn list_documents(
        &self,
        ns: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<DocumentInfo>> {
        self.inner.list_documents(ns, after, limit).await
    }
    async fn count(&self, ns: &Namespace) -> Result<usize> {
        self.inner.count(ns).await
    }
    async fn delete_namespace(&self, ns: &Namespace) -> Result<()> {
        self.inner.delete_namespace(ns).await
    }
    async fn health(&self) -> Result<()> {
        Ok(())
    }
}

/// One meaning of hybrid: a store with hybrid search gets one hybrid
/// request; for a store without, the pipeline runs both searches at the
/// stores' pool depth and fuses them itself — and the rankings agree.
#[tokio::test]
async fn hybrid_retrieval_is_one_request_or_the_same_fusion_of_two() {
    let native = Arc::new(Recording::new(true));
    let parts = Arc::new(Recording::new(false));
    let mut docs = corpus();
    for i in 0..40 {
        docs.push(Document::new(
            format!("extra{i}.md"),
            format!(
                "Note {i}: keys and deploys are mentioned {} times here.",
                i % 6
            ),
        ));
    }
    let native_rag = rag_with(native.clone(), Arc::new(ScriptedLlm::new()));
    let parts_rag = rag_with(parts.clone(), Arc::new(ScriptedLlm::new()));
    native_rag.ingest_many(docs.clone()).await;
    parts_rag.ingest_many(docs).await;
    for fusion in [
        Fusion::Rrf { k: 60.0 },
        Fusion::Weighted { dense_weight: 0.7 },
    ] {
        for pool in [None, Some(5)] {
            let mut ask = Ask::new("how often are keys rotated")
                .top_k(4)
                .rerank_top_n(4)
                .fusion(fusion);
            if let Some(p) = pool {
                ask = ask.hybrid_pool(p);
            }
            native.searches.lock().clear();
            parts.searches.lock().clear();
            let a = native_rag.search(&ask).await.unwrap();
            let b = parts_rag.search(&ask).await.unwrap();
            let depth = pool.unwrap_or(rag_core::search::hybrid_pool(4));
            assert_eq!(*native.searches.lock(), [(SearchMode::Hybrid, 4)]);
            let mut two = parts.searches.lock().clone();
            two.sort_by_key(|(m, _)| *m as u8);
            assert_eq!(
                two,
                [(SearchMode::Dense, depth), (SearchMode::Keyword, depth)]
            );
            let ranking = |l: &[ScoredChunk]| -> Vec<(String, i64)> {
                l.iter()
                    .map(|h| (h.chunk.id.to_string(), (h.score * 1e5).round() as i64))
                    .collect()
            };
            assert_eq!(ranking(&a), ranking(&b), "{fusion:?}, pool {pool:?}");
            assert_eq!(a.len(), 4);
        }
    }
}

#[tokio::test]
async fn keywordless_store_falls_back_to_dense_and_says_so() {
    let rag = rag_with(
        Arc::new(Recording::dense_only()),
        Arc::new(ScriptedLlm::new()),
    );
    rag.ingest_many(corpus()).await;
    let answer = rag.ask(Ask::new("API keys rotated?")).await.unwrap();
    assert_eq!(answer.trace.mode_requested, SearchMode::Hybrid);
    assert_eq!(answer.trace.mode_used, SearchMode::Dense);
    let note = answer.trace.fallback.as_deref().unwrap();
    assert!(
        note.contains("dense-only") && note.contains("keyword"),
        "{note}"
    );
    assert_eq!(answer.trace.keyword_candidates, 0);
    assert!(answer.trace.dense_candidates > 0);
    assert!(!answer.sources.is_empty());
}

#[tokio::test]
async fn hybrid_fuses_both_lists_and_modes_can_be_chosen() {
    let rag = ingested(ScriptedLlm::new()).await;
    let hybrid = rag
        .ask(Ask::new("How do I run the test suite?"))
        .await
        .unwrap();
    assert_eq!(hybrid.trace.mode_used, SearchMode::Hybrid);
    assert!(hybrid.trace.dense_candidates > 0 && hybrid.trace.keyword_candidates > 0);
    assert_eq!(hybrid.sources[0].source, "tests.md");
    assert!(hybrid.trace.fallback.is_none());
    let weighted = rag
        .ask(
            Ask::new("How do I run the test suite?").fusion(Fusion::Weighted { dense_weight: 0.5 }),
        )
        .await
        .unwrap();
    assert_eq!(weighted.sources[0].source, "tests.md");
    let kw = rag
        .ask(Ask::new("cafeteria lunch").mode(SearchMode::Keyword))
        .await
        .unwrap();
    assert_eq!(kw.trace.dense_candidates, 0);
    assert_eq!(kw.trace.timings.embed, std::time::Duration::ZERO);
    assert_eq!(
        kw.sources.len(),
        1,
        "keyword search finds only matching chunks"
    );
    assert_eq!(kw.sources[0].source, "lunch.txt");
    let filtered = rag
        .ask(
            Ask::new("anything")
                .mode(SearchMode::Dense)
                .filter(rag_core::Filter::eq(rag_core::Field::Source, "deploy.md")),
        )
        .await
        .unwrap();
    assert!(filtered.sources.iter().all(|s| s.source == "deploy.md"));
}

/// Reverses the candidates' order.
#[derive(Debug)]
struct Reverse;

#[async_trait]
impl Reranker for Reverse {
    async fn rerank(
        &self,
        _q: &str,
        mut c: Vec<ScoredChunk>,
        n: usize,
    ) -> Result<Vec<ScoredChunk>> {
        c.reverse();
        c.truncate(n);
        for (i, s) in c.iter_mut().enumerate() {
            s.rerank_score = Some(-(i as f32));
            s.score = -(i as f32);
        }
        Ok(c)
    }
}

#[tokio::test]
async fn the_reranker_reorders_and_keeps_top_n() {
    let store: Arc<dyn VectorStore> = Arc::new(MemoryVectorStore::default());
    let plain = rag_with(store.clone(), Arc::new(ScriptedLlm::new()));
    plain.ingest_many(corpus()).await;
    let ask = Ask::new("How often are API keys rotated?")
        .top_k(4)
        .rerank_top_n(4);
    let before: Vec<String> = plain
        .ask(ask.clone())
        .await
        .unwrap()
        .sources
        .into_iter()
        .map(|s| s.source)
        .collect();
    let reranking = Rag::builder()
        .store_arc(store)
        .embedder(HashEmbedder::new(128))
        .llm(ScriptedLlm::new())
        .reranker(Reverse)
        .build()
        .unwrap();
    let answer = reranking.ask(ask.clone()).await.unwrap();
    assert!(answer.trace.reranked);
    let after: Vec<String> = answer.sources.iter().map(|s| s.source.clone()).collect();
    let mut expected = before.clone();
    expected.reverse();
    assert_eq!(after, expected);
    let top2 = reranking.ask(ask.clone().rerank_top_n(2)).await.unwrap();
    assert_eq!(top2.sources.len(), 2);
    let off = reranking.ask(ask.rerank(false)).await.unwrap();
    assert!(!off.trace.reranked);
    assert_eq!(
        off.sources
            .iter()
            .map(|s| s.source.clone())
            .collect::<Vec<_>>(),
        before
    );
}

#[tokio::test]
async fn a_question_too_long_for_the_model_is_context_length_exceeded() {
    let llm = ScriptedLlm::new().with_context_window(1000);
    let rag = ingested(llm.clone()).await;
    let huge = "why is the sky blue ".repeat(400);
    let err = rag.ask(Ask::new(huge.clone())).await.unwrap_err();
    assert!(
        matches!(err, Error::ContextLengthExceeded { limit: 488, tokens } if tokens > 488),
        "{err}"
    );
    assert!(llm.requests().is_empty(), "nothing was sent");
    assert!(rag.ask_stream(Ask::new(huge)).await.is_err());
    let bad = rag
        .ask(Ask::new("q").answer_tokens(1000))
        .await
        .unwrap_err();
    assert!(matches!(bad, Error::InvalidInput { .. }));
}

#[tokio::test]
async fn invalid_asks_are_invalid_input() {
    let rag = ingested(ScriptedLlm::new()).await;
    for ask in [
        Ask::new("  "),
        Ask::new("q").top_k(0),
        Ask::new("q").rerank_top_n(0),
        Ask::new("q").temperature(f32::NAN),
        Ask::new("q").session(uuid::Uuid::new_v4()),
    ] {
        let err = rag.ask(ask.clone()).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{ask:?}: {err}");
    }
}

#[tokio::test]
async fn the_extractive_default_answers_with_citations() {
    let rag = Rag::builder().build().unwrap();
    assert!(rag.ingest_many(corpus()).await.is_success());
    let answer: Answer = rag
        .ask(Ask::new("How do I run the test suite?"))
        .await
        .unwrap();
    assert!(answer.extractive);
    assert!(answer.model.starts_with("extractive"));
    assert!(answer.text.contains("cargo test"), "{}", answer.text);
    assert!(!answer.citations.is_empty());
    assert_eq!(answer.citations[0].source, "tests.md");
    assert_eq!(answer.trace.removed_markers, 0);
    let events: Vec<AskEvent> = rag
        .ask_stream(Ask::new("How do I run the test suite?"))
        .await
        .unwrap()
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(text_of(&events), answer.text);
    // A custom prompt template still works.
    let custom = rag
        .ask(
            Ask::new("How do I run the test suite?").prompt(rag_core::PromptTemplate::new(
                "Answer tersely.",
                "Question: {question}",
            )),
        )
        .await
        .unwrap();
    assert!(custom.text.contains("[1]"), "{}", custom.text);
}

// -------------------------------------------------------------- token budget

fn word_soup(words: &[&'static str]) -> impl Strategy<Value = String> {
    let words = words.to_vec();
    prop::collection::vec(prop::sample::select(words), 0..120).prop_map(|w| w.concat())
}

const WORDS: &[&str] = &[
    "alpha ",
    "beta,",
    " gamma",
    "\n",
    "\n\n",
    "δέλτα ",
    "日本語",
    " 🙂",
    "[1] ",
    "x",
    "  ",
    "keys ",
    "rotate.",
    "(",
    ")",
    "\"",
    "<source>",
    "zebra ",
    "12345",
    "\t",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_prompt_never_exceeds_the_window_minus_the_answer(
        texts in prop::collection::vec(word_soup(WORDS), 1..12),
        question in word_soup(WORDS),
        window in 64usize..2500,
        context in 0usize..2000,
        answer in 1u32..400,
        top_n in 1usize..12,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let llm = ScriptedLlm::new().with_context_window(window);
            let rag = rag_with(Arc::new(MemoryVectorStore::default()), Arc::new(llm.clone()));
            let docs = texts.iter().enumerate().filter(|(_, t)| !t.trim().is_empty())
                .map(|(i, t)| Document::new(format!("d{i}.txt"), format!("keys {t}")));
            rag.ingest_many(docs).await;
            let q = format!("keys {question}");
            let ask = Ask::new(q).budget(TokenBudget::new(context, 0, answer)).rerank_top_n(top_n);
            match rag.ask(ask).await {
                Ok(a) => {
                    let req = &llm.requests()[0];
                    let tokens = count_prompt_tokens(&req.messages, TokenEncoding::Cl100k);
                    prop_assert!(tokens <= window - answer as usize,
                        "{tokens} > {window} - {answer}");
                    prop_assert!(tokens <= a.trace.prompt_tokens, "the estimate is an upper bound");
                    let source_tokens: usize = a.sources.iter()
                        .map(|s| TokenEncoding::Cl100k.count(&s.text)).sum();
                    prop_assert!(source_tokens <= context);
                }
                Err(Error::ContextLengthExceeded { tokens, limit }) => {
                    prop_assert!(tokens > limit);
                    prop_assert!(llm.requests().is_empty());
                }
                Err(Error::InvalidInput { .. }) => prop_assert!(answer as usize >= window),
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
            Ok(())
        })?;
    }
}

/// A chunker that fails one document and records the threads it ran on.
#[derive(Debug)]
struct RecordingChunker {
    inner: TextChunker,
    threads: Mutex<std::collections::HashSet<std::thread::ThreadId>>,
}

impl rag_core::Chunker for RecordingChunker {
    fn chunk(&self, doc: &Document) -> Result<Vec<Chunk>> {
        self.threads.lock().insert(std::thread::current().id());
        if doc.id().as_str() == "doc-07.txt" {
            return Err(Error::invalid_input(
                "boom: this document cannot be chunked",
            ));
        }
        self.inner.chunk(doc)
    }
}

#[tokio::test]
async fn large_rounds_are_chunked_off_the_task_and_keep_every_outcome() {
    // 40 documents of ~2 KiB: a round large enough to be chunked on the
    // CPU pool in parts (one per core).
    let docs: Vec<Document> = (0..40)
        .map(|i| {
            let body = format!("Document {i} talks about marker{i}x and shared words. ").repeat(40);
            Document::new(format!("doc-{i:02}.txt"), body)
        })
        .collect();
    let store = Arc::new(MemoryVectorStore::default());
    let chunker = Arc::new(RecordingChunker {
        inner: small_chunker(),
        threads: Mutex::new(Default::default()),
    });
    let rag = Rag::builder()
        .store_arc(store.clone())
        .llm(ScriptedLlm::new())
        .embedder(HashEmbedder::new(128))
        .chunker_arc(chunker.clone())
        .build()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let progress = seen.clone();
    let report = rag
        .ingest_stream(
            futures::stream::iter(docs.clone()),
            IngestOptions::default()
                .with_total(docs.len())
                .with_progress(move |p| progress.lock().push((p.processed, p.outcome.clone()))),
        )
        .await;

    // Every document has its outcome: 39 added, the bad one failed alone.
    assert_eq!(report.added.len(), 39);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].document_id.as_str(), "doc-07.txt");
    assert!(report.failed[0].error.to_string().contains("boom"));
    let seen = std::mem::take(&mut *seen.lock());
    assert_eq!(seen.len(), 40);
    assert!(seen.iter().enumerate().all(|(i, (n, _))| *n == i + 1));

    // What is stored is what the chunker makes of each good document.
    let ns = Namespace::default();
    let expected: usize = docs
        .iter()
        .filter(|d| d.id().as_str() != "doc-07.txt")
        .map(|d| small_chunker().chunk(d).unwrap().len())
        .sum();
    assert_eq!(report.chunks_written, expected);
    assert_eq!(store.count(&ns).await.unwrap(), expected);
    let hashes = store
        .document_hashes(
            &ns,
            &[
                DocumentId::new("doc-07.txt").unwrap(),
                DocumentId::new("doc-31.txt").unwrap(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        hashes.len(),
        1,
        "only the good document is stored: {hashes:?}"
    );
    let answer = rag
        .ask(Ask::new("marker31x").mode(SearchMode::Keyword).top_k(1))
        .await
        .unwrap();
    assert_eq!(answer.sources[0].document_id.as_str(), "doc-31.txt");

    // With more than one core, chunking ran off this test's thread.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores > 1 {
        let test_thread = std::thread::current().id();
        assert!(!chunker.threads.lock().contains(&test_thread));
    }
}

/// A store that logs hash lookups and finished upserts, and (when gated)
/// holds each upsert until a given number of hash lookups has been made,
/// or a second has passed. It may ask for several documents per upsert,
/// and reject every upsert that holds a given document.
#[derive(Debug)]
struct LoggingStore {
    inner: MemoryVectorStore,
    log: Mutex<Vec<String>>,
    lookups: tokio::sync::watch::Sender<usize>,
    hold_upserts_until_lookups: usize,
    batch: usize,
    reject: Option<&'static str>,
    /// Every upsert fails as a full disk does.
    broken: bool,
}

impl LoggingStore {
    fn new(hold_upserts_until_lookups: usize) -> Self {
        Self {
            inner: MemoryVectorStore::default(),
            log: Mutex::new(Vec::new()),
            lookups: tokio::sync::watch::channel(0).0,
            hold_upserts_until_lookups,
            batch: 1,
            reject: None,
            broken: false,
        }
    }
    fn log(&self) -> Vec<String> {
        self.log.lock().clone()
    }
}

#[async_trait]
impl VectorStore for LoggingStore {
    fn capabilities(&self) -> Capabilities {
        let mut caps = self.inner.capabilities();
        caps.upsert_batch_documents = self.batch;
        caps
    }
    async fn upsert(&self, ns: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()> {
        let mut docs: Vec<&str> = chunks
            .iter()
            .map(|c| c.chunk.document_id.as_str())
            .collect();
        docs.dedup();
        let doc = docs.join(",");
        if self.broken {
            self.log.lock().push(format!("failed {doc}"));
            return Err(Error::backend(
                "test",
                false,
                "No space left on device (os error 28)",
            ));
        }
        if self.reject.is_some_and(|r| docs.contains(&r)) {
            self.log.lock().push(format!("rejected {doc}"));
            return Err(Error::invalid_input("this store refuses that document"));
        }
        let mut lookups = self.lookups.subscribe();
        let wanted = self.hold_upserts_until_lookups;
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            lookups.wait_for(|n| *n >= wanted),
        )
        .await;
        self.inner.upsert(ns, chunks).await?;
        self.log.lock().push(format!("upserted {doc}"));
        Ok(())
    }
    async fn search(&self, ns: &Namespace, req: SearchRequest) -> Result<Vec<ScoredChunk>> {
        self.inner.search(ns, req).await
    }
    async fn delete_document(&self, ns: &Namespace, id: &DocumentId) -> Result<usize> {
        self.inner.delete_document(ns, id).await
    }
    async fn document_hashes(
        &self,
        ns: &Namespace,
        ids: &[DocumentId],
    ) -> Result<Vec<(DocumentId, String)>> {
        let names: Vec<&str> = ids.iter().map(DocumentId::as_str).collect();
        self.log.lock().push(format!("lookup {}", names.join(",")));
        let found = self.inner.document_hashes(ns, ids).await;
        self.lookups.send_modify(|n| *n += 1);
        found
    }
    async fn get_chunks(&self, ns: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>> {
        self.inner.get_chunks(ns, ids).await
    }
    async fn list_documents(
        &self,
        ns: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<DocumentInfo>> {
        self.inner.list_documents(ns, after, limit).await
    }
    async fn count(&self, ns: &Namespace) -> Result<usize> {
        self.inner.count(ns).await
    }
    async fn delete_namespace(&self, ns: &Namespace) -> Result<()> {
        self.inner.delete_namespace(ns).await
    }
    async fn health(&self) -> Result<()> {
        Ok(())
    }
}

fn windowed(store: Arc<LoggingStore>, window: usize) -> Rag {
    Rag::builder()
        .store_arc(store)
        .llm(ScriptedLlm::new())
        .embedder(HashEmbedder::new(64))
        .chunker(small_chunker())
        .config(RagConfig::default().with_ingest_window(window))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_next_round_is_prepared_while_the_previous_one_is_written() {
    // Rounds of two: [a, b] then [c, d]. Round one's upserts are held until
    // round two's hash lookup has happened, which only an overlapped
    // pipeline does (a sequential one would log the upserts first, after
    // the one-second hold).
    let store = Arc::new(LoggingStore::new(2));
    let rag = windowed(store.clone(), 2);
    let docs: Vec<Document> = ["a", "b", "c", "d"]
        .iter()
        .map(|id| Document::new(*id, format!("Document {id} says something about {id}.")))
        .collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let progress = seen.clone();
    let report = rag
        .ingest_stream(
            futures::stream::iter(docs),
            IngestOptions::default().with_progress(move |p| {
                progress
                    .lock()
                    .push((p.processed, p.document_id.as_str().to_owned()))
            }),
        )
        .await;
    assert_eq!(report.added.len(), 4, "{:?}", report.failed.first());
    let log = store.log();
    let at = |entry: &str| log.iter().position(|e| e == entry).expect(entry);
    assert!(at("lookup c,d") < at("upserted a"), "{log:?}");
    assert!(at("lookup c,d") < at("upserted b"), "{log:?}");
    // Outcomes still come round by round, counted one by one.
    let seen = std::mem::take(&mut *seen.lock());
    let order: Vec<usize> = seen.iter().map(|(n, _)| *n).collect();
    assert_eq!(order, [1, 2, 3, 4]);
    let mut first: Vec<&str> = seen[..2].iter().map(|(_, id)| id.as_str()).collect();
    first.sort_unstable();
    assert_eq!(first, ["a", "b"]);
    assert_eq!(store.count(&Namespace::default()).await.unwrap(), 4);
}

#[tokio::test]
async fn a_document_in_consecutive_rounds_is_looked_up_after_its_first_write() {
    // [a v1, b] then [a v2]: a v2's lookup must see a v1 stored, so a v2
    // replaces it (never "added" twice, never left with v1's chunks).
    let store = Arc::new(LoggingStore::new(0));
    let rag = windowed(store.clone(), 8);
    let v2 = Document::new("a", "The second version talks about zeppelins.");
    let docs = vec![
        Document::new("a", "The first version talks about submarines."),
        Document::new("b", "Another document about bicycles."),
        v2.clone(),
    ];
    let report = rag.ingest_many(docs).await;
    assert!(report.is_success(), "{:?}", report.failed.first());
    assert_eq!(report.added.len(), 2);
    assert_eq!(report.replaced.len(), 1);
    assert_eq!(report.replaced[0].as_str(), "a");
    let log = store.log();
    let at = |entry: &str| log.iter().position(|e| e == entry).expect(entry);
    assert!(at("upserted a") < at("lookup a"), "{log:?}");
    let ns = Namespace::default();
    let id = DocumentId::new("a").unwrap();
    let hashes = store.document_hashes(&ns, &[id]).await.unwrap();
    assert_eq!(hashes[0].1, v2.content_hash());
    let answer = rag
        .ask(Ask::new("submarines").mode(SearchMode::Keyword).top_k(3))
        .await
        .unwrap();
    assert!(
        answer.sources.iter().all(|s| s.document_id.as_str() != "a"),
        "a v1's chunks are gone: {:?}",
        answer.sources
    );
}

#[tokio::test]
async fn a_failing_store_is_not_tried_document_by_document_for_ever() {
    let store = Arc::new(LoggingStore {
        batch: 8,
        broken: true,
        ..LoggingStore::new(0)
    });
    let rag = windowed(store.clone(), 16);
    let docs: Vec<Document> = (0..8)
        .map(|i| Document::new(format!("d{i}"), format!("Document {i} is about topic{i}.")))
        .collect();
    let report = rag.ingest_many(docs).await;
    assert!(report.added.is_empty());
    assert_eq!(report.failed.len(), 8, "every document is reported failed");
    for f in &report.failed {
        assert!(f.error.to_string().contains("No space"), "{}", f.error);
    }
    let mut log = store.log();
    log.retain(|e| !e.starts_with("lookup"));
    // The group, then three documents alone; the other five are not tried.
    assert_eq!(
        log,
        [
            "failed d0,d1,d2,d3,d4,d5,d6,d7",
            "failed d0",
            "failed d1",
            "failed d2"
        ]
    );
}

#[tokio::test]
async fn a_store_that_asks_for_batches_gets_them_and_a_bad_document_still_fails_alone() {
    let store = Arc::new(LoggingStore {
        batch: 3,
        reject: Some("d4"),
        ..LoggingStore::new(0)
    });
    let rag = windowed(store.clone(), 16);
    let docs: Vec<Document> = (0..7)
        .map(|i| Document::new(format!("d{i}"), format!("Document {i} is about topic{i}.")))
        .collect();
    let report = rag.ingest_many(docs).await;
    assert_eq!(report.added.len(), 6, "{:?}", report.failed);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].document_id.as_str(), "d4");
    assert!(report.failed[0].error.to_string().contains("refuses"));
    let mut log = store.log();
    log.retain(|e| !e.starts_with("lookup"));
    log.sort();
    // Groups of three in document order; the group holding d4 is retried
    // one document at a time.
    assert_eq!(
        log,
        [
            "rejected d3,d4,d5",
            "rejected d4",
            "upserted d0,d1,d2",
            "upserted d3",
            "upserted d5",
            "upserted d6",
        ]
    );
    let ns = Namespace::default();
    assert_eq!(store.count(&ns).await.unwrap(), 6);
    let ids = [DocumentId::new("d4").unwrap()];
    assert!(store.document_hashes(&ns, &ids).await.unwrap().is_empty());
}
