//! Feedback on an answer.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiJson;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

/// Feedback kept in memory (most recent).
pub const MAX_FEEDBACK: usize = 10_000;

/// `POST /v1/feedback`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The `answer_id` of an answer.
    pub answer_id: uuid::Uuid,
    /// `1` (helpful) or `-1` (not helpful).
    #[serde(deserialize_with = "crate::schema::int")]
    pub rating: i8,
    /// A comment, at most 2000 characters.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

/// Stored feedback.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedbackRecord {
    /// The answer.
    pub answer_id: uuid::Uuid,
    /// `1` or `-1`.
    pub rating: i8,
    /// The comment.
    pub comment: Option<String>,
    /// The key that sent it.
    pub key: String,
}

/// Records feedback on an answer.
#[utoipa::path(post, path = "/v1/feedback", tag = "feedback", request_body = FeedbackRequest,
    responses((status = 202, body = FeedbackRecord), (status = 422, body = ErrorBody)),
    security(("api_key" = ["read"])))]
pub async fn submit(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<FeedbackRequest>,
) -> ApiResult<(StatusCode, Json<FeedbackRecord>)> {
    p.require(Scope::Read)?;
    if req.rating != 1 && req.rating != -1 {
        return Err(ApiError::invalid("rating", "rating must be 1 or -1"));
    }
    if req
        .comment
        .as_ref()
        .is_some_and(|c| c.chars().count() > 2000)
    {
        return Err(ApiError::invalid(
            "comment",
            "comment must be at most 2000 characters",
        ));
    }
    let record = FeedbackRecord {
        answer_id: req.answer_id,
        rating: req.rating,
        comment: req.comment,
        key: p.name.to_string(),
    };
    metrics::counter!("rag_server_feedback_total", "rating" => if req.rating > 0 { "up" } else { "down" })
        .increment(1);
    let mut all = state
        .feedback
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if all.len() >= MAX_FEEDBACK {
        all.remove(0);
    }
    all.push(record.clone());
    Ok((StatusCode::ACCEPTED, Json(record)))
}
