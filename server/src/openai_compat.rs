//! An OpenAI-compatible surface: `POST /v1/chat/completions` (plain and
//! `stream: true`) and `GET /v1/models`, so any OpenAI client can chat with
//! the knowledge base. The last user message is the question; the answer's
//! citations come back in a `citations` field (in the last chunk when
//! streaming), which OpenAI clients ignore.

use std::convert::Infallible;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use rag::AskEvent;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::routes::ApiJson;
use crate::routes::ask::{AskRequest, CitationOut, answer_out, build_ask};
use crate::state::AppState;

/// The model name this server answers as.
pub const MODEL: &str = "rag";

/// A chat message (text content, or an array of text parts).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessageIn {
    /// `system`, `user`, `assistant`…
    pub role: String,
    /// The text, or `[{"type": "text", "text": …}]`.
    #[schema(value_type = Object)]
    #[serde(default)]
    pub content: serde_json::Value,
}

/// The subset of OpenAI's chat request the server uses; other fields are
/// accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// Any model name; answered as `rag`.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation; the last user message is the question.
    pub messages: Vec<ChatMessageIn>,
    /// Stream the answer as `chat.completion.chunk` events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Most tokens of the answer, 1 to 4096.
    #[serde(default)]
    pub max_tokens: Option<u32>,
}

fn text_of(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn completion_id() -> String {
    format!("chatcmpl-{}", uuid::Uuid::new_v4().simple())
}

fn finish(r: rag::FinishReason) -> &'static str {
    match r {
        rag::FinishReason::Length => "length",
        rag::FinishReason::ContentFilter => "content_filter",
        _ => "stop",
    }
}

/// Answers the last user message over the knowledge base.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = ChatCompletionRequest,
    responses((status = 200, description = "an OpenAI chat.completion (with `citations`), or its chunks as SSE when `stream` is true", body = Object),
        (status = 422, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> ApiResult<Response> {
    let question = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| text_of(&m.content))
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("messages", "give at least one non-empty user message"))?;
    let ask = build_ask(
        &state,
        &p,
        AskRequest {
            question,
            namespace: None,
            session_id: None,
            filter: None,
            top_k: None,
            mode: None,
            temperature: req.temperature,
            max_tokens: req.max_tokens,
        },
    )
    .await?;
    let id = completion_id();
    let created = now();
    if req.stream.unwrap_or(false) {
        let stream = state.rag.ask_stream(ask).await?;
        return Ok(Sse::new(chunks(stream, id, created))
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let answer = state.rag.ask(ask).await?;
    let out = answer_out(&answer);
    Ok(Json(serde_json::json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": MODEL,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": answer.text },
            "finish_reason": finish(answer.finish_reason),
            "logprobs": null
        }],
        "usage": {
            "prompt_tokens": answer.usage.prompt_tokens,
            "completion_tokens": answer.usage.completion_tokens,
            "total_tokens": answer.usage.total_tokens()
        },
        "citations": out.citations,
    }))
    .into_response())
}

fn chunk(
    id: &str,
    created: i64,
    delta: &serde_json::Value,
    finish: Option<&str>,
    citations: Option<&[CitationOut]>,
) -> Event {
    let mut v = serde_json::json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL,
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish, "logprobs": null }],
    });
    if let Some(c) = citations {
        v["citations"] = serde_json::to_value(c).unwrap_or_default();
    }
    Event::default().data(v.to_string())
}

fn chunks(
    stream: rag::AskStream,
    id: String,
    created: i64,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let first = chunk(
        &id,
        created,
        &serde_json::json!({"role": "assistant", "content": ""}),
        None,
        None,
    );
    let body =
        stream.filter_map(move |item| {
            let id = id.clone();
            async move {
                match item {
                    Ok(AskEvent::Sources(_)) => None,
                    Ok(AskEvent::Delta(text)) => Some(chunk(
                        &id,
                        created,
                        &serde_json::json!({"content": text}),
                        None,
                        None,
                    )),
                    Ok(AskEvent::Done(answer)) => {
                        let out = answer_out(&answer);
                        Some(chunk(
                            &id,
                            created,
                            &serde_json::json!({}),
                            Some(finish(answer.finish_reason)),
                            Some(&out.citations),
                        ))
                    }
                    Err(e) => {
                        let e = ApiError::from(e);
                        Some(Event::default().data(
                        serde_json::json!({"error": {"code": e.code, "message": e.message}})
                            .to_string(),
                    ))
                    }
                }
            }
        });
    futures::stream::once(async move { first })
        .chain(body)
        .chain(futures::stream::once(async {
            Event::default().data("[DONE]")
        }))
        .map(Ok)
}

/// The model list OpenAI clients ask for.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// `list`.
    pub object: String,
    /// The one model.
    pub data: Vec<ModelOut>,
}

/// A model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelOut {
    /// `rag`.
    pub id: String,
    /// `model`.
    pub object: String,
    /// Unix time.
    pub created: i64,
    /// Who serves it.
    pub owned_by: String,
}

/// Lists the one model, `rag`.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, body = ModelList)), security(("bearer" = ["read"])))]
pub async fn models(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> ApiResult<Json<ModelList>> {
    p.require(crate::auth::Scope::Read)?;
    Ok(Json(ModelList {
        object: "list".into(),
        data: vec![ModelOut {
            id: MODEL.into(),
            object: "model".into(),
            created: 0,
            owned_by: format!("rag ({})", state.llm_kind),
        }],
    }))
}
