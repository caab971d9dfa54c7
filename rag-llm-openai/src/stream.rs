//! Server-sent events of `/chat/completions` with `stream: true`, turned into
//! [`ChatDelta`]s.
//!
//! The protocol: `data: {chunk}` events with `choices[0].delta.content`, a
//! `finish_reason` on the last content chunk, optionally a final chunk with
//! `usage` and no choices (when `stream_options.include_usage` is set; Groq
//! also puts it under `x_groq.usage`), then `data: [DONE]`.
//!
//! * `Text` items carry each non-empty content delta, in order.
//! * `[DONE]` yields one `Finish` with the server's usage, or a local count.
//! * An error event (`data: {"error": …}` or `event: error`) yields the
//!   mapped error as the last item.
//! * A body that ends without `[DONE]` yields a non-retryable protocol error
//!   as the last item; a connection that breaks or falls silent longer than
//!   the request timeout yields a retryable transport error or `Timeout`.
//!
//! Dropping the stream drops the connection, which cancels the generation.

use std::pin::Pin;
use std::sync::Arc;

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use rag_core::{ChatDelta, ChatStream, Error, FinishReason, Message, Result, Usage};
use serde::Deserialize;
use serde_json::Value;

use crate::chat::{CHAT_PATH, WireUsage, count_prompt, finish_reason, saturate};
use crate::config::OpenAiConfig;
use crate::http::mapper;

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

struct State {
    events: Events,
    config: Arc<OpenAiConfig>,
    messages: Vec<Message>,
    /// Generated text, kept for a local completion count.
    text: String,
    model: Option<String>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    chunks: usize,
    /// The body was not an event stream (a server ignoring `stream: true`).
    not_sse: Option<String>,
}

pub(crate) fn chat_stream(
    response: reqwest::Response,
    config: Arc<OpenAiConfig>,
    messages: Vec<Message>,
) -> ChatStream {
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let not_sse = (!content_type.is_empty() && !content_type.contains("event-stream"))
        .then_some(content_type);
    let state = State {
        events: Box::pin(response.bytes_stream().eventsource()),
        config,
        messages,
        text: String::new(),
        model: None,
        usage: None,
        finish: None,
        chunks: 0,
        not_sse,
    };
    futures::stream::unfold(Some(state), |state| async move {
        let mut state = state?;
        let item = state.next_item().await?;
        let more = matches!(item, Ok(ChatDelta::Text(_)));
        Some((item, more.then_some(state)))
    })
    .boxed()
}

impl State {
    /// The next item; `None` only when the stream is over.
    async fn next_item(&mut self) -> Option<Result<ChatDelta>> {
        loop {
            let event = match self.events.next().await {
                Some(Ok(event)) => event,
                Some(Err(err)) => return Some(Err(self.event_error(err))),
                None => return Some(Err(self.ended_early())),
            };
            let data = event.data.trim();
            if data == "[DONE]" {
                return Some(Ok(self.finish()));
            }
            if data.is_empty() {
                continue;
            }
            let value: Value = match serde_json::from_str(data) {
                Ok(v) => v,
                Err(e) => {
                    return Some(Err(self.mapper().protocol(format!(
                        "malformed JSON in stream event {} ({e})",
                        self.chunks + 1
                    ))));
                }
            };
            if event.event == "error" || value.get("error").is_some_and(|e| !e.is_null()) {
                return Some(Err(self.mapper().stream_event(&value)));
            }
            let chunk: Chunk = match serde_json::from_value(value) {
                Ok(c) => c,
                Err(e) => {
                    return Some(Err(self.mapper().protocol(format!(
                        "stream event {} is not a chat completion chunk ({e})",
                        self.chunks + 1
                    ))));
                }
            };
            self.chunks += 1;
            if let Some(model) = chunk.model.filter(|m| !m.is_empty()) {
                self.model = Some(model);
            }
            if let Some(usage) = chunk.usage.or(chunk.x_groq.and_then(|x| x.usage)) {
                self.usage = Some(usage.into());
            }
            let mut delta = String::new();
            for choice in chunk.choices {
                if let Some(reason) = choice.finish_reason.as_deref() {
                    self.finish = Some(finish_reason(Some(reason)));
                }
                if let Some(content) = choice.delta.and_then(|d| d.content) {
                    delta.push_str(&content);
                }
            }
            if !delta.is_empty() {
                self.text.push_str(&delta);
                return Some(Ok(ChatDelta::Text(delta)));
            }
        }
    }

    fn mapper(&self) -> crate::error::ErrorMapper<'_> {
        mapper(
            &self.config,
            CHAT_PATH,
            (0, self.config.chat_context_window()),
        )
    }

    fn finish(&mut self) -> ChatDelta {
        let usage = self.usage.unwrap_or_else(|| {
            let encoding = self.config.chat_encoding();
            Usage {
                prompt_tokens: saturate(count_prompt(encoding, &self.messages)),
                completion_tokens: saturate(encoding.count(&self.text)),
            }
        });
        ChatDelta::Finish {
            usage,
            finish_reason: self.finish.unwrap_or_default(),
            model: self
                .model
                .take()
                .unwrap_or_else(|| self.config.chat_model.clone()),
            extractive: false,
        }
    }

    fn ended_early(&self) -> Error {
        let what = match &self.not_sse {
            Some(ct) => {
                format!("expected an event stream (text/event-stream), the server sent {ct}")
            }
            None => format!(
                "the stream ended without [DONE] after {} chunks{}",
                self.chunks,
                if self.finish.is_some() {
                    " (a finish_reason was seen)"
                } else {
                    " (the answer may be cut short)"
                }
            ),
        };
        self.mapper().protocol(what)
    }

    fn event_error(&self, err: EventStreamError<reqwest::Error>) -> Error {
        match err {
            EventStreamError::Transport(e) => {
                let timeout = self.config.request_timeout;
                self.mapper().transport(&e, timeout)
            }
            EventStreamError::Utf8(e) => self
                .mapper()
                .protocol(format!("the event stream is not valid UTF-8 ({e})")),
            EventStreamError::Parser(e) => self
                .mapper()
                .protocol(format!("the event stream does not parse ({:?})", e.code)),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    x_groq: Option<XGroq>,
}

#[derive(Debug, Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Debug, Deserialize)]
struct XGroq {
    #[serde(default)]
    usage: Option<WireUsage>,
}
