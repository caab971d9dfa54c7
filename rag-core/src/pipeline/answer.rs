//! What an ask returns: [`Answer`] with its [`Source`]s, [`Citation`]s and
//! [`Trace`], or a stream of [`AskEvent`]s.

use std::ops::Range;
use std::time::Duration;

use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::chat::{FinishReason, Usage};
use crate::error::Result;
use crate::search::{ScoredChunk, SearchMode};
use crate::session::SessionId;
use crate::types::{ChunkId, DocumentId, Metadata};

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
    /// Results of the dense search; for a hybrid search the store fused,
    /// the fused results with a dense score.
    pub dense_candidates: usize,
    /// Results of the keyword search; for a hybrid search the store fused,
    /// the fused results with a keyword score.
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
    /// The condensing call failed (the error is logged) and the follow-up
    /// was rewritten without a model: the previous question, then it.
    #[serde(default)]
    pub condense_failed: bool,
    /// Whether the answer came from the answer cache (its timings are the
    /// original ones).
    pub cached: bool,
    /// Per-stage timings.
    pub timings: StageTimings,
}

impl Trace {
    /// Records the per-stage timings of an answered question as
    /// `rag_ask_stage_seconds{stage}`.
    pub(crate) fn record_metrics(&self) {
        let t = &self.timings;
        for (stage, d) in [
            ("condense", t.condense),
            ("embed", t.embed),
            ("retrieve", t.retrieve),
            ("rerank", t.rerank),
            ("pack", t.pack),
            ("generate", t.generate),
            ("total", t.total),
        ] {
            metrics::histogram!("rag_ask_stage_seconds", "stage" => stage).record(d.as_secs_f64());
        }
    }
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
    /// True when no language model wrote this: the [`ExtractiveAnswerer`](crate::ExtractiveAnswerer)
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
