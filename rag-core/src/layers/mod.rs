//! Cross-cutting concerns as wrappers: each layer implements the trait it
//! wraps, so they nest freely and a wrapped client is used exactly like a bare
//! one.
//!
//! | wrapper                | wraps                                                  | concern |
//! |------------------------|--------------------------------------------------------|---------|
//! | [`Retry`]              | `Embedder`, `LlmClient`, `VectorStore`, `Reranker`, `SessionStore` (reads) | transient errors: exponential backoff, full jitter, `retry_after` |
//! | [`Timeout`]            | all five                                               | a deadline per call (and between stream items) |
//! | [`CircuitBreaker`]     | `Embedder`, `LlmClient`, `VectorStore`, `Reranker`     | fail fast while a provider is down |
//! | [`Fallback`]           | `Embedder`, `LlmClient`, `Reranker`                    | a second provider when the first fails transiently |
//! | [`RateLimit`]          | `Embedder`, `LlmClient`                                | client-side requests and tokens per minute |
//! | [`CachedEmbedder`]     | `Embedder`                                             | embeddings keyed by model id + text hash |
//! | [`ConcurrencyLimit`]   | `LlmClient`                                            | calls in flight for a local, CPU-bound model; a bounded queue, then `Error::Overloaded` |
//! | [`Instrumented`]       | all five                                               | tracing spans and `metrics` |
//!
//! A layer wraps a trait and knows nothing of the pipeline (a test checks
//! that no file here names it). Two concerns that need the pipeline live
//! there instead: the [`PromptGuard`](crate::pipeline::PromptGuard) screens
//! questions before retrieval
//! ([`RagBuilder::guard`](crate::RagBuilder::guard)), and the answer cache
//! ([`RagBuilder::answer_cache`](crate::RagBuilder::answer_cache)) is keyed by
//! a per-namespace data version that the pipeline's own ingest and delete
//! bump.
//!
//! ```
//! # #[cfg(feature = "testkit")] {
//! use std::time::Duration;
//! use rag_core::layers::{BreakerConfig, CircuitBreaker, Instrumented, LayerExt, Retry, RetryPolicy, Timeout};
//! use rag_core::testkit::ScriptedLlm;
//! use rag_core::LlmClient;
//!
//! let primary = ScriptedLlm::new().with_model_id("primary");
//! let secondary = ScriptedLlm::new().with_model_id("secondary");
//! let llm = Instrumented::new(
//!     Retry::new(
//!         CircuitBreaker::new(Timeout::new(primary, Duration::from_secs(30)), BreakerConfig::new("primary")),
//!         RetryPolicy::default(),
//!     )
//!     .with_fallback(Timeout::new(secondary, Duration::from_secs(30))),
//! );
//! assert_eq!(llm.model_id(), "primary");
//! # }
//! ```
//!
//! # Order
//!
//! Wrappers run outside-in: the outermost sees a call first and its result
//! last. The recommended composition for a remote client, outermost first:
//!
//! ```text
//! Instrumented( Fallback( Retry( CircuitBreaker( RateLimit( Timeout( client ))))), secondary ) )
//! ```
//!
//! * [`Timeout`] innermost, so each *attempt* has its own deadline and a hung
//!   attempt becomes a retryable `Error::Timeout` that the layers above see.
//!   Outside `Retry` it would bound the whole retry sequence instead (use
//!   [`RetryPolicy::max_elapsed`] for that).
//! * [`RateLimit`] inside `Retry`, so every attempt, retries included, takes
//!   its permit: retries of a 429 storm cannot exceed the quota. Its waiting
//!   happens before the timeout starts.
//! * [`CircuitBreaker`] inside `Retry`, so it counts every failed attempt and
//!   the retry loop sees `Error::CircuitOpen` (retryable, with the cool-down
//!   as `retry_after`) instead of hammering a provider that is down. Outside
//!   `Retry` it would count a whole exhausted sequence as one failure.
//! * [`Retry`] inside [`Fallback`], so the primary gets its retries before
//!   the secondary takes over (Fallback also takes over on
//!   `RetriesExhausted`). Give the secondary its own layers.
//! * [`Instrumented`] outermost to measure what the caller experiences; put
//!   a second one innermost to see every attempt.
//! * [`CachedEmbedder`] outside everything on the embedder side (a hit
//!   should cost no permit, no attempt, no breaker slot).
//!
//! # Metrics
//!
//! Emitted through the [`metrics`] facade (install any recorder, e.g.
//! `metrics-exporter-prometheus`; without one they cost nothing). Labels
//! never contain content, questions or secrets.
//!
//! | name | kind | labels |
//! |------|------|--------|
//! | `rag_call_duration_seconds` | histogram | `component`, `op`, `model` |
//! | `rag_calls_total` | counter | `component`, `op`, `model`, `outcome` |
//! | `rag_errors_total` | counter | `component`, `op`, `model`, `kind` |
//! | `rag_llm_tokens_total` | counter | `model`, `type` (`prompt`, `completion`) |
//! | `rag_embedded_texts_total` | counter | `model` |
//! | `rag_ask_stage_seconds` | histogram | `stage` |
//! | `rag_retries_total` | counter | `op`, `kind` |
//! | `rag_fallbacks_total` | counter | `op` |
//! | `rag_circuit_breaker_state` | gauge (0 closed, 1 half-open, 2 open) | `breaker` |
//! | `rag_rate_limit_wait_seconds` | histogram | `limiter` |
//! | `rag_rate_limited_total` | counter | `limiter` |
//! | `rag_cache_hits_total`, `rag_cache_misses_total` | counter | `cache` (`embeddings`, `answers`) |

mod breaker;
mod cache;
mod concurrency;
mod fallback;
mod instrument;
mod rate_limit;
mod retry;
mod timeout;

use futures::StreamExt;

use crate::error::Result;
use crate::traits::ChatStream;

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker, CircuitBreakerLayer};
pub use cache::{CacheStats, CachedEmbedder, CachedEmbedderLayer, EmbedCacheConfig};
pub use concurrency::{ConcurrencyLimit, ConcurrencyLimitLayer};
pub use fallback::{Fallback, FallbackLayer};
pub use instrument::{Instrumented, InstrumentedLayer};
pub use rate_limit::{RateLimit, RateLimitConfig, RateLimitLayer, TokenCounter};
pub use retry::{Retry, RetryLayer, RetryPolicy};
pub use timeout::{Timeout, TimeoutLayer};

/// Wraps a value in a wrapper: the `Layer` half of each wrapper, as in
/// tower, so one configured layer can wrap several clients.
///
/// ```
/// use std::time::Duration;
/// use rag_core::layers::{Layer, TimeoutLayer};
/// use rag_core::{Embedder, HashEmbedder};
///
/// let layer = TimeoutLayer::new(Duration::from_secs(5));
/// let small = layer.layer(HashEmbedder::new(32));
/// let large = layer.layer(HashEmbedder::new(64));
/// assert_eq!((small.dimensions(), large.dimensions()), (32, 64));
/// ```
pub trait Layer<S> {
    /// The wrapped type.
    type Service;

    /// Wraps `inner`.
    fn layer(&self, inner: S) -> Self::Service;
}

/// Method-call sugar for composing wrappers:
/// `client.layered(&layer).with_fallback(other)`.
pub trait LayerExt: Sized {
    /// Wraps `self` in `layer`.
    fn layered<L: Layer<Self>>(self, layer: &L) -> L::Service {
        layer.layer(self)
    }

    /// Falls back to `fallback` when `self` fails with a transient error
    /// (see [`Fallback`]).
    fn with_fallback<F>(self, fallback: F) -> Fallback<Self, F> {
        Fallback::new(self, fallback)
    }
}

impl<T> LayerExt for T {}

/// Opens a stream and waits for its first item, so that a stream that fails
/// before producing anything counts as a failed call (for retry, breaker and
/// fallback). The first item is put back in front.
pub(crate) async fn open_first(
    opened: impl std::future::Future<Output = Result<ChatStream>>,
) -> Result<ChatStream> {
    let mut stream = opened.await?;
    match stream.next().await {
        Some(Err(e)) => Err(e),
        Some(Ok(first)) => Ok(futures::stream::once(async move { Ok(first) })
            .chain(stream)
            .boxed()),
        None => Ok(futures::stream::empty().boxed()),
    }
}

/// Whether an error is worth trying elsewhere or again later: transient
/// errors, and a retry layer that gave up on them.
pub(crate) fn is_transient(e: &crate::Error) -> bool {
    match e {
        crate::Error::RetriesExhausted { last, .. } => last.is_retryable(),
        other => other.is_retryable(),
    }
}
