//! The conformance suite of [`LlmClient`].
//!
//! The tests check the protocol, never the content of an answer, so they run
//! unchanged against [`super::ScriptedLlm`], a real hosted model and a small
//! local one. Every call is bounded by [`CALL_TIMEOUT`], generous enough for
//! a small model on a CPU.
//!
//! ```
//! use rag_core::testkit::{llm, ScriptedLlm};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! llm::run_all(&ScriptedLlm::new()).await;
//! # });
//! ```

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;

use crate::chat::{ChatDelta, ChatRequest, Message};
use crate::error::Result;
use crate::traits::LlmClient;

/// The longest any one call (or stream) of the suite may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs every test of the suite; panics naming the first broken rule.
///
/// Needs a Tokio runtime with the time driver (`#[tokio::test]` has one),
/// for the [`CALL_TIMEOUT`] bounds.
pub async fn run_all(llm: &dyn LlmClient) {
    model_id_and_context_window(llm).await;
    complete_short_prompt(llm).await;
    stream_protocol(llm).await;
    drop_stream_after_first_delta(llm).await;
}

/// A short request most models answer in a few tokens; `max_tokens` 64
/// leaves room for a small model's preamble.
pub fn short_request() -> ChatRequest {
    ChatRequest::new(vec![
        Message::system("You are a terse assistant. Answer in a few words."),
        Message::user("Name one primary colour."),
    ])
    .with_temperature(0.0)
    .with_max_tokens(64)
}

/// `model_id()` is non-empty and `context_window()` positive.
pub async fn model_id_and_context_window(llm: &dyn LlmClient) {
    assert!(
        !llm.model_id().trim().is_empty(),
        "llm rule: model_id() must not be empty"
    );
    assert!(
        llm.context_window() > 0,
        "llm rule: context_window() must be positive, {} reports 0",
        llm.model_id()
    );
}

/// `complete` on a short prompt returns non-empty text and names the model
/// that answered.
pub async fn complete_short_prompt(llm: &dyn LlmClient) {
    let response = match bounded("complete", llm.complete(short_request())).await {
        Ok(r) => r,
        Err(err) => panic!("llm rule: complete on a short prompt must succeed, got {err}"),
    };
    assert!(
        !response.text.trim().is_empty(),
        "llm rule: complete must return non-empty text, got {:?}",
        response.text
    );
    assert!(
        !response.model.trim().is_empty(),
        "llm rule: a ChatResponse must name the model that answered"
    );
}

/// `stream` yields at least one `Text` delta with some non-whitespace text,
/// then exactly one `Finish` as its last item (naming the model), no error
/// items, and ends after `Finish`.
pub async fn stream_protocol(llm: &dyn LlmClient) {
    let items = bounded("stream", async {
        match llm.stream(short_request()).await {
            Ok(s) => Ok(s.collect::<Vec<Result<ChatDelta>>>().await),
            Err(e) => Err(e),
        }
    })
    .await;
    let items = match items {
        Ok(items) => items,
        Err(err) => panic!("llm rule: stream on a short prompt must succeed, got {err}"),
    };
    let mut text = String::new();
    let mut texts = 0usize;
    let mut finish_at = None;
    for (i, item) in items.iter().enumerate() {
        match item {
            Err(err) => panic!("llm rule: a successful stream has no error items, item {i}: {err}"),
            Ok(ChatDelta::Text(t)) => {
                assert!(
                    finish_at.is_none(),
                    "llm rule: Finish must be the last item, item {i} is Text after Finish"
                );
                texts += 1;
                text.push_str(t);
            }
            Ok(ChatDelta::Finish { model, .. }) => {
                assert!(
                    finish_at.is_none(),
                    "llm rule: a stream has exactly one Finish, item {i} is a second one"
                );
                assert!(
                    !model.trim().is_empty(),
                    "llm rule: Finish must name the model that answered"
                );
                finish_at = Some(i);
            }
        }
    }
    assert!(
        texts >= 1,
        "llm rule: a stream yields at least one Text delta before Finish, got none"
    );
    assert!(
        !text.trim().is_empty(),
        "llm rule: the streamed text must not be empty, got {text:?}"
    );
    assert_eq!(
        finish_at,
        Some(items.len() - 1),
        "llm rule: a stream ends with exactly one Finish as its last item"
    );
}

/// Dropping a stream after its first delta neither panics nor hangs, and
/// the client answers the next call.
pub async fn drop_stream_after_first_delta(llm: &dyn LlmClient) {
    let first = bounded("stream (first delta)", async {
        let mut s = llm.stream(short_request()).await?;
        let first = s.next().await;
        drop(s);
        Ok(first)
    })
    .await;
    match first {
        Ok(Some(Ok(_))) => {}
        Ok(Some(Err(err))) => panic!("llm rule: the first item of a stream failed: {err}"),
        Ok(None) => panic!("llm rule: a stream must yield at least one item"),
        Err(err) => panic!("llm rule: stream on a short prompt must succeed, got {err}"),
    }
    if let Err(err) = bounded(
        "complete after a dropped stream",
        llm.complete(short_request()),
    )
    .await
    {
        panic!("llm rule: a dropped stream must not break the client, the next call failed: {err}");
    }
}

async fn bounded<T>(what: &str, fut: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => panic!("llm rule: {what} must finish within {CALL_TIMEOUT:?} on a short prompt"),
    }
}
