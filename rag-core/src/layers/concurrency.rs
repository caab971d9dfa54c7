//! [`ConcurrencyLimit`]: a bound on calls in flight, with a bounded queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::chat::{ChatRequest, ChatResponse};
use crate::error::{Error, Result};
use crate::traits::{ChatStream, LlmClient};

use super::Layer;

/// Runs at most `slots` calls of the wrapped model at once; up to `queue`
/// more wait for a slot, and a call beyond that fails at once with the
/// retryable [`Error::Overloaded`] (nothing started, a suggested
/// `retry_after`), which a server answers with `503` and `Retry-After`.
///
/// Meant for models that run on this machine's CPU (a candle model, a
/// llama.cpp child process): each generation takes cores for seconds, so
/// ten at once finish no sooner than ten in turn, and a flood must be
/// refused rather than queued without end. A streamed answer holds its slot
/// until the stream ends or is dropped. Waiting is cancelled with the call:
/// a caller that gives up (a request deadline) leaves the queue.
///
/// Put it outside [`Timeout`](super::Timeout), so that time spent waiting
/// for a slot does not count against a generation's deadline, and do not
/// put a [`Retry`](super::Retry) around a CPU-bound model: a retried
/// timeout would run the same generation again.
///
/// ```
/// # #[cfg(feature = "testkit")] {
/// use std::time::Duration;
/// use rag_core::layers::ConcurrencyLimit;
/// use rag_core::testkit::{ScriptedLlm, Step};
/// use rag_core::{ChatRequest, Error, LlmClient, Message};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
/// let slow = ScriptedLlm::new()
///     .then(Step::Delay(Duration::from_secs(5), Box::new(Step::Reply("first".into()))));
/// // One generation at a time, nobody waiting.
/// let llm = std::sync::Arc::new(ConcurrencyLimit::new(slow, 1, 0));
/// let busy = llm.clone();
/// let first = tokio::spawn(async move { busy.complete(ChatRequest::new(vec![Message::user("a")])).await });
/// tokio::task::yield_now().await;
/// let err = llm.complete(ChatRequest::new(vec![Message::user("b")])).await.unwrap_err();
/// assert!(matches!(err, Error::Overloaded { in_use: 1, queued: 0, .. }));
/// assert_eq!(first.await.unwrap().unwrap().text, "first");
/// # });
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    slots: Arc<Semaphore>,
    max: usize,
    queue: usize,
    waiting: Arc<AtomicUsize>,
    retry_after: Duration,
}

/// Counts a caller in the queue until it leaves (with a slot or cancelled).
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S> ConcurrencyLimit<S> {
    /// At most `slots` (at least 1) calls at once and `queue` waiting.
    pub fn new(inner: S, slots: usize, queue: usize) -> Self {
        let max = slots.max(1);
        Self {
            inner,
            slots: Arc::new(Semaphore::new(max)),
            max,
            queue,
            waiting: Arc::new(AtomicUsize::new(0)),
            retry_after: Duration::from_secs(5),
        }
    }

    /// Sets the wait suggested to refused callers (5 s by default).
    pub fn with_retry_after(mut self, d: Duration) -> Self {
        self.retry_after = d;
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

    /// Calls running now.
    pub fn in_use(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    async fn acquire(&self, resource: &str) -> Result<OwnedSemaphorePermit> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        // Join the queue unless it is full (compare-and-swap, so two
        // callers cannot both take its last place).
        let joined = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.queue).then_some(n + 1)
            });
        let Ok(_) = joined else {
            return Err(Error::Overloaded {
                resource: resource.to_owned(),
                in_use: self.in_use(),
                queued: self.waiting.load(Ordering::Acquire),
                retry_after: self.retry_after,
            });
        };
        let _waiting = Waiting(self.waiting.clone());
        self.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Cancelled("concurrency limit closed".into()))
    }
}

/// Builds [`ConcurrencyLimit`] wrappers.
#[derive(Clone, Copy, Debug)]
pub struct ConcurrencyLimitLayer {
    slots: usize,
    queue: usize,
}

impl ConcurrencyLimitLayer {
    /// At most `slots` calls at once and `queue` waiting, per wrapper.
    pub fn new(slots: usize, queue: usize) -> Self {
        Self { slots, queue }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;
    fn layer(&self, inner: S) -> ConcurrencyLimit<S> {
        ConcurrencyLimit::new(inner, self.slots, self.queue)
    }
}

#[async_trait]
impl<S: LlmClient> LlmClient for ConcurrencyLimit<S> {
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
        let _slot = self.acquire(self.inner.model_id()).await?;
        self.inner.complete(request).await
    }
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        let slot = self.acquire(self.inner.model_id()).await?;
        let stream = self.inner.stream(request).await?;
        // The slot is released when the stream is exhausted or dropped.
        Ok(stream
            .map(move |item| {
                let _held = &slot;
                item
            })
            .boxed())
    }
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use super::*;
    use crate::chat::Message;
    use crate::testkit::{ScriptedLlm, Step};

    fn req() -> ChatRequest {
        ChatRequest::new(vec![Message::user("q")])
    }

    fn slow(n: usize) -> ScriptedLlm {
        let mut llm = ScriptedLlm::new();
        for i in 0..n {
            llm = llm.then(Step::Delay(
                Duration::from_secs(10),
                Box::new(Step::Reply(format!("answer {i}"))),
            ));
        }
        llm
    }

    #[tokio::test(start_paused = true)]
    async fn queued_calls_wait_and_a_full_queue_refuses_at_once() {
        let llm = Arc::new(ConcurrencyLimit::new(slow(3), 1, 1));
        let (a, b) = (llm.clone(), llm.clone());
        let first = tokio::spawn(async move { a.complete(req()).await });
        tokio::task::yield_now().await;
        let second = tokio::spawn(async move { b.complete(req()).await });
        tokio::task::yield_now().await;
        assert_eq!(llm.in_use(), 1);
        let started = tokio::time::Instant::now();
        let err = llm.complete(req()).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
        assert!(
            matches!(&err, Error::Overloaded { in_use: 1, queued: 1, retry_after, .. } if *retry_after == Duration::from_secs(5)),
            "{err:?}"
        );
        assert!(err.is_retryable());
        assert_eq!(err.kind(), "overloaded");
        // The queued one ran after the first, not beside it.
        assert_eq!(first.await.unwrap().unwrap().text, "answer 0");
        assert_eq!(second.await.unwrap().unwrap().text, "answer 1");
        assert_eq!(started.elapsed(), Duration::from_secs(20));
        assert_eq!(llm.in_use(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_leaves_the_queue() {
        let llm = Arc::new(ConcurrencyLimit::new(slow(3), 1, 1));
        let a = llm.clone();
        let first = tokio::spawn(async move { a.complete(req()).await });
        tokio::task::yield_now().await;
        // A caller that gives up after 1 s (its request deadline).
        let gave_up = tokio::time::timeout(Duration::from_secs(1), llm.complete(req())).await;
        assert!(gave_up.is_err());
        // Its place in the queue is free again.
        let b = llm.clone();
        let next = tokio::spawn(async move { b.complete(req()).await });
        tokio::task::yield_now().await;
        assert!(matches!(
            llm.complete(req()).await,
            Err(Error::Overloaded { queued: 1, .. })
        ));
        first.await.unwrap().unwrap();
        next.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_holds_its_slot_until_dropped() {
        let llm = ConcurrencyLimit::new(ScriptedLlm::new(), 1, 0);
        let stream = llm.stream(req()).await.unwrap();
        assert_eq!(llm.in_use(), 1);
        assert!(matches!(
            llm.complete(req()).await,
            Err(Error::Overloaded { .. })
        ));
        drop(stream);
        assert_eq!(llm.in_use(), 0);
        llm.complete(req()).await.unwrap();
    }
}
