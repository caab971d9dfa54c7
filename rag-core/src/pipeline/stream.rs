//! Asking as a stream: [`Rag::ask_stream`].

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tracing::Instrument;

use crate::chat::{ChatDelta, FinishReason, Usage};
use crate::error::{Error, Result};
use crate::traits::ChatStream;

use super::answer::{AskEvent, AskStream};
use super::ask::{Generated, Prepared};
use super::citations::MarkerFilter;
use super::request::Ask;
use super::{Inner, Rag};

impl Rag {
    /// Answers a question as a stream: [`AskEvent::Sources`], then
    /// [`AskEvent::Delta`]s, then [`AskEvent::Done`] (sent after the
    /// exchange was appended to the session).
    ///
    /// Everything up to the model call happens before this returns, so
    /// retrieval and budget errors come back here, not in the stream.
    /// Dropping the stream cancels generation and records nothing.
    pub async fn ask_stream(&self, ask: Ask) -> Result<AskStream> {
        let span =
            tracing::info_span!("rag.ask_stream", namespace = %ask.namespace, mode = ?ask.mode);
        let inner = self.inner.clone();
        let (prepared, chat, started) = async {
            inner.screen(&ask).await?;
            let (request, prepared) = inner.prepare(&ask).await?;
            // Generation is timed from the model call, as in `Rag::ask`:
            // opening the stream (the time to the first token) counts.
            let started = Instant::now();
            let chat = inner.llm.stream(request).await?;
            Ok::<_, Error>((prepared, chat, started))
        }
        .instrument(span)
        .await?;
        let state = StreamState {
            filter: MarkerFilter::new(prepared.sources.len()),
            inner,
            prepared: Some(prepared),
            chat,
            text: String::new(),
            sent_sources: false,
            finish: None,
            done: false,
            started,
        };
        Ok(futures::stream::unfold(state, next_event).boxed())
    }
}

struct StreamState {
    inner: Arc<Inner>,
    prepared: Option<Prepared>,
    chat: ChatStream,
    filter: MarkerFilter,
    text: String,
    sent_sources: bool,
    finish: Option<(Usage, FinishReason, String, bool)>,
    done: bool,
    /// When the model call started.
    started: Instant,
}

async fn next_event(mut st: StreamState) -> Option<(Result<AskEvent>, StreamState)> {
    loop {
        if st.done {
            return None;
        }
        if !st.sent_sources {
            st.sent_sources = true;
            let sources = st
                .prepared
                .as_ref()
                .map(|p| p.sources.clone())
                .unwrap_or_default();
            return Some((Ok(AskEvent::Sources(sources)), st));
        }
        if let Some((usage, finish_reason, model, extractive)) = st.finish.take() {
            st.done = true;
            let prepared = st.prepared.take()?;
            let generated = Generated {
                text: std::mem::take(&mut st.text),
                removed: st.filter.removed(),
                usage,
                finish_reason,
                model,
                extractive,
                elapsed: st.started.elapsed(),
            };
            let answer = st.inner.conclude(prepared, generated).await;
            return Some((answer.map(|a| AskEvent::Done(Box::new(a))), st));
        }
        match st.chat.next().await {
            Some(Ok(ChatDelta::Text(t))) => {
                let out = st.filter.push(&t);
                if !out.is_empty() {
                    st.text.push_str(&out);
                    return Some((Ok(AskEvent::Delta(out)), st));
                }
            }
            Some(Ok(ChatDelta::Finish {
                usage,
                finish_reason,
                model,
                extractive,
            })) => {
                st.finish = Some((usage, finish_reason, model, extractive));
                let tail = st.filter.finish();
                if !tail.is_empty() {
                    st.text.push_str(&tail);
                    return Some((Ok(AskEvent::Delta(tail)), st));
                }
            }
            Some(Err(e)) => {
                st.done = true;
                return Some((Err(e), st));
            }
            None => {
                st.done = true;
                let model = st.inner.llm.model_id().to_owned();
                return Some((
                    Err(Error::backend(
                        model,
                        true,
                        "answer stream ended without a finish event",
                    )),
                    st,
                ));
            }
        }
    }
}
