//! Asking: [`Ask`] in, [`Answer`] (or a stream of [`AskEvent`]s) out.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::chat::{ChatDelta, ChatRequest, FinishReason, Message, Role, Usage};
use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::search::{Fusion, MAX_TOP_K, ScoredChunk, SearchMode};
use crate::session::SessionId;
use crate::traits::ChatStream;
use crate::types::{ChunkId, DocumentId, Metadata, Namespace};

use super::citations::{self, MarkerFilter};
use super::extractive::ExtractiveAnswerer;
use super::packing::{self, PackInput};
use super::prompt::PromptTemplate;
use super::{Inner, Rag};

/// Token budgets of one question.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenBudget {
    /// Most tokens of sources in the prompt; 3,000 by default.
    pub context: usize,
    /// Most tokens of conversation history in the prompt; 1,000 by default.
    pub history: usize,
    /// Tokens reserved for the answer (`max_tokens`); 512 by default. The
    /// prompt never exceeds the model's context window minus this.
    pub answer: u32,
}

impl Default for TokenBudget {
    fn default() -> Self {
        Self {
            context: 3000,
            history: 1000,
            answer: 512,
        }
    }
}

impl TokenBudget {
    /// A budget.
    pub fn new(context: usize, history: usize, answer: u32) -> Self {
        Self {
            context,
            history,
            answer,
        }
    }
}

/// A question and how to answer it.
///
/// ```
/// use rag_core::{Ask, Filter, Fusion, SearchMode};
/// let ask = Ask::new("How do I rotate keys?")
///     .filter(Filter::eq("team", "ops"))
///     .mode(SearchMode::Hybrid)
///     .fusion(Fusion::Rrf { k: 60.0 })
///     .top_k(20)
///     .rerank_top_n(5);
/// assert_eq!(ask.top_k, 20);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Ask {
    /// The question.
    pub question: String,
    /// The conversation it belongs to: its history is used and the
    /// exchange appended.
    pub session: Option<SessionId>,
    /// The tenant searched; [`Namespace::default`] unless set.
    pub namespace: Namespace,
    /// Only chunks matching this are retrieved.
    pub filter: Option<Filter>,
    /// Candidates retrieved by each search (and kept after fusion); 20.
    pub top_k: usize,
    /// Dense, keyword or hybrid (both, fused); hybrid by default.
    pub mode: SearchMode,
    /// How hybrid lists are fused; [`Fusion::default`]: weighted, dense 0.7.
    pub fusion: Fusion,
    /// Whether the pipeline's reranker (if any) is used; true.
    pub rerank: bool,
    /// Candidates kept after reranking (or after fusion without a
    /// reranker) and offered to packing; 8.
    pub rerank_top_n: usize,
    /// How much the reranker decides, in `[0, 1]`: candidates are ordered by
    /// `w · rerank + (1 − w) · retrieval`, each score min-max normalised
    /// over the reranked candidates. 1 is the reranker's order alone.
    #[serde(default = "full_weight")]
    pub rerank_weight: f32,
    /// Token budgets.
    pub budget: TokenBudget,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// A prompt replacing the pipeline's.
    pub prompt: Option<PromptTemplate>,
    /// Whether a follow-up is rewritten into a standalone query using the
    /// session history before retrieval; true.
    pub condense: bool,
}

fn full_weight() -> f32 {
    1.0
}

impl Ask {
    /// A question with default settings.
    pub fn new(question: impl Into<String>) -> Self {
        Self {
            question: question.into(),
            session: None,
            namespace: Namespace::default(),
            filter: None,
            top_k: 20,
            mode: SearchMode::Hybrid,
            fusion: Fusion::default(),
            rerank: true,
            rerank_top_n: 8,
            rerank_weight: 1.0,
            budget: TokenBudget::default(),
            temperature: None,
            prompt: None,
            condense: true,
        }
    }
    /// Sets the session.
    pub fn session(mut self, id: SessionId) -> Self {
        self.session = Some(id);
        self
    }
    /// Sets the namespace.
    pub fn namespace(mut self, ns: Namespace) -> Self {
        self.namespace = ns;
        self
    }
    /// Sets the filter.
    pub fn filter(mut self, f: Filter) -> Self {
        self.filter = Some(f);
        self
    }
    /// Sets the candidates per search.
    pub fn top_k(mut self, n: usize) -> Self {
        self.top_k = n;
        self
    }
    /// Sets the retrieval mode.
    pub fn mode(mut self, mode: SearchMode) -> Self {
        self.mode = mode;
        self
    }
    /// Sets the fusion.
    pub fn fusion(mut self, fusion: Fusion) -> Self {
        self.fusion = fusion;
        self
    }
    /// Turns reranking on or off.
    pub fn rerank(mut self, on: bool) -> Self {
        self.rerank = on;
        self
    }
    /// Sets how much the reranker decides (see [`Ask::rerank_weight`]).
    pub fn rerank_weight(mut self, w: f32) -> Self {
        self.rerank_weight = w;
        self
    }
    /// Sets how many candidates survive reranking.
    pub fn rerank_top_n(mut self, n: usize) -> Self {
        self.rerank_top_n = n;
        self
    }
    /// Sets the token budgets.
    pub fn budget(mut self, budget: TokenBudget) -> Self {
        self.budget = budget;
        self
    }
    /// Sets the source token budget.
    pub fn context_tokens(mut self, n: usize) -> Self {
        self.budget.context = n;
        self
    }
    /// Sets the history token budget.
    pub fn history_tokens(mut self, n: usize) -> Self {
        self.budget.history = n;
        self
    }
    /// Sets the answer token budget.
    pub fn answer_tokens(mut self, n: u32) -> Self {
        self.budget.answer = n;
        self
    }
    /// Sets the temperature.
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }
    /// Sets a prompt template for this question.
    pub fn prompt(mut self, template: PromptTemplate) -> Self {
        self.prompt = Some(template);
        self
    }
    /// Turns follow-up condensing on or off.
    pub fn condense(mut self, on: bool) -> Self {
        self.condense = on;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.question.trim().is_empty() {
            return Err(Error::invalid_input("question is empty"));
        }
        if self.top_k == 0 || self.top_k > MAX_TOP_K {
            return Err(Error::invalid_input(format!(
                "top_k must be 1 to {MAX_TOP_K}, got {}",
                self.top_k
            )));
        }
        if self.rerank_top_n == 0 {
            return Err(Error::invalid_input("rerank_top_n must be at least 1"));
        }
        if !(self.rerank_weight.is_finite() && (0.0..=1.0).contains(&self.rerank_weight)) {
            return Err(Error::invalid_input(format!(
                "rerank_weight must be 0 to 1, got {}",
                self.rerank_weight
            )));
        }
        if let Some(t) = self.temperature
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(Error::invalid_input(
                "temperature must be a finite number >= 0",
            ));
        }
        if let Some(p) = &self.prompt {
            p.validate()?;
        }
        Ok(())
    }
}

/// A numbered source given to the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Source {
    /// Its number in the prompt: `[number]` cites it.
    pub number: usize,
    /// The chunk.
    pub chunk_id: ChunkId,
    /// The chunk's document.
    pub document_id: DocumentId,
    /// The document's source (path, URL).
    pub source: String,
    /// Where the chunk is in the document, in bytes.
    pub byte_range: Range<usize>,
    /// The chunk text.
    pub text: String,
    /// The rank score (reranker's, fused or search score).
    pub score: f32,
    /// The document's metadata.
    pub metadata: Metadata,
}

impl Source {
    pub(crate) fn from_scored(number: usize, s: ScoredChunk) -> Self {
        let c = s.chunk;
        Self {
            number,
            chunk_id: c.id,
            document_id: c.document_id,
            source: c.source,
            byte_range: c.byte_range,
            text: c.text,
            score: s.score,
            metadata: c.metadata,
        }
    }
}

/// A source the answer cites.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Citation {
    /// The marker number, `[number]`.
    pub number: usize,
    /// The cited chunk.
    pub chunk_id: ChunkId,
    /// Its document.
    pub document_id: DocumentId,
    /// The document's source.
    pub source: String,
    /// The chunk's byte range in the document.
    pub byte_range: Range<usize>,
}

impl Citation {
    pub(crate) fn from_source(s: &Source) -> Self {
        Self {
            number: s.number,
            chunk_id: s.chunk_id.clone(),
            document_id: s.document_id.clone(),
            source: s.source.clone(),
            byte_range: s.byte_range.clone(),
        }
    }
}

/// Time spent in each stage of one question.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StageTimings {
    /// Rewriting a follow-up into a standalone query.
    pub condense: Duration,
    /// Embedding the query.
    pub embed: Duration,
    /// Searching and fusing (besides embedding).
    pub retrieve: Duration,
    /// Reranking; zero when no reranker ran.
    pub rerank: Duration,
    /// Packing the prompt.
    pub pack: Duration,
    /// Generating (to the last token for a stream).
    pub generate: Duration,
    /// Everything, session reads and writes included.
    pub total: Duration,
}

/// What the pipeline did to answer: for debugging and evaluation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Trace {
    /// The question as asked.
    pub question: String,
    /// The query retrieval used: the condensed follow-up, or the question.
    pub standalone_query: String,
    /// Whether the question was condensed using the session history.
    pub condensed: bool,
    /// The mode asked for.
    pub mode_requested: SearchMode,
    /// The mode used.
    pub mode_used: SearchMode,
    /// Why the mode used differs from the one asked for.
    pub fallback: Option<String>,
    /// Results of the dense search.
    pub dense_candidates: usize,
    /// Results of the keyword search.
    pub keyword_candidates: usize,
    /// Candidates after fusion.
    pub fused_candidates: usize,
    /// Whether a reranker ran.
    pub reranked: bool,
    /// Sources packed into the prompt.
    pub packed_sources: usize,
    /// Candidates left out because the source budget was used.
    pub dropped_sources: usize,
    /// History messages in the prompt.
    pub history_messages: usize,
    /// History messages left out (oldest first) for the history budget.
    pub history_dropped: usize,
    /// The prompt's size as the pipeline counted it (an upper bound).
    pub prompt_tokens: usize,
    /// Citation markers removed because they pointed at no source.
    pub removed_markers: usize,
    /// Token usage of the condensing call.
    pub condense_usage: Option<Usage>,
    /// Whether the answer came from the answer cache (its timings are the
    /// original ones).
    pub cached: bool,
    /// Per-stage timings.
    pub timings: StageTimings,
}

/// An answer with its sources, citations and trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Answer {
    /// The text; every `[n]` marker in it points at a source.
    pub text: String,
    /// The sources cited, in order of first citation.
    pub citations: Vec<Citation>,
    /// Every source given to the model, by number.
    pub sources: Vec<Source>,
    /// Token usage of the answer.
    pub usage: Usage,
    /// The model that answered.
    pub model: String,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// True when no language model wrote this: the [`ExtractiveAnswerer`]
    /// picked sentences from the sources.
    pub extractive: bool,
    /// The session the exchange was appended to.
    pub session: Option<SessionId>,
    /// What the pipeline did.
    pub trace: Trace,
}

/// One event of a streamed answer, in this order: `Sources` once, `Delta`s,
/// `Done` once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AskEvent {
    /// The sources given to the model, before any text.
    Sources(Vec<Source>),
    /// More answer text (invalid citation markers already removed).
    Delta(String),
    /// The complete answer, after it was recorded in the session.
    Done(Box<Answer>),
}

/// A streamed answer. Dropping it cancels generation; nothing is recorded in
/// the session unless `Done` was reached.
pub type AskStream = BoxStream<'static, Result<AskEvent>>;

/// Everything decided before generation.
pub(crate) struct Prepared {
    question: String,
    session: Option<SessionId>,
    sources: Vec<Source>,
    trace: Trace,
    started: Instant,
}

const CONDENSE_SYSTEM: &str = "Rewrite the follow-up question as one standalone question that \
can be understood without the conversation: resolve references such as \"it\", \"they\" or \
\"the second one\" using the conversation. Reply with the rewritten question only.";

fn is_extractive(model: &str) -> bool {
    model.starts_with(ExtractiveAnswerer::MODEL_ID_PREFIX)
}

impl Inner {
    /// Validates a question and runs the prompt guard, before anything
    /// else touches it.
    async fn screen(&self, ask: &Ask) -> Result<()> {
        ask.validate()?;
        match &self.guard {
            Some(guard) => guard.check(&ask.question).await,
            None => Ok(()),
        }
    }

    async fn prepare(&self, ask: &Ask) -> Result<(ChatRequest, Prepared)> {
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
            let (q, usage) = self.condense(&ask.question, &history, ask).await?;
            trace.condensed = true;
            trace.condense_usage = usage;
            q
        } else {
            ask.question.clone()
        };
        trace.timings.condense = t.elapsed();

        let retrieved = self.retrieve(&ask.namespace, &query, ask).await?;
        trace.mode_used = retrieved.mode;
        trace.fallback = retrieved.fallback;
        trace.dense_candidates = retrieved.dense_candidates;
        trace.keyword_candidates = retrieved.keyword_candidates;
        trace.fused_candidates = retrieved.candidates.len();
        trace.timings.embed = retrieved.embed;
        trace.timings.retrieve = retrieved.retrieve;

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
        trace.packed_sources = packed.sources.len();
        trace.dropped_sources = packed.dropped_sources;
        trace.history_messages = packed.history_used;
        trace.history_dropped = packed.history_dropped;
        trace.prompt_tokens = packed.prompt_tokens;
        trace.standalone_query = query;
        tracing::debug!(
            sources = trace.packed_sources,
            dropped = trace.dropped_sources,
            history = trace.history_messages,
            prompt_tokens = trace.prompt_tokens,
            condensed = trace.condensed,
            "prompt packed"
        );

        let mut request = ChatRequest::new(packed.messages).with_max_tokens(ask.budget.answer);
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
    ) -> Result<(String, Option<Usage>)> {
        if is_extractive(self.llm.model_id()) {
            // No model to rewrite with: prepend the previous question, which
            // is what a follow-up usually refers to.
            let previous = history
                .iter()
                .rev()
                .find(|m| m.role == Role::User)
                .map(|m| m.content.as_str())
                .unwrap_or_default();
            return Ok((format!("{previous} {question}").trim().to_owned(), None));
        }
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
        Ok((query, Some(response.usage)))
    }

    /// Builds the answer and records the exchange in the session.
    async fn conclude(&self, p: Prepared, generated: Generated) -> Result<Answer> {
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
        crate::layers::record_ask_trace(&trace);
        Ok(Answer {
            extractive: is_extractive(&generated.model),
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

struct Generated {
    text: String,
    removed: usize,
    usage: Usage,
    finish_reason: FinishReason,
    model: String,
    elapsed: Duration,
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
        let (prepared, chat) = async {
            inner.screen(&ask).await?;
            let (request, prepared) = inner.prepare(&ask).await?;
            let chat = inner.llm.stream(request).await?;
            Ok::<_, Error>((prepared, chat))
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
            started: Instant::now(),
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
    finish: Option<(Usage, FinishReason, String)>,
    done: bool,
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
        if let Some((usage, finish_reason, model)) = st.finish.take() {
            st.done = true;
            let prepared = st.prepared.take()?;
            let generated = Generated {
                text: std::mem::take(&mut st.text),
                removed: st.filter.removed(),
                usage,
                finish_reason,
                model,
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
            })) => {
                st.finish = Some((usage, finish_reason, model));
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
