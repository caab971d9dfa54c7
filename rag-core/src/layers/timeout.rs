//! [`Timeout`]: a deadline per call.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use crate::chat::{ChatRequest, ChatResponse, Message};
use crate::error::{Error, Result};
use crate::search::{Capabilities, ScoredChunk, SearchRequest};
use crate::session::{NewSession, Session, SessionId, StoredMessage};
use crate::traits::{
    ChatStream, DocumentInfo, Embedder, LlmClient, Reranker, SessionStore, VectorStore,
};
use crate::types::{Chunk, ChunkId, DocumentId, EmbeddedChunk, Namespace};

use super::Layer;

/// Fails a call that takes longer than its deadline with the retryable
/// `Error::Timeout { operation, elapsed }`; the call's future is dropped,
/// which cancels it.
///
/// For `LlmClient::stream` the deadline applies to opening the stream and
/// then to each gap between items (an idle timeout), so a long answer that
/// keeps streaming is never cut while a stalled one is; set a different gap
/// with [`Timeout::with_stream_idle`]. The time on tokio's clock is used, so
/// tests with a paused clock are deterministic.
///
/// ```
/// # #[cfg(feature = "testkit")] {
/// use std::time::Duration;
/// use rag_core::layers::Timeout;
/// use rag_core::testkit::{ScriptedLlm, Step};
/// use rag_core::{ChatRequest, Error, LlmClient, Message};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let slow = ScriptedLlm::new().then(Step::Delay(Duration::from_secs(60), Box::new(Step::Reply("late".into()))));
/// let llm = Timeout::new(slow, Duration::from_secs(10));
/// let err = llm.complete(ChatRequest::new(vec![Message::user("hi")])).await.unwrap_err();
/// assert!(matches!(err, Error::Timeout { .. }));
/// # });
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    timeout: Duration,
    stream_idle: Duration,
}

impl<S> Timeout<S> {
    /// Wraps `inner` with a deadline of `timeout` per call.
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stream_idle: timeout,
        }
    }
    /// Sets the longest gap between two stream items (the call timeout
    /// unless set).
    pub fn with_stream_idle(mut self, idle: Duration) -> Self {
        self.stream_idle = idle;
        self
    }
    /// The wrapped value.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// Unwraps.
    pub fn into_inner(self) -> S {
        self.inner
    }
    /// The deadline per call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn run<T>(&self, op: &str, call: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                operation: op.to_owned(),
                elapsed: self.timeout,
            }),
        }
    }
}

/// Builds [`Timeout`] wrappers with one deadline.
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// A layer with this deadline per call.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout::new(inner, self.timeout)
    }
}

/// Ends a stream with `Error::Timeout` when no item arrives within `idle`.
fn idle_bounded(stream: ChatStream, idle: Duration) -> ChatStream {
    futures::stream::unfold(Some(stream), move |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(item)) => Some((item, Some(stream))),
            Ok(None) => None,
            Err(_) => Some((
                Err(Error::Timeout {
                    operation: "llm.stream (waiting for the next delta)".into(),
                    elapsed: idle,
                }),
                None,
            )),
        }
    })
    .boxed()
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: Embedder> Embedder for Timeout<S> {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.run("embedder.embed", self.inner.embed(texts)).await
    }
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        self.run("embedder.embed_query", self.inner.embed_query(query))
            .await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: LlmClient> LlmClient for Timeout<S> {
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
        self.run("llm.complete", self.inner.complete(request)).await
    }
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        let stream = self.run("llm.stream", self.inner.stream(request)).await?;
        Ok(idle_bounded(stream, self.stream_idle))
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: VectorStore> VectorStore for Timeout<S> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn upsert(&self, ns: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()> {
        self.run("store.upsert", self.inner.upsert(ns, chunks))
            .await
    }
    async fn search(&self, ns: &Namespace, req: SearchRequest) -> Result<Vec<ScoredChunk>> {
        self.run("store.search", self.inner.search(ns, req)).await
    }
    async fn delete_document(&self, ns: &Namespace, id: &DocumentId) -> Result<usize> {
        self.run("store.delete_document", self.inner.delete_document(ns, id))
            .await
    }
    async fn document_hashes(
        &self,
        ns: &Namespace,
        ids: &[DocumentId],
    ) -> Result<Vec<(DocumentId, String)>> {
        self.run("store.document_hashes", self.inner.document_hashes(ns, ids))
            .await
    }
    async fn get_chunks(&self, ns: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>> {
        self.run("store.get_chunks", self.inner.get_chunks(ns, ids))
            .await
    }
    async fn scan(
        &self,
        ns: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<EmbeddedChunk>> {
        self.run("store.scan", self.inner.scan(ns, after, limit))
            .await
    }
    async fn list_documents(
        &self,
        ns: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<DocumentInfo>> {
        self.run(
            "store.list_documents",
            self.inner.list_documents(ns, after, limit),
        )
        .await
    }
    async fn count(&self, ns: &Namespace) -> Result<usize> {
        self.run("store.count", self.inner.count(ns)).await
    }
    async fn delete_namespace(&self, ns: &Namespace) -> Result<()> {
        self.run("store.delete_namespace", self.inner.delete_namespace(ns))
            .await
    }
    async fn health(&self) -> Result<()> {
        self.run("store.health", self.inner.health()).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: Reranker> Reranker for Timeout<S> {
    async fn rerank(
        &self,
        query: &str,
        candidates: Vec<ScoredChunk>,
        top_n: usize,
    ) -> Result<Vec<ScoredChunk>> {
        self.run(
            "reranker.rerank",
            self.inner.rerank(query, candidates, top_n),
        )
        .await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: SessionStore> SessionStore for Timeout<S> {
    async fn create(&self, new: NewSession) -> Result<Session> {
        self.run("sessions.create", self.inner.create(new)).await
    }
    async fn get(&self, id: SessionId) -> Result<Session> {
        self.run("sessions.get", self.inner.get(id)).await
    }
    async fn append(&self, id: SessionId, messages: Vec<Message>) -> Result<()> {
        self.run("sessions.append", self.inner.append(id, messages))
            .await
    }
    async fn history(&self, id: SessionId, window: usize) -> Result<Vec<StoredMessage>> {
        self.run("sessions.history", self.inner.history(id, window))
            .await
    }
    async fn list(&self, ns: &Namespace, limit: usize) -> Result<Vec<Session>> {
        self.run("sessions.list", self.inner.list(ns, limit)).await
    }
    async fn delete(&self, id: SessionId) -> Result<()> {
        self.run("sessions.delete", self.inner.delete(id)).await
    }
    async fn expire(&self) -> Result<usize> {
        self.run("sessions.expire", self.inner.expire()).await
    }
}
