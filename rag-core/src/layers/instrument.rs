//! [`Instrumented`]: tracing spans and metrics for every trait call.

use std::future::Future;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::time::Instant;
use tracing::{Instrument, Span, field};

use crate::chat::{ChatDelta, ChatRequest, ChatResponse, Message, Usage};
use crate::error::Result;
use crate::search::{Capabilities, ScoredChunk, SearchRequest};
use crate::session::{NewSession, Session, SessionId, StoredMessage};
use crate::traits::{
    ChatStream, DocumentInfo, Embedder, LlmClient, Reranker, SessionStore, VectorStore,
};
use crate::types::{Chunk, ChunkId, DocumentId, EmbeddedChunk, Namespace};

use super::Layer;

/// Emits a tracing span and metrics for every call of the wrapped trait.
///
/// Spans are named `rag.<component>.<op>` (`rag.llm.complete`,
/// `rag.store.search`, …) and carry the model or backend, the namespace,
/// counts (texts, messages, chunks, `top_k`), token usage, and on failure
/// the error kind. Metrics (see the [module docs](super#metrics)):
/// `rag_call_duration_seconds`, `rag_calls_total`, `rag_errors_total`
/// by kind, `rag_llm_tokens_total`, `rag_embedded_texts_total`.
///
/// Never recorded: questions, prompts, answers, document text, vectors,
/// filters' values, credentials. Namespaces appear in spans (they are
/// tenant ids) but never as metric labels (unbounded cardinality).
#[derive(Clone, Debug)]
pub struct Instrumented<S> {
    inner: S,
}

impl<S> Instrumented<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
    /// The wrapped value.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// Unwraps.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Builds [`Instrumented`] wrappers.
#[derive(Clone, Copy, Debug, Default)]
pub struct InstrumentedLayer;

impl<S> Layer<S> for InstrumentedLayer {
    type Service = Instrumented<S>;
    fn layer(&self, inner: S) -> Instrumented<S> {
        Instrumented::new(inner)
    }
}

/// Runs `call` in `span`, recording its duration and outcome.
async fn observe<T>(
    component: &'static str,
    op: &'static str,
    model: String,
    span: Span,
    call: impl Future<Output = Result<T>>,
) -> Result<T> {
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    let secs = started.elapsed().as_secs_f64();
    metrics::histogram!("rag_call_duration_seconds", "component" => component, "op" => op, "model" => model.clone())
        .record(secs);
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => {
            span.record("error", e.kind());
            metrics::counter!("rag_errors_total", "component" => component, "op" => op, "model" => model.clone(), "kind" => e.kind())
                .increment(1);
            "error"
        }
    };
    metrics::counter!("rag_calls_total", "component" => component, "op" => op, "model" => model, "outcome" => outcome)
        .increment(1);
    result
}

fn record_usage(span: &Span, model: &str, usage: &Usage) {
    span.record("prompt_tokens", usage.prompt_tokens);
    span.record("completion_tokens", usage.completion_tokens);
    metrics::counter!("rag_llm_tokens_total", "model" => model.to_owned(), "type" => "prompt")
        .increment(u64::from(usage.prompt_tokens));
    metrics::counter!("rag_llm_tokens_total", "model" => model.to_owned(), "type" => "completion")
        .increment(u64::from(usage.completion_tokens));
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: Embedder> Embedder for Instrumented<S> {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let model = self.inner.model_id().to_owned();
        let span = tracing::info_span!("rag.embedder.embed", model = %model, texts = texts.len(), error = field::Empty);
        metrics::counter!("rag_embedded_texts_total", "model" => model.clone())
            .increment(texts.len() as u64);
        observe("embedder", "embed", model, span, self.inner.embed(texts)).await
    }
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        let model = self.inner.model_id().to_owned();
        let span =
            tracing::info_span!("rag.embedder.embed_query", model = %model, error = field::Empty);
        metrics::counter!("rag_embedded_texts_total", "model" => model.clone()).increment(1);
        observe(
            "embedder",
            "embed_query",
            model,
            span,
            self.inner.embed_query(query),
        )
        .await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: LlmClient> LlmClient for Instrumented<S> {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn context_window(&self) -> usize {
        self.inner.context_window()
    }
    fn model_free(&self) -> bool {
        self.inner.model_free()
    }
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse> {
        let model = self.inner.model_id().to_owned();
        let span = tracing::info_span!(
            "rag.llm.complete",
            model = %model,
            messages = request.messages.len(),
            max_tokens = request.max_tokens,
            answered_by = field::Empty,
            prompt_tokens = field::Empty,
            completion_tokens = field::Empty,
            error = field::Empty,
        );
        let response = observe(
            "llm",
            "complete",
            model,
            span.clone(),
            self.inner.complete(request),
        )
        .await?;
        span.record("answered_by", response.model.as_str());
        record_usage(&span, &response.model, &response.usage);
        Ok(response)
    }
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        let model = self.inner.model_id().to_owned();
        let span = tracing::info_span!(
            "rag.llm.stream",
            model = %model,
            messages = request.messages.len(),
            max_tokens = request.max_tokens,
            answered_by = field::Empty,
            prompt_tokens = field::Empty,
            completion_tokens = field::Empty,
            error = field::Empty,
        );
        let started = Instant::now();
        let stream = observe(
            "llm",
            "stream",
            model.clone(),
            span.clone(),
            self.inner.stream(request),
        )
        .await?;
        Ok(stream
            .inspect(move |item| match item {
                Ok(ChatDelta::Finish {
                    usage, model: by, ..
                }) => {
                    span.record("answered_by", by.as_str());
                    record_usage(&span, by, usage);
                    metrics::histogram!("rag_call_duration_seconds", "component" => "llm", "op" => "stream_complete", "model" => model.clone())
                        .record(started.elapsed().as_secs_f64());
                }
                Err(e) => {
                    span.record("error", e.kind());
                    metrics::counter!("rag_errors_total", "component" => "llm", "op" => "stream_item", "model" => model.clone(), "kind" => e.kind())
                        .increment(1);
                }
                Ok(ChatDelta::Text(_)) => {}
            })
            .boxed())
    }
}

macro_rules! store_call {
    ($self:ident, $op:literal, $ns:expr, $call:expr $(, $($fields:tt)+)?) => {{
        let backend = $self.inner.capabilities().backend;
        let span = tracing::info_span!(concat!("rag.store.", $op), backend = %backend, namespace = %$ns, $($($fields)+,)? error = field::Empty);
        observe("store", $op, backend, span, $call).await
    }};
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: VectorStore> VectorStore for Instrumented<S> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn upsert(&self, ns: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()> {
        let n = chunks.len();
        store_call!(
            self,
            "upsert",
            ns,
            self.inner.upsert(ns, chunks),
            chunks = n
        )
    }
    async fn search(&self, ns: &Namespace, req: SearchRequest) -> Result<Vec<ScoredChunk>> {
        let (top_k, mode, filtered) = (req.top_k, req.mode, req.filter.is_some());
        store_call!(
            self,
            "search",
            ns,
            self.inner.search(ns, req),
            top_k = top_k,
            mode = ?mode,
            filtered = filtered
        )
    }
    async fn delete_document(&self, ns: &Namespace, id: &DocumentId) -> Result<usize> {
        store_call!(
            self,
            "delete_document",
            ns,
            self.inner.delete_document(ns, id)
        )
    }
    async fn document_hashes(
        &self,
        ns: &Namespace,
        ids: &[DocumentId],
    ) -> Result<Vec<(DocumentId, String)>> {
        store_call!(
            self,
            "document_hashes",
            ns,
            self.inner.document_hashes(ns, ids),
            ids = ids.len()
        )
    }
    async fn get_chunks(&self, ns: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>> {
        store_call!(
            self,
            "get_chunks",
            ns,
            self.inner.get_chunks(ns, ids),
            ids = ids.len()
        )
    }
    async fn scan(
        &self,
        ns: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<EmbeddedChunk>> {
        store_call!(
            self,
            "scan",
            ns,
            self.inner.scan(ns, after, limit),
            limit = limit
        )
    }
    async fn list_documents(
        &self,
        ns: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<DocumentInfo>> {
        store_call!(
            self,
            "list_documents",
            ns,
            self.inner.list_documents(ns, after, limit),
            limit = limit
        )
    }
    async fn count(&self, ns: &Namespace) -> Result<usize> {
        store_call!(self, "count", ns, self.inner.count(ns))
    }
    async fn delete_namespace(&self, ns: &Namespace) -> Result<()> {
        store_call!(
            self,
            "delete_namespace",
            ns,
            self.inner.delete_namespace(ns)
        )
    }
    async fn health(&self) -> Result<()> {
        let backend = self.inner.capabilities().backend;
        let span =
            tracing::info_span!("rag.store.health", backend = %backend, error = field::Empty);
        observe("store", "health", backend, span, self.inner.health()).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: Reranker> Reranker for Instrumented<S> {
    async fn rerank(
        &self,
        query: &str,
        candidates: Vec<ScoredChunk>,
        top_n: usize,
    ) -> Result<Vec<ScoredChunk>> {
        let span = tracing::info_span!(
            "rag.reranker.rerank",
            candidates = candidates.len(),
            top_n,
            error = field::Empty
        );
        observe(
            "reranker",
            "rerank",
            "reranker".to_owned(),
            span,
            self.inner.rerank(query, candidates, top_n),
        )
        .await
    }
}

macro_rules! session_call {
    ($op:literal, $call:expr $(, $($fields:tt)+)?) => {{
        let span = tracing::info_span!(concat!("rag.sessions.", $op), $($($fields)+,)? error = field::Empty);
        observe("sessions", $op, "sessions".to_owned(), span, $call).await
    }};
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: SessionStore> SessionStore for Instrumented<S> {
    async fn create(&self, new: NewSession) -> Result<Session> {
        let ns = new.namespace.clone();
        session_call!("create", self.inner.create(new), namespace = %ns)
    }
    async fn get(&self, id: SessionId) -> Result<Session> {
        session_call!("get", self.inner.get(id), session = %id)
    }
    async fn append(&self, id: SessionId, messages: Vec<Message>) -> Result<()> {
        let n = messages.len();
        session_call!(
            "append",
            self.inner.append(id, messages),
            session = %id,
            messages = n
        )
    }
    async fn history(&self, id: SessionId, window: usize) -> Result<Vec<StoredMessage>> {
        session_call!(
            "history",
            self.inner.history(id, window),
            session = %id,
            window = window
        )
    }
    async fn list(&self, ns: &Namespace, limit: usize) -> Result<Vec<Session>> {
        session_call!("list", self.inner.list(ns, limit), namespace = %ns, limit = limit)
    }
    async fn delete(&self, id: SessionId) -> Result<()> {
        session_call!("delete", self.inner.delete(id), session = %id)
    }
    async fn expire(&self) -> Result<usize> {
        session_call!("expire", self.inner.expire())
    }
}
