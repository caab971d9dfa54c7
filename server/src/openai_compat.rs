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
    pub content: Option<Content>,
}

/// A message's content: a string or OpenAI's array of parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Parts; those with a `text` are joined, others (images…) ignored.
    Parts(#[serde(deserialize_with = "crate::schema::objects")] Vec<ContentPart>),
}

/// One part of a message's content.
#[derive(Debug, Deserialize)]
pub struct ContentPart {
    /// `text`, `image_url`…
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a text part.
    #[serde(default)]
    pub text: Option<String>,
}

/// The subset of OpenAI's chat request the server uses; other fields are
/// accepted and ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// A model `/v1/models` lists; `rag` when absent.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation; the last user message is the question.
    #[serde(deserialize_with = "crate::schema::objects")]
    pub messages: Vec<ChatMessageIn>,
    /// Stream the answer as `chat.completion.chunk` events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    /// Most tokens of the answer, 1 to 4096.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 4096)]
    #[serde(deserialize_with = "crate::schema::int_opt")]
    pub max_tokens: Option<u32>,
}

fn text_of(content: Option<&Content>) -> String {
    match content {
        Some(Content::Text(s)) => s.clone(),
        Some(Content::Parts(parts)) => parts
            .iter()
            .filter_map(|p| p.text.as_deref())
            .collect::<Vec<_>>()
            .join("\n"),
        None => String::new(),
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

/// Answers the last user message over the knowledge base. Errors carry
/// OpenAI's `type` and `param` besides `code`, `message` and `field`; an
/// unknown `model` is `404` `model_not_found`, as OpenAI answers it.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", request_body = ChatCompletionRequest,
    responses((status = 200, description = "an OpenAI chat.completion (with `citations`), or its chunks as server-sent events when `stream` is true", body = Object),
        (status = 404, description = "a model `/v1/models` does not list (`model_not_found`)", body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = ["read"])))]
pub async fn chat_completions(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: axum::http::HeaderMap,
    req: Result<ApiJson<ChatCompletionRequest>, ApiError>,
) -> Response {
    match chat(&state, &p, crate::routes::request_id(&headers), req).await {
        Ok(r) => r,
        Err(e) => e.openai().into_response(),
    }
}

async fn chat(
    state: &AppState,
    p: &Principal,
    request_id: Option<String>,
    req: Result<ApiJson<ChatCompletionRequest>, ApiError>,
) -> ApiResult<Response> {
    let ApiJson(req) = req?;
    if let Some(model) = req
        .model
        .as_deref()
        .filter(|m| !crate::schema::MODELS.contains(m))
    {
        return Err(ApiError::model_not_found(model));
    }
    // The last user message with text (the document says the same).
    let question = req
        .messages
        .iter()
        .rev()
        .filter(|m| m.role == "user")
        .map(|m| text_of(m.content.as_ref()))
        .find(|q| crate::schema::non_blank(q))
        .ok_or_else(|| ApiError::invalid("messages", "give at least one non-empty user message"))?;
    let ask = build_ask(
        state,
        p,
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
        return Ok(Sse::new(chunks(stream, id, created, request_id))
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
    request_id: Option<String>,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let first = chunk(
        &id,
        created,
        &serde_json::json!({"role": "assistant", "content": ""}),
        None,
        None,
    );
    let body = stream.filter_map(move |item| {
        let id = id.clone();
        let request_id = request_id.clone();
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
                    Some(
                        Event::default().data(
                            serde_json::json!({"error": {
                                "code": e.code, "message": e.message,
                                "type": "server_error", "param": null,
                                "request_id": request_id,
                            }})
                            .to_string(),
                        ),
                    )
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
