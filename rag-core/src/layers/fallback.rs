//! [`Fallback`]: a second backend when the first fails transiently.

use std::future::Future;

use async_trait::async_trait;

use crate::chat::{ChatRequest, ChatResponse};
use crate::error::{Error, Result};
use crate::search::ScoredChunk;
use crate::traits::{ChatStream, Embedder, LlmClient, Reranker};

use super::{Layer, is_transient, open_first};

/// Calls `primary`; when it fails with a transient error — retryable,
/// `Error::CircuitOpen`, or `Error::RetriesExhausted` from a
/// [`Retry`](super::Retry) inside — calls `secondary` with the same input.
/// Permanent errors (bad input, auth, unsupported) come back from the
/// primary as they are: the secondary would fail alike or hide a bug.
///
/// * `LlmClient`: a response names the model that actually answered
///   ([`ChatResponse::model`]); `model_id` is the primary's and
///   `context_window` the smaller of the two, so a prompt packed for it fits
///   either. A stream falls back when it fails before its first delta.
/// * `Embedder`: **the secondary must be the same model** (the same model
///   served elsewhere, another region or deployment): vectors of two models
///   are not comparable, and mixing them in one index silently ruins search.
///   Build embedder fallbacks with [`Fallback::embedders`], which checks
///   the model id and dimensions.
///
/// When both fail, the secondary's error is returned (the primary's is
/// logged).
#[derive(Clone, Debug)]
pub struct Fallback<P, S> {
    primary: P,
    secondary: S,
}

impl<P, S> Fallback<P, S> {
    /// `primary`, falling back to `secondary`. For embedders prefer
    /// [`Fallback::embedders`].
    pub fn new(primary: P, secondary: S) -> Self {
        Self { primary, secondary }
    }
    /// The primary.
    pub fn get_ref(&self) -> &P {
        &self.primary
    }
    /// The secondary.
    pub fn secondary(&self) -> &S {
        &self.secondary
    }
    /// Unwraps into (primary, secondary).
    pub fn into_inner(self) -> (P, S) {
        (self.primary, self.secondary)
    }
}

impl<P: Embedder, S: Embedder> Fallback<P, S> {
    /// An embedder fallback; `InvalidInput` unless both report the same
    /// model id and dimensions.
    pub fn embedders(primary: P, secondary: S) -> Result<Self> {
        if primary.model_id() != secondary.model_id()
            || primary.dimensions() != secondary.dimensions()
        {
            return Err(Error::invalid_input(format!(
                "an embedder fallback must be the same model: {} ({} dimensions) vs {} ({} dimensions)",
                primary.model_id(),
                primary.dimensions(),
                secondary.model_id(),
                secondary.dimensions()
            )));
        }
        Ok(Self::new(primary, secondary))
    }
}

/// Awaits `first`; on a transient error, awaits `second` instead.
async fn run<T>(
    op: &'static str,
    first: impl Future<Output = Result<T>>,
    second: impl Future<Output = Result<T>>,
) -> Result<T> {
    match first.await {
        Err(e) if is_transient(&e) => {
            tracing::warn!(op, error = e.kind(), "primary failed, falling back");
            metrics::counter!("rag_fallbacks_total", "op" => op).increment(1);
            second.await
        }
        other => other,
    }
}

/// Builds [`Fallback`]s to a (cloned) secondary.
#[derive(Clone, Debug)]
pub struct FallbackLayer<F> {
    secondary: F,
}

impl<F> FallbackLayer<F> {
    /// A layer falling back to `secondary`.
    pub fn new(secondary: F) -> Self {
        Self { secondary }
    }
}

impl<P, F: Clone> Layer<P> for FallbackLayer<F> {
    type Service = Fallback<P, F>;
    fn layer(&self, inner: P) -> Fallback<P, F> {
        Fallback::new(inner, self.secondary.clone())
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<P: Embedder, S: Embedder> Embedder for Fallback<P, S> {
    fn model_id(&self) -> &str {
        self.primary.model_id()
    }
    fn dimensions(&self) -> usize {
        self.primary.dimensions()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        run(
            "embedder.embed",
            self.primary.embed(texts),
            self.secondary.embed(texts),
        )
        .await
    }
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        run(
            "embedder.embed_query",
            self.primary.embed_query(query),
            self.secondary.embed_query(query),
        )
        .await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<P: LlmClient, S: LlmClient> LlmClient for Fallback<P, S> {
    fn model_id(&self) -> &str {
        self.primary.model_id()
    }
    fn context_window(&self) -> usize {
        self.primary
            .context_window()
            .min(self.secondary.context_window())
    }
    /// The primary's: what answers when nothing fails.
    fn model_free(&self) -> bool {
        self.primary.model_free()
    }
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse> {
        run(
            "llm.complete",
            self.primary.complete(request.clone()),
            self.secondary.complete(request),
        )
        .await
    }
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        run(
            "llm.stream",
            open_first(self.primary.stream(request.clone())),
            self.secondary.stream(request),
        )
        .await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<P: Reranker, S: Reranker> Reranker for Fallback<P, S> {
    async fn rerank(
        &self,
        query: &str,
        candidates: Vec<ScoredChunk>,
        top_n: usize,
    ) -> Result<Vec<ScoredChunk>> {
        run(
            "reranker.rerank",
            self.primary.rerank(query, candidates.clone(), top_n),
            self.secondary.rerank(query, candidates, top_n),
        )
        .await
    }
}
