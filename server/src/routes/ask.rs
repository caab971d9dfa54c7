//! Ask: an answer with citations and per-stage timings, plain or streamed as
//! server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use rag::{Answer, Ask, AskEvent, Filter, SearchMode, Source};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiJson;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

/// Longest question accepted, in characters.
pub const MAX_QUESTION_CHARS: usize = 8_000;

/// `POST /v1/ask` and `/v1/ask/stream`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    /// The question: some text, at most 8000 characters.
    #[schema(min_length = 1, max_length = 8000)]
    pub question: String,
    /// The tenant; defaults to the key's namespace or `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// A session to continue (follow-ups are condensed with its history).
    #[serde(default)]
    pub session_id: Option<uuid::Uuid>,
    /// A filter over `document_id`, `source` and metadata keys (the serde
    /// form of `rag::Filter`, e.g.
    /// `{"eq": {"field": {"metadata": "team"}, "value": "ops"}}`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub filter: Option<serde_json::Value>,
    /// Sources to retrieve, 1 to 100 (default 8).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    #[serde(deserialize_with = "crate::schema::int_opt")]
    pub top_k: Option<usize>,
    /// `dense`, `keyword` or `hybrid` (default).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub mode: Option<SearchMode>,
    /// Sampling temperature, 0 to 2, for a model.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    /// Most tokens of the answer, 1 to 4096 (default 512), for a model.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4096)]
    #[serde(deserialize_with = "crate::schema::int_opt")]
    pub max_tokens: Option<u32>,
}

/// A cited source.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CitationOut {
    /// The marker number, `[n]` in the text.
    pub number: usize,
    /// The chunk.
    pub chunk_id: String,
    /// Its document.
    pub document_id: String,
    /// The document's source.
    pub source: String,
    /// Byte offset where the chunk starts in the document.
    pub start: usize,
    /// Byte offset where it ends.
    pub end: usize,
}

/// A source given to the answerer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SourceOut {
    /// Its number.
    pub number: usize,
    /// The chunk.
    pub chunk_id: String,
    /// Its document.
    pub document_id: String,
    /// The document's source.
    pub source: String,
    /// Byte offset where the chunk starts.
    pub start: usize,
    /// Byte offset where it ends.
    pub end: usize,
    /// The chunk text.
    pub text: String,
    /// The rank score.
    pub score: f32,
    /// The document's metadata.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

/// Milliseconds per stage.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TimingsOut {
    /// Condensing a follow-up.
    pub condense_ms: f64,
    /// Embedding the query.
    pub embed_ms: f64,
    /// Searching and fusing.
    pub retrieve_ms: f64,
    /// Reranking.
    pub rerank_ms: f64,
    /// Packing the prompt.
    pub pack_ms: f64,
    /// Generating.
    pub generate_ms: f64,
    /// Everything.
    pub total_ms: f64,
}

/// Token usage.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageOut {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Completion tokens.
    pub completion_tokens: u32,
}

/// An answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AskResponse {
    /// An id to send feedback about this answer.
    pub answer_id: uuid::Uuid,
    /// The text, with `[n]` markers.
    pub text: String,
    /// The sources cited, in order of first citation.
    pub citations: Vec<CitationOut>,
    /// Every source given to the answerer.
    pub sources: Vec<SourceOut>,
    /// The model (`extractive…` when none).
    pub model: String,
    /// True when sentences were quoted from the sources, no model.
    pub extractive: bool,
    /// The session the exchange was recorded in.
    pub session_id: Option<uuid::Uuid>,
    /// Whether it came from the answer cache.
    pub cached: bool,
    /// Token usage.
    pub usage: UsageOut,
    /// Per-stage timings.
    pub timings: TimingsOut,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A source as returned.
pub fn source_out(s: &Source) -> SourceOut {
    SourceOut {
        number: s.number,
        chunk_id: s.chunk_id.as_str().to_owned(),
        document_id: s.document_id.as_str().to_owned(),
        source: s.source.clone(),
        start: s.byte_range.start,
        end: s.byte_range.end,
        text: s.text.clone(),
        score: s.score,
        metadata: serde_json::Value::Object(s.metadata.clone()),
    }
}

/// An answer as returned.
pub fn answer_out(a: &Answer) -> AskResponse {
    let t = &a.trace.timings;
    AskResponse {
        answer_id: uuid::Uuid::new_v4(),
        text: a.text.clone(),
        citations: a
            .citations
            .iter()
            .map(|c| CitationOut {
                number: c.number,
                chunk_id: c.chunk_id.as_str().to_owned(),
                document_id: c.document_id.as_str().to_owned(),
                source: c.source.clone(),
                start: c.byte_range.start,
                end: c.byte_range.end,
            })
            .collect(),
        sources: a.sources.iter().map(source_out).collect(),
        model: a.model.clone(),
        extractive: a.extractive,
        session_id: a.session,
        cached: a.trace.cached,
        usage: UsageOut {
            prompt_tokens: a.usage.prompt_tokens,
            completion_tokens: a.usage.completion_tokens,
        },
        timings: TimingsOut {
            condense_ms: ms(t.condense),
            embed_ms: ms(t.embed),
            retrieve_ms: ms(t.retrieve),
            rerank_ms: ms(t.rerank),
            pack_ms: ms(t.pack),
            generate_ms: ms(t.generate),
            total_ms: ms(t.total),
        },
    }
}

/// Validates a request into an [`Ask`] in the caller's namespace.
pub async fn build_ask(state: &AppState, p: &Principal, req: AskRequest) -> ApiResult<Ask> {
    p.require(Scope::Read)?;
    let ns = p.namespace(req.namespace.as_deref())?;
    if !crate::schema::non_blank(&req.question) {
        return Err(ApiError::invalid("question", "question must not be empty"));
    }
    if req.question.chars().count() > MAX_QUESTION_CHARS {
        return Err(ApiError::invalid(
            "question",
            format!("question must be at most {MAX_QUESTION_CHARS} characters"),
        ));
    }
    state.limits.check_ask(&p.name)?;
    let mut ask = Ask::new(req.question)
        .namespace(ns.clone())
        .mode(req.mode.unwrap_or(SearchMode::Hybrid));
    if let Some(k) = state.config.ask.top_k {
        ask = ask.top_k(k);
    }
    if let Some(k) = req.top_k {
        if !(1..=100).contains(&k) {
            return Err(ApiError::invalid("top_k", "top_k must be 1 to 100"));
        }
        ask = ask.top_k(k);
    }
    if let Some(t) = req.temperature {
        if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
            return Err(ApiError::invalid(
                "temperature",
                "temperature must be 0 to 2",
            ));
        }
        #[allow(clippy::cast_possible_truncation)] // 0 to 2
        let t = t as f32;
        ask = ask.temperature(t);
    }
    if let Some(n) = req.max_tokens {
        if !(1..=4096).contains(&n) {
            return Err(ApiError::invalid(
                "max_tokens",
                "max_tokens must be 1 to 4096",
            ));
        }
        ask = ask.answer_tokens(n);
    }
    if let Some(f) = req.filter {
        let f: Filter = serde_json::from_value(f)
            .map_err(|e| ApiError::invalid("filter", format!("malformed filter: {e}")))?;
        if let Some(k) = crate::schema::bad_filter_key(&f) {
            return Err(ApiError::invalid(
                "filter",
                format!(
                    "metadata key {k:?}: keys are 1 to 256 bytes without control characters (up to 64 characters of any kind, or 256 of ASCII)"
                ),
            ));
        }
        ask = ask.filter(f);
    }
    if let Some(id) = req.session_id {
        // A session of another tenant is reported as missing.
        let sessions = state
            .rag
            .sessions()
            .ok_or_else(|| ApiError::not_found("no such session"))?;
        match sessions.get(id).await {
            Ok(s) if s.namespace == ns && p.may_access(&s.namespace) => {
                state.limits.check_session(id)?;
                ask = ask.session(id);
            }
            Ok(_) | Err(rag::Error::NotFound { .. }) => {
                return Err(ApiError::not_found("no such session").with_field("session_id"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ask)
}

/// Answers a question with citations and per-stage timings.
#[utoipa::path(post, path = "/v1/ask", tag = "ask", request_body = AskRequest,
    responses((status = 200, body = AskResponse), (status = 422, body = ErrorBody),
        (status = 404, description = "no such session (`session_id`)", body = ErrorBody),
        (status = 429, body = ErrorBody)),
    security(("api_key" = ["read"])))]
pub async fn ask(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<AskRequest>,
) -> ApiResult<Json<AskResponse>> {
    let ask = build_ask(&state, &p, req).await?;
    let answer = state.rag.ask(ask).await?;
    Ok(Json(answer_out(&answer)))
}

/// The `delta` event's data.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeltaOut {
    /// More answer text.
    pub text: String,
}

/// Maps the pipeline's events to SSE events: `sources`, `delta`…, `done`
/// (or `error`).
pub fn sse_events(
    stream: rag::AskStream,
    request_id: Option<String>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    stream.map(move |item| {
        let event = match item {
            Ok(AskEvent::Sources(s)) => Event::default()
                .event("sources")
                .json_data(s.iter().map(source_out).collect::<Vec<_>>()),
            Ok(AskEvent::Delta(text)) => {
                Event::default().event("delta").json_data(DeltaOut { text })
            }
            Ok(AskEvent::Done(answer)) => Event::default()
                .event("done")
                .json_data(answer_out(&answer)),
            Err(e) => {
                let e = ApiError::from(e);
                let mut detail = crate::error::ErrorDetail::new(e.code, e.message);
                detail.request_id.clone_from(&request_id);
                Event::default().event("error").json_data(detail)
            }
        };
        Ok(event.unwrap_or_else(|_| {
            Event::default()
                .event("error")
                .data(r#"{"code":"internal","message":"serialization failed"}"#)
        }))
    })
}

/// Answers a question as server-sent events: `sources` (the sources), then
/// `delta` events (`{"text"}`), then `done` (the full answer, as `/v1/ask`
/// returns it); `error` if generation fails midway.
#[utoipa::path(post, path = "/v1/ask/stream", tag = "ask", request_body = AskRequest,
    responses((status = 200, description = "server-sent events: `sources`, `delta`…, then `done` (or `error`); each event's `data` is JSON (`AskStreamEvent`)", content_type = "text/event-stream", body = String),
        (status = 404, description = "no such session (`session_id`)", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("api_key" = ["read"])))]
pub async fn ask_stream(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<AskRequest>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let ask = build_ask(&state, &p, req).await?;
    let stream = state.rag.ask_stream(ask).await?;
    Ok(Sse::new(sse_events(stream, super::request_id(&headers))).keep_alive(KeepAlive::default()))
}
