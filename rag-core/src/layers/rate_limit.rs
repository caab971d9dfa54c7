//! [`RateLimit`]: client-side requests and tokens per minute.

use std::num::NonZeroU32;
use std::ops::Add;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota, RateLimiter};

use crate::chat::{ChatRequest, ChatResponse};
use crate::chunking::TokenEncoding;
use crate::error::{Error, Result};
use crate::traits::{ChatStream, Embedder, LlmClient};

use super::Layer;

/// A [`governor`] clock on tokio's time, so a paused test clock drives the
/// limiter and waits are deterministic.
#[derive(Clone, Copy, Debug, Default)]
struct TokioClock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct TokioInstant(tokio::time::Instant);

impl Add<Nanos> for TokioInstant {
    type Output = Self;
    fn add(self, other: Nanos) -> Self {
        Self(self.0 + Duration::from(other))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        self.0.saturating_duration_since(earlier.0).into()
    }
    fn saturating_sub(&self, duration: Nanos) -> Self {
        self.0
            .checked_sub(duration.into())
            .map(Self)
            .unwrap_or(*self)
    }
}

impl Clock for TokioClock {
    type Instant = TokioInstant;
    fn now(&self) -> TokioInstant {
        TokioInstant(tokio::time::Instant::now())
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;

/// How [`RateLimit`] counts the tokens of a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenCounter {
    /// About four characters per token: free, and close enough for English
    /// prose against a per-minute budget.
    #[default]
    Estimate,
    /// Exact counts with a tiktoken encoding (costs a tokenisation per
    /// request).
    Tiktoken(TokenEncoding),
}

impl TokenCounter {
    /// Tokens of `text`.
    pub fn count(self, text: &str) -> usize {
        match self {
            Self::Estimate => text.chars().count().div_ceil(4),
            Self::Tiktoken(enc) => enc.count(text),
        }
    }
}

/// Settings of a [`RateLimit`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// The limiter's name, in errors, logs and the metrics label.
    pub name: String,
    /// Requests allowed per minute; up to `request_burst` may go at once,
    /// then they refill evenly (GCRA).
    pub requests_per_minute: Option<NonZeroU32>,
    /// Requests allowed at once; the whole minute's quota by default, which
    /// matches providers' token buckets. 1 spreads requests evenly, which
    /// also satisfies a provider that counts a sliding 60 s window (a full
    /// burst followed by the refill could exceed one).
    pub request_burst: Option<NonZeroU32>,
    /// Tokens allowed per minute: for a chat request its prompt plus
    /// `max_tokens` (what providers reserve), for an embedding call its
    /// texts.
    pub tokens_per_minute: Option<NonZeroU32>,
    /// How tokens are counted.
    pub counter: TokenCounter,
    /// Fail at once with `Error::RateLimited { retry_after }` instead of
    /// waiting (false: wait, the default).
    pub fail_fast: bool,
}

impl RateLimitConfig {
    /// No limits yet, with this name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            requests_per_minute: None,
            request_burst: None,
            tokens_per_minute: None,
            counter: TokenCounter::Estimate,
            fail_fast: false,
        }
    }
    /// Sets the requests per minute (0: unlimited).
    pub fn requests_per_minute(mut self, n: u32) -> Self {
        self.requests_per_minute = NonZeroU32::new(n);
        self
    }
    /// Sets how many requests may go at once (at least 1).
    pub fn request_burst(mut self, n: u32) -> Self {
        self.request_burst = Some(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        self
    }
    /// Sets the tokens per minute (0: unlimited).
    pub fn tokens_per_minute(mut self, n: u32) -> Self {
        self.tokens_per_minute = NonZeroU32::new(n);
        self
    }
    /// Sets the token counter.
    pub fn counter(mut self, counter: TokenCounter) -> Self {
        self.counter = counter;
        self
    }
    /// Fails fast instead of waiting.
    pub fn fail_fast(mut self, on: bool) -> Self {
        self.fail_fast = on;
        self
    }
}

#[derive(Debug)]
struct Limits {
    config: RateLimitConfig,
    requests: Option<Limiter>,
    tokens: Option<Limiter>,
}

impl Limits {
    fn new(config: RateLimitConfig) -> Self {
        let limiter = |n: Option<NonZeroU32>, burst: Option<NonZeroU32>| {
            n.map(|n| {
                let quota = Quota::per_minute(n).allow_burst(burst.unwrap_or(n).min(n));
                RateLimiter::direct_with_clock(quota, TokioClock)
            })
        };
        Self {
            requests: limiter(config.requests_per_minute, config.request_burst),
            tokens: limiter(config.tokens_per_minute, None),
            config,
        }
    }

    /// Waits (or fails fast) until one request of `tokens` fits both
    /// budgets.
    async fn acquire(&self, tokens: usize) -> Result<()> {
        let started = tokio::time::Instant::now();
        let mut waited = false;
        if let Some(rpm) = &self.requests {
            while let Err(not_until) = rpm.check() {
                self.wait(&not_until).await?;
                waited = true;
            }
        }
        if let Some(tpm) = &self.tokens {
            // A request larger than the whole minute's budget takes the
            // whole budget rather than failing forever.
            let cap = self
                .config
                .tokens_per_minute
                .map_or(u32::MAX, NonZeroU32::get);
            let n = NonZeroU32::new((tokens.min(cap as usize) as u32).max(1))
                .unwrap_or(NonZeroU32::MIN);
            loop {
                match tpm.check_n(n) {
                    Ok(Ok(())) => break,
                    Ok(Err(not_until)) => {
                        self.wait(&not_until).await?;
                        waited = true;
                    }
                    Err(_) => break,
                }
            }
        }
        if waited {
            let secs = started.elapsed().as_secs_f64();
            metrics::histogram!("rag_rate_limit_wait_seconds", "limiter" => self.config.name.clone())
                .record(secs);
            tracing::debug!(limiter = %self.config.name, waited_ms = (secs * 1000.0) as u64, "rate limit wait");
        }
        Ok(())
    }

    async fn wait(&self, not_until: &NotUntil<TokioInstant>) -> Result<()> {
        let wait = not_until
            .wait_time_from(TokioClock.now())
            .max(Duration::from_millis(1));
        if self.config.fail_fast {
            metrics::counter!("rag_rate_limited_total", "limiter" => self.config.name.clone())
                .increment(1);
            return Err(Error::RateLimited {
                retry_after: Some(wait),
            });
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

/// Keeps a client under its provider's requests- and tokens-per-minute
/// limits on the client side, so a large ingestion queues instead of
/// storming the provider into 429s.
///
/// GCRA from [`governor`], on tokio's clock. By default a call waits for
/// its permit; with [`RateLimitConfig::fail_fast`] it fails at once with
/// `Error::RateLimited { retry_after }` (retryable, so a [`Retry`](super::Retry)
/// outside waits exactly as long). Clones share the budget; wrap every
/// client that uses the same API key in clones of one `RateLimit`.
///
/// ```
/// use rag_core::layers::{RateLimit, RateLimitConfig};
/// use rag_core::{Embedder, HashEmbedder};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let e = RateLimit::new(HashEmbedder::new(64), RateLimitConfig::new("embeddings").requests_per_minute(60));
/// let started = tokio::time::Instant::now();
/// for _ in 0..61 {
///     e.embed(&["hello".into()]).await?;
/// }
/// // The 61st call waited for a request to refill (one per second).
/// assert!(started.elapsed() >= std::time::Duration::from_millis(999));
/// # Ok::<(), rag_core::Error>(()) }).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    inner: S,
    limits: Arc<Limits>,
}

impl<S> RateLimit<S> {
    /// Wraps `inner` with a fresh budget.
    pub fn new(inner: S, config: RateLimitConfig) -> Self {
        Self {
            inner,
            limits: Arc::new(Limits::new(config)),
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
    pub fn config(&self) -> &RateLimitConfig {
        &self.limits.config
    }

    fn chat_tokens(&self, request: &ChatRequest) -> usize {
        let counter = self.limits.config.counter;
        let prompt = crate::chat::prompt_tokens(&request.messages, |text| counter.count(text));
        prompt + request.max_tokens.unwrap_or(0) as usize
    }
}

/// Builds [`RateLimit`]s; each wrapped value gets its own budget (clone
/// one `RateLimit` to share a budget).
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    config: RateLimitConfig,
}

impl RateLimitLayer {
    /// A layer with these limits.
    pub fn new(config: RateLimitConfig) -> Self {
        Self { config }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit::new(inner, self.config.clone())
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: Embedder> Embedder for RateLimit<S> {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return self.inner.embed(texts).await;
        }
        let counter = self.limits.config.counter;
        let tokens = texts.iter().map(|t| counter.count(t)).sum();
        self.limits.acquire(tokens).await?;
        self.inner.embed(texts).await
    }
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        self.limits
            .acquire(self.limits.config.counter.count(query))
            .await?;
        self.inner.embed_query(query).await
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: LlmClient> LlmClient for RateLimit<S> {
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
        self.limits.acquire(self.chat_tokens(&request)).await?;
        self.inner.complete(request).await
    }
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        self.limits.acquire(self.chat_tokens(&request)).await?;
        self.inner.stream(request).await
    }
}
