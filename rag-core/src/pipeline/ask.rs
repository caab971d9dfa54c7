//! Asking: the flow from an [`Ask`] to an [`Answer`] — screen, condense,
//! retrieve, rerank, pack, generate, cite, record. The streamed variant is
//! in `stream.rs`.

use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::chat::{ChatRequest, FinishReason, Message, PromptSource, Role, Usage};
use crate::error::{Error, Result};
use crate::search::ScoredChunk;
use crate::session::SessionId;

use super::answer::{Answer, Source, Trace};
use super::citations::{self, MarkerFilter};
use super::packing::{self, PackInput};
use super::request::Ask;
use super::{Inner, Rag};

/// Everything decided before generation.
pub(crate) struct Prepared {
    question: String,
    session: Option<SessionId>,
    pub(crate) sources: Vec<Source>,
    trace: Trace,
    started: Instant,
}

const CONDENSE_SYSTEM: &str = "Rewrite the follow-up question as one standalone question that \
can be understood without the conversation: resolve references such as \"it\", \"they\" or \
\"the second one\" using the conversation. Reply with the rewritten question only.";

/// A follow-up rewritten without a model: the previous question, which is
/// what a follow-up usually refers to, then the follow-up.
fn without_model(question: &str, history: &[Message]) -> String {
    let previous = history
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.as_str())
        .unwrap_or_default();
    format!("{previous} {question}").trim().to_owned()
}

impl Inner {
    /// Validates a question and runs the prompt guard, before anything
    /// else touches it.
    pub(crate) async fn screen(&self, ask: &Ask) -> Result<()> {
        ask.validate()?;
        match &self.guard {
            Some(guard) => guard.check(&ask.question).await,
            None => Ok(()),
        }
    }

    pub(crate) async fn prepare(&self, ask: &Ask) -> Result<(ChatRequest, Prepared)> {
        ask.validate()?;
        let started = Instant::now();
        let mut trace = Trace {
            question: ask.question.clone(),
            mode_requested: ask.mode,
            ..Trace::default()
        };

        let history = match ask.session {
            Some(id) => {
                let store = self.sessions.as_ref().ok_or_else(|| {
                    Error::invalid_input(
                        "a session was given but this pipeline has no session store",
                    )
                })?;
                let session = store.get(id).await?;
                if session.namespace != ask.namespace {
                    return Err(Error::not_found(format!("session {id}")));
                }
                packing::history_for_prompt(store.history(id, self.config.history_window).await?)
            }
            None => Vec::new(),
        };

        let t = Instant::now();
        let query = if ask.condense && !history.is_empty() {
            trace.condensed = true;
            if self.llm.model_free() {
                without_model(&ask.question, &history)
            } else {
                match self.condense(&ask.question, &history, ask).await {
                    Ok((q, usage)) => {
                        trace.condense_usage = Some(usage);
                        q
                    }
                    // The answer may still come (a fallback answerer, a
                    // model back for the next call): retrieve with the
                    // rewrite that needs no model rather than fail here.
                    Err(e) => {
                        tracing::warn!(error = %e, "condensing the follow-up failed; rewritten without a model");
                        trace.condense_failed = true;
                        without_model(&ask.question, &history)
                    }
                }
            }
        } else {
            ask.question.clone()
        };
        trace.timings.condense = t.elapsed();

        let retrieved = self.retrieve(&ask.namespace, &query, ask).await?;
        retrieved.write_trace(&mut trace);

        let t = Instant::now();
        let (candidates, reranked) = self.rerank(&query, retrieved.candidates, ask).await?;
        trace.reranked = reranked;
        // Zero when no reranker ran (only a truncation).
        trace.timings.rerank = if reranked {
            t.elapsed()
        } else {
            Duration::ZERO
        };

        let t = Instant::now();
        let (template, template_tokens) = match &ask.prompt {
            Some(p) => (p, None),
            None => (&self.default_prompt, Some(self.default_prompt_tokens)),
        };
        let packed = packing::pack(PackInput {
            template,
            template_tokens,
            question: &ask.question,
            history,
            candidates,
            budget: ask.budget,
            context_window: self.llm.context_window(),
            encoding: self.config.encoding,
        })?;
        trace.timings.pack = t.elapsed();
        packed.write_trace(&mut trace);
        trace.standalone_query = query;
        tracing::debug!(
            sources = trace.packed_sources,
            dropped = trace.dropped_sources,
            history = trace.history_messages,
            prompt_tokens = trace.prompt_tokens,
            condensed = trace.condensed,
            "prompt packed"
        );

        let sources = packed
            .sources
            .iter()
            .map(|s| PromptSource {
                number: s.number,
                source: s.source.clone(),
                text: s.text.clone(),
            })
            .collect();
        let mut request = ChatRequest::new(packed.messages)
            .with_max_tokens(ask.budget.answer)
            .with_sources(sources);
        request.temperature = ask.temperature;
        Ok((
            request,
            Prepared {
                question: ask.question.clone(),
                session: ask.session,
                sources: packed.sources,
                trace,
                started,
            },
        ))
    }

    /// Rewrites a follow-up into a standalone query.
    async fn condense(
        &self,
        question: &str,
        history: &[Message],
        ask: &Ask,
    ) -> Result<(String, Usage)> {
        const ANSWER: usize = 128;
        let enc = self.config.encoding;
        let fixed = enc.count(CONDENSE_SYSTEM)
            + enc.count(question)
            + 32
            + 2 * packing::MESSAGE_OVERHEAD_TOKENS
            + packing::REPLY_PRIMING_TOKENS;
        let window = self.llm.context_window();
        let room = window.saturating_sub(ANSWER + fixed);
        if room == 0 {
            return Err(Error::ContextLengthExceeded {
                tokens: fixed + ANSWER,
                limit: window,
            });
        }
        let (kept, _, _) =
            packing::trim_history(history.to_vec(), ask.budget.history.min(room), enc);
        let mut transcript = String::new();
        for m in &kept {
            transcript.push_str(match m.role {
                Role::User => "User: ",
                Role::Assistant => "Assistant: ",
                Role::System => "System: ",
            });
            transcript.push_str(&m.content);
            transcript.push('\n');
        }
        let user = format!(
            "Conversation:\n{transcript}\nFollow-up question: {question}\n\nStandalone question:"
        );
        let request = ChatRequest::new(vec![Message::system(CONDENSE_SYSTEM), Message::user(user)])
            .with_max_tokens(ANSWER as u32)
            .with_temperature(0.0);
        let response = self.llm.complete(request).await?;
        let rewritten = response
            .text
            .lines()
            .map(|l| l.trim().trim_matches('"').trim())
            .find(|l| !l.is_empty())
            .unwrap_or_default();
        let query = if rewritten.is_empty() {
            question.to_owned()
        } else {
            rewritten.to_owned()
        };
        Ok((query, response.usage))
    }

    /// Builds the answer and records the exchange in the session.
    pub(crate) async fn conclude(&self, p: Prepared, generated: Generated) -> Result<Answer> {
        let Prepared {
            question,
            session,
            sources,
            mut trace,
            started,
        } = p;
        let citations = citations::citations(&generated.text, &sources);
        trace.removed_markers = generated.removed;
        trace.timings.generate = generated.elapsed;
        if let (Some(id), Some(store)) = (session, &self.sessions) {
            let meta = serde_json::json!({
                "citations": citations,
                "standalone_query": trace.standalone_query,
                "model": generated.model,
            });
            store
                .append(
                    id,
                    vec![
                        Message::user(question),
                        Message::assistant(generated.text.clone()).with_metadata(meta),
                    ],
                )
                .await?;
        }
        trace.timings.total = started.elapsed();
        trace.record_metrics();
        Ok(Answer {
            extractive: generated.extractive,
            text: generated.text,
            citations,
            sources,
            usage: generated.usage,
            model: generated.model,
            finish_reason: generated.finish_reason,
            session,
            trace,
        })
    }
}

/// What generation produced, for [`Inner::conclude`].
pub(crate) struct Generated {
    pub(crate) text: String,
    /// Citation markers removed because they pointed at no source.
    pub(crate) removed: usize,
    pub(crate) usage: Usage,
    pub(crate) finish_reason: FinishReason,
    pub(crate) model: String,
    /// Whether no language model wrote the text.
    pub(crate) extractive: bool,
    /// From the model call to the last token.
    pub(crate) elapsed: Duration,
}

impl Rag {
    /// Retrieval only: the chunks `ask` would offer to packing, best first —
    /// dense and keyword search fused as `ask` says (`top_k` each), then
    /// the reranker when the pipeline has one and `ask.rerank` is on,
    /// keeping `rerank_top_n`. No session, no condensing, no prompt
    /// screening, no model call: what an evaluation or a search page needs.
    ///
    /// Errors: `InvalidInput` for a malformed [`Ask`]; any backend error.
    pub async fn search(&self, ask: &Ask) -> Result<Vec<ScoredChunk>> {
        ask.validate()?;
        let inner = &self.inner;
        let retrieved = inner.retrieve(&ask.namespace, &ask.question, ask).await?;
        let (chunks, _) = inner
            .rerank(&ask.question, retrieved.candidates, ask)
            .await?;
        Ok(chunks)
    }

    /// Reranks `candidates` for `query` as [`Rag::ask`] does: the pipeline's
    /// reranker (when it has one and `ask.rerank` is on), blended with the
    /// retrieval scores by `ask.rerank_weight`, keeping `ask.rerank_top_n`.
    /// Without a reranker the candidates keep their order, cut to
    /// `rerank_top_n`.
    pub async fn rerank(
        &self,
        query: &str,
        candidates: Vec<ScoredChunk>,
        ask: &Ask,
    ) -> Result<Vec<ScoredChunk>> {
        ask.validate()?;
        Ok(self.inner.rerank(query, candidates, ask).await?.0)
    }

    /// Answers a question: condense (with a session), retrieve, rerank,
    /// pack, generate, cite, and append the exchange to the session.
    ///
    /// Errors: `InvalidInput` for a malformed [`Ask`] or a session without a
    /// session store; `NotFound` for an unknown session;
    /// `ContextLengthExceeded` when the question alone does not fit the
    /// model; any backend error. On error the session is unchanged.
    pub async fn ask(&self, ask: Ask) -> Result<Answer> {
        let span = tracing::info_span!("rag.ask", namespace = %ask.namespace, mode = ?ask.mode);
        let inner = &self.inner;
        async move {
            inner.screen(&ask).await?;
            let cache_key = match &inner.answer_cache {
                Some(cache) => {
                    let key = super::AnswerCache::key(&ask, inner.versions.get(&ask.namespace));
                    if let Some(mut hit) = key.as_ref().and_then(|k| cache.get(k)) {
                        hit.trace.cached = true;
                        return Ok(hit);
                    }
                    key
                }
                None => None,
            };
            let (request, prepared) = inner.prepare(&ask).await?;
            let t = Instant::now();
            let response = inner.llm.complete(request).await?;
            let mut filter = MarkerFilter::new(prepared.sources.len());
            let text = filter.filter(&response.text);
            let answer = inner
                .conclude(
                    prepared,
                    Generated {
                        text,
                        removed: filter.removed(),
                        usage: response.usage,
                        finish_reason: response.finish_reason,
                        model: response.model,
                        extractive: response.extractive,
                        elapsed: t.elapsed(),
                    },
                )
                .await?;
            if let (Some(cache), Some(key)) = (&inner.answer_cache, cache_key) {
                cache.put(key, answer.clone());
            }
            Ok(answer)
        }
        .instrument(span)
        .await
    }
}
