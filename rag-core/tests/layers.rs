//! The layers: every wrapper passes the conformance kit of what it wraps,
//! plus fault tests with scripted failures on tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use rag_core::layers::{
    BreakerConfig, BreakerState, CircuitBreaker, Fallback, Layer, LayerExt, Retry, RetryLayer,
    RetryPolicy, Timeout, TimeoutLayer,
};
use rag_core::testkit::{ScriptedLlm, Step, embedder, llm, session_store, vector_store};
use rag_core::{
    ChatDelta, ChatRequest, ChatResponse, ChatStream, Document, Embedder, Error, HashEmbedder,
    LlmClient, MemorySessionStore, MemoryVectorStore, Message, Rag, RagConfig, Result, async_trait,
};
use tokio::time::Instant;

// ---------------------------------------------------------------------------
// Helpers

fn req() -> ChatRequest {
    ChatRequest::new(vec![Message::user("How often are keys rotated?")])
}

fn rate_limited(secs: u64) -> Error {
    Error::RateLimited {
        retry_after: Some(Duration::from_secs(secs)),
    }
}

fn down() -> Error {
    Error::backend("provider", true, "503 service unavailable")
}

/// A fast, deterministic policy: no jitter, 100 ms doubling.
fn policy() -> RetryPolicy {
    RetryPolicy::default()
        .initial_delay(Duration::from_millis(100))
        .jitter(false)
}

type FailFn = dyn Fn(usize) -> Option<Error> + Send + Sync;

/// A HashEmbedder that fails on cue (by call number, from 0) and counts its
/// calls and the texts it embedded.
#[derive(Clone)]
struct Flaky {
    inner: HashEmbedder,
    fail: Arc<FailFn>,
    calls: Arc<AtomicUsize>,
    texts: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Flaky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Flaky")
    }
}

impl Flaky {
    fn new(dims: usize, fail: impl Fn(usize) -> Option<Error> + Send + Sync + 'static) -> Self {
        Self {
            inner: HashEmbedder::new(dims),
            fail: Arc::new(fail),
            calls: Arc::default(),
            texts: Arc::default(),
        }
    }
    fn healthy(dims: usize) -> Self {
        Self::new(dims, |_| None)
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn texts(&self) -> usize {
        self.texts.load(Ordering::SeqCst)
    }
    fn tick(&self, n: usize) -> Result<()> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        match (self.fail)(call) {
            Some(e) => Err(e),
            None => {
                self.texts.fetch_add(n, Ordering::SeqCst);
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Embedder for Flaky {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.tick(texts.len())?;
        self.inner.embed(texts).await
    }
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        self.tick(1)?;
        self.inner.embed_query(query).await
    }
}

/// An LLM whose stream yields one delta and then stalls forever.
#[derive(Debug)]
struct Stalls;

#[async_trait]
impl LlmClient for Stalls {
    fn model_id(&self) -> &str {
        "stalls"
    }
    fn context_window(&self) -> usize {
        4096
    }
    async fn complete(&self, _: ChatRequest) -> Result<ChatResponse> {
        futures::future::pending().await
    }
    async fn stream(&self, _: ChatRequest) -> Result<ChatStream> {
        Ok(
            futures::stream::once(async { Ok(ChatDelta::Text("Keys ".into())) })
                .chain(futures::stream::pending())
                .boxed(),
        )
    }
}

async fn collect(stream: ChatStream) -> Vec<Result<ChatDelta>> {
    stream.collect().await
}

// ---------------------------------------------------------------------------
// Conformance: each wrapper around the in-memory backends

#[tokio::test]
async fn retry_passes_every_conformance_kit() {
    vector_store::run_all(&Retry::new(MemoryVectorStore::default(), policy())).await;
    embedder::run_all(&Retry::new(HashEmbedder::default(), policy())).await;
    llm::run_all(&Retry::new(ScriptedLlm::new(), policy())).await;
    session_store::run_all(&Retry::new(MemorySessionStore::default(), policy())).await;
}

#[tokio::test]
async fn timeout_passes_every_conformance_kit() {
    let layer = TimeoutLayer::new(Duration::from_secs(30));
    vector_store::run_all(&layer.layer(MemoryVectorStore::default())).await;
    embedder::run_all(&layer.layer(HashEmbedder::default())).await;
    llm::run_all(&layer.layer(ScriptedLlm::new())).await;
    session_store::run_all(&layer.layer(MemorySessionStore::default())).await;
}

#[tokio::test]
async fn breaker_passes_every_conformance_kit() {
    let cfg = BreakerConfig::new("kit");
    vector_store::run_all(&CircuitBreaker::new(
        MemoryVectorStore::default(),
        cfg.clone(),
    ))
    .await;
    embedder::run_all(&CircuitBreaker::new(HashEmbedder::default(), cfg.clone())).await;
    llm::run_all(&CircuitBreaker::new(ScriptedLlm::new(), cfg)).await;
}

#[tokio::test]
async fn fallback_passes_every_conformance_kit() {
    let e = Fallback::embedders(HashEmbedder::default(), HashEmbedder::default()).unwrap();
    embedder::run_all(&e).await;
    // A primary that is down the whole time: the secondary passes the kit.
    let dead = Flaky::new(384, |_| Some(down()));
    embedder::run_all(&Fallback::embedders(dead, HashEmbedder::default()).unwrap()).await;
    llm::run_all(&ScriptedLlm::new().with_fallback(ScriptedLlm::new())).await;
    let always_down = ScriptedLlm::new();
    for _ in 0..16 {
        always_down.push(Step::Fail(down()));
    }
    llm::run_all(&Fallback::new(always_down.clone(), ScriptedLlm::new())).await;
    assert!(always_down.requests().len() >= 3, "the primary was tried");
}

// ---------------------------------------------------------------------------
// Retry

#[tokio::test(start_paused = true)]
async fn retry_429_storm_honours_retry_after() {
    let scripted = ScriptedLlm::new()
        .then_fail(rate_limited(2))
        .then_fail(rate_limited(2))
        .then_fail(rate_limited(2))
        .then_reply("Monthly [1].");
    let llm = Retry::new(scripted, policy().max_attempts(5));
    let started = Instant::now();
    let answer = llm.complete(req()).await.unwrap();
    assert_eq!(answer.text, "Monthly [1].");
    assert_eq!(llm.get_ref().requests().len(), 4);
    // Three waits of at least retry_after (2 s) each; backoff (≤ 400 ms)
    // is below retry_after, so exactly 6 s of virtual time.
    assert_eq!(started.elapsed(), Duration::from_secs(6));
}

#[tokio::test(start_paused = true)]
async fn retry_gives_up_after_max_attempts_with_the_last_error() {
    let scripted = ScriptedLlm::new();
    for _ in 0..10 {
        scripted.push(Step::Fail(rate_limited(1)));
    }
    let llm = Retry::new(scripted, policy().max_attempts(3));
    match llm.complete(req()).await {
        Err(Error::RetriesExhausted { attempts, last }) => {
            assert_eq!(attempts, 3);
            assert!(matches!(*last, Error::RateLimited { .. }));
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    assert_eq!(llm.get_ref().requests().len(), 3);
}

#[tokio::test(start_paused = true)]
async fn retry_never_repeats_a_permanent_error() {
    let llm = Retry::new(
        ScriptedLlm::new().then_fail(Error::invalid_input("bad request")),
        policy(),
    );
    let started = Instant::now();
    assert!(matches!(
        llm.complete(req()).await,
        Err(Error::InvalidInput { .. })
    ));
    assert_eq!(llm.get_ref().requests().len(), 1);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn retry_stops_when_retry_after_exceeds_the_time_budget() {
    let llm = Retry::new(
        ScriptedLlm::new().then_fail(rate_limited(120)),
        policy().max_elapsed(Some(Duration::from_secs(10))),
    );
    let started = Instant::now();
    match llm.complete(req()).await {
        Err(Error::RetriesExhausted { attempts: 1, .. }) => {}
        other => panic!("expected RetriesExhausted after 1 attempt, got {other:?}"),
    }
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no pointless wait past the budget"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_covers_embed_and_embed_query_when_a_provider_is_down_for_n_calls() {
    // Down for the first 3 calls, then up.
    let flaky = Flaky::new(64, |call| (call < 3).then(down));
    let e = Retry::new(flaky, policy());
    let v = e.embed(&["alpha".into(), "beta".into()]).await.unwrap();
    assert_eq!(v.len(), 2);
    assert_eq!(e.get_ref().calls(), 4);

    let flaky = Flaky::new(64, |call| (call < 2).then(down));
    let e = Retry::new(flaky, policy());
    let q = e.embed_query("alpha").await.unwrap();
    assert_eq!(q, HashEmbedder::new(64).embed_one("alpha"));
    assert_eq!(e.get_ref().calls(), 3, "embed_query is retried too");
}

#[tokio::test(start_paused = true)]
async fn retry_reopens_a_stream_only_before_its_first_delta() {
    let scripted = ScriptedLlm::new()
        .then(Step::FailMidStream(vec![], down()))
        .then_reply("Keys rotate monthly.");
    let llm = Retry::new(scripted, policy());
    let items = collect(llm.stream(req()).await.unwrap()).await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    assert_eq!(llm.get_ref().requests().len(), 2);

    let scripted = ScriptedLlm::new()
        .then(Step::FailMidStream(vec!["Keys ".into()], down()))
        .then_reply("never asked");
    let llm = Retry::new(scripted, policy());
    let items = collect(llm.stream(req()).await.unwrap()).await;
    assert!(matches!(&items[0], Ok(ChatDelta::Text(t)) if t == "Keys "));
    assert!(
        items[1].is_err(),
        "an error after the first delta passes through"
    );
    assert_eq!(llm.get_ref().requests().len(), 1, "no re-open after text");
}

// ---------------------------------------------------------------------------
// Timeout

#[tokio::test(start_paused = true)]
async fn timeout_cuts_slow_responses_and_retry_recovers() {
    let slow = ScriptedLlm::new().then(Step::Delay(
        Duration::from_secs(60),
        Box::new(Step::Reply("late".into())),
    ));
    let llm = Timeout::new(slow, Duration::from_secs(10));
    let started = Instant::now();
    match llm.complete(req()).await {
        Err(e @ Error::Timeout { .. }) => assert!(e.is_retryable()),
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert_eq!(started.elapsed(), Duration::from_secs(10));

    // Slow once, then fast: Retry(Timeout(..)) answers after one timeout.
    let slow_once = ScriptedLlm::new()
        .then(Step::Delay(
            Duration::from_secs(60),
            Box::new(Step::Reply("late".into())),
        ))
        .then_reply("fast");
    let llm = Retry::new(Timeout::new(slow_once, Duration::from_secs(10)), policy());
    let started = Instant::now();
    assert_eq!(llm.complete(req()).await.unwrap().text, "fast");
    assert_eq!(started.elapsed(), Duration::from_millis(10_100));
}

#[tokio::test(start_paused = true)]
async fn timeout_ends_a_stalled_stream() {
    let llm = Timeout::new(Stalls, Duration::from_secs(5));
    let started = Instant::now();
    let items = collect(llm.stream(req()).await.unwrap()).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(matches!(&items[0], Ok(ChatDelta::Text(_))));
    assert!(matches!(&items[1], Err(Error::Timeout { .. })));
    assert_eq!(started.elapsed(), Duration::from_secs(5));
    assert!(matches!(
        llm.complete(req()).await,
        Err(Error::Timeout { .. })
    ));
}

// ---------------------------------------------------------------------------
// Circuit breaker

fn breaker_cfg() -> BreakerConfig {
    BreakerConfig::new("scripted")
        .failure_threshold(3)
        .window(Duration::from_secs(60))
        .cool_down(Duration::from_secs(30))
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_half_opens_and_closes() {
    let scripted = ScriptedLlm::new()
        .then_fail(down())
        .then_fail(down())
        .then_fail(down());
    let llm = CircuitBreaker::new(scripted, breaker_cfg());
    assert_eq!(llm.state(), BreakerState::Closed);
    for _ in 0..3 {
        assert!(llm.complete(req()).await.is_err());
    }
    assert_eq!(llm.state(), BreakerState::Open);

    // Open: fails fast without calling the provider.
    match llm.complete(req()).await {
        Err(e @ Error::CircuitOpen { .. }) => {
            assert!(e.is_retryable());
            assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
        }
        other => panic!("expected CircuitOpen, got {other:?}"),
    }
    assert_eq!(llm.get_ref().requests().len(), 3);

    // After the cool-down: half-open; a successful probe closes it.
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(llm.state(), BreakerState::HalfOpen);
    assert!(llm.complete(req()).await.is_ok());
    assert_eq!(llm.state(), BreakerState::Closed);
    assert_eq!(llm.get_ref().requests().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn breaker_reopens_when_the_probe_fails_and_ignores_permanent_errors() {
    let scripted = ScriptedLlm::new();
    for _ in 0..4 {
        scripted.push(Step::Fail(down()));
    }
    let llm = CircuitBreaker::new(scripted, breaker_cfg());
    for _ in 0..3 {
        let _ = llm.complete(req()).await;
    }
    tokio::time::advance(Duration::from_secs(31)).await;
    assert!(llm.complete(req()).await.is_err(), "the probe fails");
    assert_eq!(llm.state(), BreakerState::Open);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(llm.complete(req()).await.is_ok());
    assert_eq!(llm.state(), BreakerState::Closed);

    // Permanent errors never open it.
    for _ in 0..5 {
        llm.get_ref().push(Step::Fail(Error::invalid_input("bad")));
    }
    for _ in 0..5 {
        let _ = llm.complete(req()).await;
    }
    assert_eq!(llm.state(), BreakerState::Closed);

    // Failures spread wider than the window never open it.
    for _ in 0..4 {
        llm.get_ref().push(Step::Fail(down()));
        let _ = llm.complete(req()).await;
        tokio::time::advance(Duration::from_secs(40)).await;
    }
    assert_eq!(llm.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn retry_around_an_open_breaker_waits_for_the_cool_down() {
    let scripted = ScriptedLlm::new()
        .then_fail(down())
        .then_fail(down())
        .then_fail(down())
        .then_reply("recovered");
    let llm = Retry::new(
        CircuitBreaker::new(scripted, breaker_cfg()),
        policy().max_attempts(10),
    );
    let started = Instant::now();
    assert_eq!(llm.complete(req()).await.unwrap().text, "recovered");
    // 3 failures (100 + 200 ms of backoff), then one CircuitOpen whose
    // retry_after is the rest of the cool-down, then the probe succeeds.
    assert_eq!(started.elapsed(), Duration::from_millis(30_300));
    assert_eq!(llm.get_ref().get_ref().requests().len(), 4);
    assert_eq!(llm.get_ref().state(), BreakerState::Closed);
}

// ---------------------------------------------------------------------------
// Fallback

#[tokio::test(start_paused = true)]
async fn fallback_takes_over_on_transient_errors_only() {
    let primary = ScriptedLlm::new()
        .with_model_id("primary")
        .then_fail(rate_limited(5))
        .then_fail(Error::Unauthorized {
            message: "bad key".into(),
        });
    let secondary = ScriptedLlm::new().with_model_id("secondary");
    let llm = primary.with_fallback(secondary);
    assert_eq!(llm.model_id(), "primary");
    let answer = llm.complete(req()).await.unwrap();
    assert_eq!(answer.model, "secondary");
    assert!(matches!(
        llm.complete(req()).await,
        Err(Error::Unauthorized { .. })
    ));
    assert_eq!(llm.secondary().requests().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn fallback_takes_over_from_an_open_breaker_and_exhausted_retries() {
    let primary = ScriptedLlm::new().with_model_id("primary");
    for _ in 0..20 {
        primary.push(Step::Fail(down()));
    }
    let llm = Retry::new(
        CircuitBreaker::new(
            primary.clone(),
            breaker_cfg().cool_down(Duration::from_secs(600)),
        ),
        policy().max_attempts(3),
    )
    .with_fallback(ScriptedLlm::new().with_model_id("secondary"));
    // Retries exhausted → fallback.
    assert_eq!(llm.complete(req()).await.unwrap().model, "secondary");
    assert_eq!(llm.get_ref().get_ref().state(), BreakerState::Open);
    // Breaker open: CircuitOpen with a long retry_after exceeds the retry
    // budget → exhausted at once → fallback, primary untouched.
    let before = primary.requests().len();
    let started = Instant::now();
    assert_eq!(llm.complete(req()).await.unwrap().model, "secondary");
    assert_eq!(primary.requests().len(), before);
    assert_eq!(started.elapsed(), Duration::ZERO);
    // Streams fall back too.
    let items = collect(llm.stream(req()).await.unwrap()).await;
    assert!(
        matches!(items.last(), Some(Ok(ChatDelta::Finish { model, .. })) if model == "secondary")
    );
}

#[tokio::test]
async fn embedder_fallback_must_be_the_same_model() {
    assert!(matches!(
        Fallback::embedders(HashEmbedder::new(64), HashEmbedder::new(32)),
        Err(Error::InvalidInput { .. })
    ));
    assert!(Fallback::embedders(HashEmbedder::new(64), HashEmbedder::new(64)).is_ok());
}

#[tokio::test(start_paused = true)]
async fn fallback_takes_over_mid_ingestion() {
    // The primary embeds two batches, then its provider goes down for good.
    let primary = Flaky::new(64, |call| (call >= 2).then(down));
    let secondary = Flaky::healthy(64);
    let embedder = Fallback::embedders(primary.clone(), secondary.clone()).unwrap();
    let rag = Rag::builder()
        .embedder(embedder)
        .config(
            RagConfig::default()
                .with_embed_batch_size(1)
                .with_embed_concurrency(1),
        )
        .build()
        .unwrap();
    let docs: Vec<Document> = (0..6)
        .map(|i| {
            Document::new(
                format!("doc{i}.md"),
                format!("Document {i} is about topic {i}."),
            )
        })
        .collect();
    let report = rag.ingest_many(docs).await;
    assert!(report.is_success(), "{:?}", report.failed);
    assert_eq!(report.added.len(), 6);
    assert_eq!(primary.texts(), 2, "the primary embedded the first two");
    assert_eq!(secondary.texts(), 4, "the secondary took over the rest");
    let answer = rag.ask(rag_core::Ask::new("topic 5")).await.unwrap();
    assert!(answer.sources.iter().any(|s| s.source == "doc5.md"));
}

#[tokio::test]
async fn layers_compose_through_the_layer_trait() {
    let e = HashEmbedder::new(32)
        .layered(&TimeoutLayer::new(Duration::from_secs(5)))
        .layered(&RetryLayer::new(policy()));
    assert_eq!(e.dimensions(), 32);
    assert_eq!(e.embed(&["x".into()]).await.unwrap().len(), 1);
    let _inner: HashEmbedder = e.into_inner().into_inner();
}
