//! [`ScriptedLlm`]: an [`LlmClient`] that replies, streams, fails or waits on
//! cue, and records what it was asked.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use parking_lot::Mutex;

use crate::chat::{ChatDelta, ChatRequest, ChatResponse, FinishReason, Usage};
use crate::error::{Error, Result};
use crate::traits::{ChatStream, LlmClient};

/// One scripted behaviour, consumed by one call (`complete` or `stream`).
#[derive(Debug)]
#[non_exhaustive]
pub enum Step {
    /// Answer with this text (streamed word by word).
    Reply(String),
    /// Stream exactly these deltas (`complete` joins them).
    Deltas(Vec<String>),
    /// Fail the call with this error.
    Fail(Error),
    /// Stream these deltas, then an error item (`complete` fails).
    FailMidStream(Vec<String>, Error),
    /// Wait (on tokio's clock, so a paused clock skips it), then do the step.
    Delay(Duration, Box<Step>),
}

type Responder = Arc<dyn Fn(&ChatRequest) -> String + Send + Sync>;

/// A scripted chat model for tests.
///
/// Calls consume the script in order; when it is empty the responder answers
/// (by default a fixed sentence). Every request is recorded.
///
/// ```
/// use rag_core::testkit::ScriptedLlm;
/// use rag_core::{ChatRequest, Error, LlmClient, Message};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let llm = ScriptedLlm::new()
///     .then_fail(Error::RateLimited { retry_after: None })
///     .then_reply("Keys rotate monthly [1].");
/// let req = ChatRequest::new(vec![Message::user("how often?")]);
/// assert!(llm.complete(req.clone()).await.is_err());
/// assert_eq!(llm.complete(req).await.unwrap().text, "Keys rotate monthly [1].");
/// assert_eq!(llm.requests().len(), 2);
/// # });
/// ```
#[derive(Clone)]
pub struct ScriptedLlm {
    model_id: String,
    context_window: usize,
    script: Arc<Mutex<VecDeque<Step>>>,
    responder: Responder,
    requests: Arc<Mutex<Vec<ChatRequest>>>,
}

impl std::fmt::Debug for ScriptedLlm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedLlm")
            .field("model_id", &self.model_id)
            .field("pending_steps", &self.script.lock().len())
            .finish()
    }
}

impl Default for ScriptedLlm {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedLlm {
    /// The default answer when the script is empty.
    pub const DEFAULT_REPLY: &'static str = "This is a scripted answer.";

    /// An empty script answering [`Self::DEFAULT_REPLY`].
    pub fn new() -> Self {
        Self {
            model_id: "scripted".into(),
            context_window: 8192,
            script: Arc::default(),
            responder: Arc::new(|_| Self::DEFAULT_REPLY.to_owned()),
            requests: Arc::default(),
        }
    }

    /// Sets the model id.
    pub fn with_model_id(mut self, id: impl Into<String>) -> Self {
        self.model_id = id.into();
        self
    }

    /// Sets the context window reported.
    pub fn with_context_window(mut self, tokens: usize) -> Self {
        self.context_window = tokens;
        self
    }

    /// Answers with `f(request)` when the script is empty.
    pub fn with_responder(
        mut self,
        f: impl Fn(&ChatRequest) -> String + Send + Sync + 'static,
    ) -> Self {
        self.responder = Arc::new(f);
        self
    }

    /// Appends a step.
    pub fn then(self, step: Step) -> Self {
        self.push(step);
        self
    }

    /// Appends a reply.
    pub fn then_reply(self, text: impl Into<String>) -> Self {
        self.then(Step::Reply(text.into()))
    }

    /// Appends a failure.
    pub fn then_fail(self, error: Error) -> Self {
        self.then(Step::Fail(error))
    }

    /// Appends a step to a shared instance.
    pub fn push(&self, step: Step) {
        self.script.lock().push_back(step);
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<ChatRequest> {
        self.requests.lock().clone()
    }

    /// Steps not yet consumed.
    pub fn pending(&self) -> usize {
        self.script.lock().len()
    }

    fn next_step(&self, req: &ChatRequest) -> Step {
        self.requests.lock().push(req.clone());
        self.script
            .lock()
            .pop_front()
            .unwrap_or_else(|| Step::Reply((self.responder)(req)))
    }

    fn usage(req: &ChatRequest, answer: &str) -> Usage {
        // Whitespace words: cheap, so benches measure the pipeline, not this.
        let words = |s: &str| s.split_whitespace().count() as u32;
        Usage {
            prompt_tokens: req.messages.iter().map(|m| words(&m.content)).sum(),
            completion_tokens: words(answer),
        }
    }
}

async fn resolve(mut step: Step) -> Step {
    while let Step::Delay(d, inner) = step {
        tokio::time::sleep(d).await;
        step = *inner;
    }
    step
}

#[async_trait]
impl LlmClient for ScriptedLlm {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn context_window(&self) -> usize {
        self.context_window
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse> {
        let step = resolve(self.next_step(&request)).await;
        let text = match step {
            Step::Reply(t) => t,
            Step::Deltas(d) => d.concat(),
            Step::Fail(e) | Step::FailMidStream(_, e) => return Err(e),
            Step::Delay(..) => unreachable!("resolved above"),
        };
        Ok(ChatResponse {
            usage: Self::usage(&request, &text),
            text,
            finish_reason: FinishReason::Stop,
            model: self.model_id.clone(),
            extractive: false,
        })
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        let step = resolve(self.next_step(&request)).await;
        let (deltas, error) = match step {
            Step::Reply(t) => (crate::pipeline::extractive::word_deltas(&t), None),
            Step::Deltas(d) => (d, None),
            Step::Fail(e) => return Err(e),
            Step::FailMidStream(d, e) => (d, Some(e)),
            Step::Delay(..) => unreachable!("resolved above"),
        };
        let usage = Self::usage(&request, &deltas.concat());
        let model = self.model_id.clone();
        let mut items: Vec<Result<ChatDelta>> =
            deltas.into_iter().map(|d| Ok(ChatDelta::Text(d))).collect();
        match error {
            Some(e) => items.push(Err(e)),
            None => items.push(Ok(ChatDelta::Finish {
                usage,
                finish_reason: FinishReason::Stop,
                model,
                extractive: false,
            })),
        }
        Ok(futures::stream::iter(items).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Message;
    use futures::TryStreamExt;

    #[tokio::test(start_paused = true)]
    async fn script_order_delay_and_mid_stream_failure() {
        let llm = ScriptedLlm::new()
            .then(Step::Delay(
                Duration::from_secs(30),
                Box::new(Step::Reply("late".into())),
            ))
            .then(Step::FailMidStream(
                vec!["a ".into(), "b".into()],
                Error::backend("x", true, "cut"),
            ));
        let req = ChatRequest::new(vec![Message::user("q")]);
        let started = tokio::time::Instant::now();
        assert_eq!(llm.complete(req.clone()).await.unwrap().text, "late");
        assert!(started.elapsed() >= Duration::from_secs(30));
        let items: Vec<Result<ChatDelta>> = llm.stream(req.clone()).await.unwrap().collect().await;
        assert_eq!(items.len(), 3);
        assert!(items[2].is_err());
        let all: Vec<ChatDelta> = llm.stream(req).await.unwrap().try_collect().await.unwrap();
        assert!(matches!(all.last(), Some(ChatDelta::Finish { .. })));
        let text: String = all
            .iter()
            .filter_map(|d| match d {
                ChatDelta::Text(t) => Some(t.as_str()),
                ChatDelta::Finish { .. } => None,
            })
            .collect();
        assert_eq!(text, ScriptedLlm::DEFAULT_REPLY);
    }
}
