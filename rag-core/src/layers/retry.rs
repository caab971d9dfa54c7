//! [`Retry`]: repeats calls that failed with a transient error.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::chat::{ChatRequest, ChatResponse, Message};
use crate::error::{Error, Result};
use crate::search::{Capabilities, ScoredChunk, SearchRequest};
use crate::session::{NewSession, Session, SessionId, StoredMessage};
use crate::traits::{
    ChatStream, DocumentInfo, Embedder, LlmClient, Reranker, SessionStore, VectorStore,
};
use crate::types::{Chunk, ChunkId, DocumentId, EmbeddedChunk, Namespace};

use super::{Layer, open_first};

/// When and how often [`Retry`] repeats a call.
///
/// The delay before retry `n` (from 1) is drawn uniformly from
/// `[0, min(max_delay, initial_delay * multiplier^(n-1))]` ("full jitter",
/// which spreads a crowd of clients better than a fixed or additive jitter),
/// and is at least the error's [`Error::retry_after`]. The loop stops after
/// `max_attempts` calls, or as soon as the next wait would end past
/// `max_elapsed` since the first call: then there is no point in waiting.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Calls in total, the first included; 4 by default. 1 disables retries.
    pub max_attempts: u32,
    /// Upper bound of the first delay; 200 ms by default.
    pub initial_delay: Duration,
    /// Upper bound of any computed delay; 30 s by default (a longer
    /// `retry_after` is still honoured).
    pub max_delay: Duration,
    /// Growth of the delay bound per attempt; 2 by default.
    pub multiplier: f64,
    /// Time budget of the whole loop, calls and waits together; 60 s by
    /// default, `None` for no limit.
    pub max_elapsed: Option<Duration>,
    /// Full jitter (true, the default) or the exact exponential bound
    /// (for reproducible tests).
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            max_elapsed: Some(Duration::from_secs(60)),
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// The default policy.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the total number of calls (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    /// Sets the first delay bound.
    pub fn initial_delay(mut self, d: Duration) -> Self {
        self.initial_delay = d;
        self
    }
    /// Sets the largest computed delay.
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }
    /// Sets the growth factor (at least 1).
    pub fn multiplier(mut self, m: f64) -> Self {
        self.multiplier = if m.is_finite() { m.max(1.0) } else { 2.0 };
        self
    }
    /// Sets the time budget of the whole loop.
    pub fn max_elapsed(mut self, d: Option<Duration>) -> Self {
        self.max_elapsed = d;
        self
    }
    /// Turns full jitter on or off.
    pub fn jitter(mut self, on: bool) -> Self {
        self.jitter = on;
        self
    }

    /// The delay bound before retry `retry` (from 1), without jitter.
    pub fn backoff_bound(&self, retry: u32) -> Duration {
        let factor = self.multiplier.powi(retry.saturating_sub(1).min(64) as i32);
        let secs = self.initial_delay.as_secs_f64() * factor;
        if secs.is_finite() && secs < self.max_delay.as_secs_f64() {
            Duration::from_secs_f64(secs)
        } else {
            self.max_delay
        }
    }

    fn delay(&self, retry: u32, error: &Error) -> Duration {
        let bound = self.backoff_bound(retry);
        let backoff = if self.jitter {
            bound.mul_f64(fastrand::f64())
        } else {
            bound
        };
        backoff.max(error.retry_after().unwrap_or_default())
    }

    /// Runs `call` until it succeeds, fails permanently, or the policy is
    /// used up (then `Error::RetriesExhausted`). Usable on its own for code
    /// that is not one of the traits.
    pub async fn run<T, F, Fut>(&self, op: &'static str, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let error = match call().await {
                Ok(v) => return Ok(v),
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => e,
            };
            let exhausted = |error: Error| Error::RetriesExhausted {
                attempts: attempt,
                last: Box::new(error),
            };
            if attempt >= self.max_attempts {
                return Err(exhausted(error));
            }
            let delay = self.delay(attempt, &error);
            if let Some(budget) = self.max_elapsed
                && started.elapsed() + delay > budget
            {
                return Err(exhausted(error));
            }
            tracing::debug!(
                op,
                attempt,
                delay_ms = delay.as_millis() as u64,
                error = error.kind(),
                "retrying"
            );
            metrics::counter!("rag_retries_total", "op" => op, "kind" => error.kind()).increment(1);
            tokio::time::sleep(delay).await;
        }
    }
}

/// Repeats calls that failed with a transient error
/// ([`Error::is_retryable`]), per a [`RetryPolicy`].
///
/// Every method of every wrapped trait is retried — `embed` and
/// `embed_query` alike. A permanent error comes back at once; when the
/// policy is used up the error is `Error::RetriesExhausted { attempts, last }`.
///
/// * `stream` is retried until it yields its first item: an error before the
///   first delta re-opens the stream, an error after it is passed through
///   (the caller has already shown text).
/// * `VectorStore::upsert` and `Reranker::rerank` take their input by
///   value, so the input is cloned per attempt.
/// * `SessionStore`: only reads (`get`, `history`, `list`) and `expire` are
///   retried. `create`, `append` and `delete` are not idempotent (a timed-out
///   append may have landed) and run once.
///
/// ```
/// # #[cfg(feature = "testkit")] {
/// use rag_core::layers::{Retry, RetryPolicy};
/// use rag_core::testkit::ScriptedLlm;
/// use rag_core::{ChatRequest, Error, LlmClient, Message};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let llm = Retry::new(
///     ScriptedLlm::new().then_fail(Error::RateLimited { retry_after: None }),
///     RetryPolicy::default(),
/// );
/// let answer = llm.complete(ChatRequest::new(vec![Message::user("hi")])).await?;
/// assert_eq!(llm.get_ref().requests().len(), 2);
/// # Ok::<(), Error>(()) }).unwrap();
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S> Retry<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }
    /// The wrapped value.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// Unwraps.
    pub fn into_inner(self) -> S {
        self.inner
    }
    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }
}

/// Builds [`Retry`] wrappers with one policy.
#[derive(Clone, Debug, Default)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// A layer with this policy.
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;
    fn layer(&self, inner: S) -> Retry<S> {
        Retry::new(inner, self.policy.clone())
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: Embedder> Embedder for Retry<S> {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.policy
            .run("embedder.embed", || self.inner.embed(texts))
            .await
    }
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        self.policy
            .run("embedder.embed_query", || self.inner.embed_query(query))
            .await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: LlmClient> LlmClient for Retry<S> {
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
        self.policy
            .run("llm.complete", || self.inner.complete(request.clone()))
            .await
    }
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        self.policy
            .run("llm.stream", || {
                open_first(self.inner.stream(request.clone()))
            })
            .await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: VectorStore> VectorStore for Retry<S> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn upsert(&self, ns: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()> {
        self.policy
            .run("store.upsert", || self.inner.upsert(ns, chunks))
            .await
    }
    async fn search(&self, ns: &Namespace, req: SearchRequest) -> Result<Vec<ScoredChunk>> {
        self.policy
            .run("store.search", || self.inner.search(ns, req.clone()))
            .await
    }
    async fn delete_document(&self, ns: &Namespace, id: &DocumentId) -> Result<usize> {
        self.policy
            .run("store.delete_document", || {
                self.inner.delete_document(ns, id)
            })
            .await
    }
    async fn document_hashes(
        &self,
        ns: &Namespace,
        ids: &[DocumentId],
    ) -> Result<Vec<(DocumentId, String)>> {
        self.policy
            .run("store.document_hashes", || {
                self.inner.document_hashes(ns, ids)
            })
            .await
    }
    async fn get_chunks(&self, ns: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>> {
        self.policy
            .run("store.get_chunks", || self.inner.get_chunks(ns, ids))
            .await
    }
    async fn scan(
        &self,
        ns: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<EmbeddedChunk>> {
        self.policy
            .run("store.scan", || self.inner.scan(ns, after, limit))
            .await
    }
    async fn list_documents(
        &self,
        ns: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<DocumentInfo>> {
        self.policy
            .run("store.list_documents", || {
                self.inner.list_documents(ns, after, limit)
            })
            .await
    }
    async fn count(&self, ns: &Namespace) -> Result<usize> {
        self.policy
            .run("store.count", || self.inner.count(ns))
            .await
    }
    async fn delete_namespace(&self, ns: &Namespace) -> Result<()> {
        self.policy
            .run("store.delete_namespace", || self.inner.delete_namespace(ns))
            .await
    }
    async fn health(&self) -> Result<()> {
        self.policy
            .run("store.health", || self.inner.health())
            .await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: Reranker> Reranker for Retry<S> {
    async fn rerank(
        &self,
        query: &str,
        candidates: Vec<ScoredChunk>,
        top_n: usize,
    ) -> Result<Vec<ScoredChunk>> {
        self.policy
            .run("reranker.rerank", || {
                self.inner.rerank(query, candidates.clone(), top_n)
            })
            .await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: SessionStore> SessionStore for Retry<S> {
    async fn create(&self, new: NewSession) -> Result<Session> {
        self.inner.create(new).await
    }
    async fn get(&self, id: SessionId) -> Result<Session> {
        self.policy.run("sessions.get", || self.inner.get(id)).await
    }
    async fn append(&self, id: SessionId, messages: Vec<Message>) -> Result<()> {
        self.inner.append(id, messages).await
    }
    async fn history(&self, id: SessionId, window: usize) -> Result<Vec<StoredMessage>> {
        self.policy
            .run("sessions.history", || self.inner.history(id, window))
            .await
    }
    async fn list(&self, ns: &Namespace, limit: usize) -> Result<Vec<Session>> {
        self.policy
            .run("sessions.list", || self.inner.list(ns, limit))
            .await
    }
    async fn delete(&self, id: SessionId) -> Result<()> {
        self.inner.delete(id).await
    }
    async fn expire(&self) -> Result<usize> {
        self.policy
            .run("sessions.expire", || self.inner.expire())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_bound_grows_and_caps() {
        let p = RetryPolicy::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1));
        assert_eq!(p.backoff_bound(1), Duration::from_millis(100));
        assert_eq!(p.backoff_bound(2), Duration::from_millis(200));
        assert_eq!(p.backoff_bound(4), Duration::from_millis(800));
        assert_eq!(p.backoff_bound(5), Duration::from_secs(1));
        assert_eq!(p.backoff_bound(500), Duration::from_secs(1));
    }

    #[test]
    fn jittered_delay_is_within_bound_and_honours_retry_after() {
        let p = RetryPolicy::default();
        let plain = Error::backend("x", true, "reset");
        for retry in 1..6 {
            assert!(p.delay(retry, &plain) <= p.backoff_bound(retry));
        }
        let slow = Error::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
        };
        assert!(p.delay(1, &slow) >= Duration::from_secs(7));
    }
}
