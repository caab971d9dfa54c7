//! [`CircuitBreaker`]: fail fast while a backend is down.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::chat::{ChatRequest, ChatResponse};
use crate::error::{Error, Result};
use crate::search::{Capabilities, ScoredChunk, SearchRequest};
use crate::traits::{ChatStream, DocumentInfo, Embedder, LlmClient, Reranker, VectorStore};
use crate::types::{Chunk, ChunkId, DocumentId, EmbeddedChunk, Namespace};

use super::{Layer, open_first};

/// The state of a [`CircuitBreaker`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls fail fast with `Error::CircuitOpen` until the cool-down ends.
    Open,
    /// The cool-down ended: a few probe calls go through; a success closes
    /// the breaker, a failure opens it again.
    HalfOpen,
}

impl BreakerState {
    /// The value of the `rag_circuit_breaker_state` gauge: 0 closed,
    /// 1 half-open, 2 open.
    pub fn gauge_value(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

/// Settings of a [`CircuitBreaker`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// The breaker's name, in errors, logs and the metrics label.
    pub name: String,
    /// Failures within `window` that open the breaker; 5 by default.
    pub failure_threshold: u32,
    /// The sliding window failures are counted in; 60 s by default.
    pub window: Duration,
    /// How long the breaker stays open before probing; 30 s by default.
    pub cool_down: Duration,
    /// Probe calls let through at once when half-open; 1 by default.
    pub half_open_probes: u32,
    /// Which errors count as failures; [`Error::is_retryable`] by default,
    /// so bad input or a missing document never opens the breaker.
    pub counts_as_failure: fn(&Error) -> bool,
}

impl BreakerConfig {
    /// Defaults, with this name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            failure_threshold: 5,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(30),
            half_open_probes: 1,
            counts_as_failure: Error::is_retryable,
        }
    }
    /// Sets the failures that open the breaker (at least 1).
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n.max(1);
        self
    }
    /// Sets the counting window.
    pub fn window(mut self, d: Duration) -> Self {
        self.window = d;
        self
    }
    /// Sets the cool-down.
    pub fn cool_down(mut self, d: Duration) -> Self {
        self.cool_down = d;
        self
    }
    /// Sets the concurrent probes when half-open (at least 1).
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.half_open_probes = n.max(1);
        self
    }
    /// Sets which errors count as failures.
    pub fn counts_as_failure(mut self, f: fn(&Error) -> bool) -> Self {
        self.counts_as_failure = f;
        self
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self::new("default")
    }
}

#[derive(Debug)]
enum St {
    Closed { failures: VecDeque<Instant> },
    Open { until: Instant },
    HalfOpen { in_flight: u32 },
}

#[derive(Debug)]
struct Core {
    cfg: BreakerConfig,
    state: Mutex<St>,
}

impl Core {
    fn set(&self, st: &mut St, new: St) {
        *st = new;
        let state = public(st);
        metrics::gauge!("rag_circuit_breaker_state", "breaker" => self.cfg.name.clone())
            .set(state.gauge_value());
        match state {
            BreakerState::Open => {
                tracing::warn!(breaker = %self.cfg.name, cool_down_ms = self.cfg.cool_down.as_millis() as u64, "circuit breaker opened")
            }
            BreakerState::HalfOpen => {
                tracing::info!(breaker = %self.cfg.name, "circuit breaker half-open")
            }
            BreakerState::Closed => {
                tracing::info!(breaker = %self.cfg.name, "circuit breaker closed")
            }
        }
    }

    /// Moves an expired `Open` to `HalfOpen`.
    fn refresh(&self, st: &mut St, now: Instant) {
        if let St::Open { until } = *st
            && now >= until
        {
            self.set(st, St::HalfOpen { in_flight: 0 });
        }
    }

    fn acquire(&self) -> Result<Permit<'_>> {
        let now = Instant::now();
        let mut st = self.state.lock();
        self.refresh(&mut st, now);
        match &mut *st {
            St::Closed { .. } => Ok(Permit {
                core: self,
                probe: false,
                done: false,
            }),
            St::HalfOpen { in_flight } if *in_flight < self.cfg.half_open_probes => {
                *in_flight += 1;
                Ok(Permit {
                    core: self,
                    probe: true,
                    done: false,
                })
            }
            St::HalfOpen { .. } => {
                Err(self.open_error(self.cfg.cool_down.min(Duration::from_secs(1))))
            }
            St::Open { until } => Err(self.open_error(until.saturating_duration_since(now))),
        }
    }

    fn open_error(&self, retry_after: Duration) -> Error {
        Error::CircuitOpen {
            breaker: self.cfg.name.clone(),
            retry_after,
        }
    }

    fn record(&self, probe: bool, error: Option<&Error>) {
        let now = Instant::now();
        let mut st = self.state.lock();
        let failed = error.is_some_and(|e| (self.cfg.counts_as_failure)(e));
        match (&mut *st, failed) {
            (St::HalfOpen { .. }, false) if probe && error.is_none() => {
                self.set(
                    &mut st,
                    St::Closed {
                        failures: VecDeque::new(),
                    },
                );
            }
            (St::HalfOpen { in_flight }, false) if probe => {
                *in_flight = in_flight.saturating_sub(1);
            }
            (St::HalfOpen { .. }, true) if probe => {
                let until = now + self.cfg.cool_down;
                self.set(&mut st, St::Open { until });
            }
            (St::Closed { failures }, true) => {
                failures.push_back(now);
                while failures
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) > self.cfg.window)
                {
                    failures.pop_front();
                }
                if failures.len() as u32 >= self.cfg.failure_threshold {
                    let until = now + self.cfg.cool_down;
                    self.set(&mut st, St::Open { until });
                }
            }
            _ => {}
        }
    }

    fn release(&self) {
        if let St::HalfOpen { in_flight } = &mut *self.state.lock() {
            *in_flight = in_flight.saturating_sub(1);
        }
    }
}

fn public(st: &St) -> BreakerState {
    match st {
        St::Closed { .. } => BreakerState::Closed,
        St::Open { .. } => BreakerState::Open,
        St::HalfOpen { .. } => BreakerState::HalfOpen,
    }
}

/// A call admitted by the breaker; a probe that is dropped unfinished
/// (cancelled) frees its slot.
struct Permit<'a> {
    core: &'a Core,
    probe: bool,
    done: bool,
}

impl Permit<'_> {
    fn finish(mut self, error: Option<&Error>) {
        self.done = true;
        self.core.record(self.probe, error);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.core.release();
        }
    }
}

/// Fails fast while a backend is down.
///
/// Closed → open after `failure_threshold` counted failures within
/// `window` (retryable errors by default) → after `cool_down`, half-open:
/// up to `half_open_probes` calls go through → the first success closes it,
/// a counted failure opens it for another cool-down. While open, calls fail
/// at once with the retryable `Error::CircuitOpen` whose `retry_after` is the
/// remaining cool-down, so a [`Retry`](super::Retry) outside waits for it and
/// a [`Fallback`](super::Fallback) outside switches to its secondary.
///
/// [`state`](Self::state) shows the state, and every change is logged and
/// set on the `rag_circuit_breaker_state` gauge. Clones share the state.
/// A stream counts as failed when it fails before its first delta.
/// Timing uses tokio's clock.
#[derive(Clone, Debug)]
pub struct CircuitBreaker<S> {
    inner: S,
    core: Arc<Core>,
}

impl<S> CircuitBreaker<S> {
    /// Wraps `inner`, closed.
    pub fn new(inner: S, config: BreakerConfig) -> Self {
        Self {
            inner,
            core: Arc::new(Core {
                cfg: config,
                state: Mutex::new(St::Closed {
                    failures: VecDeque::new(),
                }),
            }),
        }
    }
    /// The wrapped value.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// Unwraps.
    pub fn into_inner(self) -> S {
        self.inner
    }
    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.core.cfg
    }
    /// The current state (an open breaker whose cool-down ended reads as
    /// half-open).
    pub fn state(&self) -> BreakerState {
        let mut st = self.core.state.lock();
        self.core.refresh(&mut st, Instant::now());
        public(&st)
    }

    async fn call<T>(&self, call: impl Future<Output = Result<T>>) -> Result<T> {
        let permit = self.core.acquire()?;
        let result = call.await;
        permit.finish(result.as_ref().err());
        result
    }
}

/// Builds [`CircuitBreaker`]s; each wrapped value gets its own state.
#[derive(Clone, Debug, Default)]
pub struct CircuitBreakerLayer {
    config: BreakerConfig,
}

impl CircuitBreakerLayer {
    /// A layer with this configuration.
    pub fn new(config: BreakerConfig) -> Self {
        Self { config }
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;
    fn layer(&self, inner: S) -> CircuitBreaker<S> {
        CircuitBreaker::new(inner, self.config.clone())
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: Embedder> Embedder for CircuitBreaker<S> {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.call(self.inner.embed(texts)).await
    }
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        self.call(self.inner.embed_query(query)).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: LlmClient> LlmClient for CircuitBreaker<S> {
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
        self.call(self.inner.complete(request)).await
    }
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        self.call(open_first(self.inner.stream(request))).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: VectorStore> VectorStore for CircuitBreaker<S> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn upsert(&self, ns: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()> {
        self.call(self.inner.upsert(ns, chunks)).await
    }
    async fn search(&self, ns: &Namespace, req: SearchRequest) -> Result<Vec<ScoredChunk>> {
        self.call(self.inner.search(ns, req)).await
    }
    async fn delete_document(&self, ns: &Namespace, id: &DocumentId) -> Result<usize> {
        self.call(self.inner.delete_document(ns, id)).await
    }
    async fn document_hashes(
        &self,
        ns: &Namespace,
        ids: &[DocumentId],
    ) -> Result<Vec<(DocumentId, String)>> {
        self.call(self.inner.document_hashes(ns, ids)).await
    }
    async fn get_chunks(&self, ns: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>> {
        self.call(self.inner.get_chunks(ns, ids)).await
    }
    async fn scan(
        &self,
        ns: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<EmbeddedChunk>> {
        self.call(self.inner.scan(ns, after, limit)).await
    }
    async fn list_documents(
        &self,
        ns: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<DocumentInfo>> {
        self.call(self.inner.list_documents(ns, after, limit)).await
    }
    async fn count(&self, ns: &Namespace) -> Result<usize> {
        self.call(self.inner.count(ns)).await
    }
    async fn delete_namespace(&self, ns: &Namespace) -> Result<()> {
        self.call(self.inner.delete_namespace(ns)).await
    }
    async fn health(&self) -> Result<()> {
        self.call(self.inner.health()).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: Reranker> Reranker for CircuitBreaker<S> {
    async fn rerank(
        &self,
        query: &str,
        candidates: Vec<ScoredChunk>,
        top_n: usize,
    ) -> Result<Vec<ScoredChunk>> {
        self.call(self.inner.rerank(query, candidates, top_n)).await
    }
}
