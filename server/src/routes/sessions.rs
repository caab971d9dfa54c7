//! Conversation sessions: create, history, delete.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rag::{NewSession, SessionStore};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiJson, ApiPath, ApiQuery};
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

/// `POST /v1/sessions`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The tenant; defaults to the key's namespace or `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Free-form data (a title, a user id).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Option<serde_json::Value>,
}

/// A session's header.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionOut {
    /// The id, for `session_id` in `/v1/ask`.
    pub id: uuid::Uuid,
    /// The tenant.
    pub namespace: String,
    /// Free-form data (`{}` when none was given).
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// Messages stored.
    pub message_count: usize,
    /// Creation time (RFC 3339).
    pub created_at: String,
}

/// One message of a history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageOut {
    /// `user`, `assistant` or `system`.
    pub role: String,
    /// The text.
    pub content: String,
    /// When it was stored (RFC 3339).
    pub at: String,
}

/// A session and its messages.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionHistory {
    /// The session.
    pub session: SessionOut,
    /// Its messages, oldest first.
    pub messages: Vec<MessageOut>,
}

fn session_out(s: &rag::Session) -> SessionOut {
    SessionOut {
        id: s.id,
        namespace: s.namespace.as_str().to_owned(),
        // A session created without metadata has none: `{}`, never `null`.
        metadata: match &s.metadata {
            serde_json::Value::Null => serde_json::Value::Object(serde_json::Map::new()),
            m => m.clone(),
        },
        message_count: s.message_count,
        created_at: s.created_at.to_rfc3339(),
    }
}

fn store(state: &AppState) -> ApiResult<&std::sync::Arc<dyn SessionStore>> {
    state
        .rag
        .sessions()
        .ok_or_else(|| ApiError::not_found("sessions are not configured"))
}

/// Creates a session.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = CreateSession,
    responses((status = 201, body = SessionOut), (status = 422, body = ErrorBody),
        (status = 404, description = "sessions are not configured", body = ErrorBody),
        (status = 429, description = "too many live sessions in the namespace (`session_limit`) or requests", body = ErrorBody)),
    security(("api_key" = ["read"])))]
pub async fn create(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<CreateSession>,
) -> ApiResult<(StatusCode, Json<SessionOut>)> {
    p.require(Scope::Read)?;
    let ns = p.namespace(req.namespace.as_deref())?;
    let mut new = NewSession::new(ns);
    if let Some(m) = req.metadata {
        if !m.is_object() {
            return Err(ApiError::invalid(
                "metadata",
                "metadata must be a JSON object",
            ));
        }
        new = new.with_metadata(m);
    }
    let cap = state.config.sessions.max_per_namespace;
    // Count and create under one lock (one process; several replicas
    // sharing a session store can each admit one more).
    let _guard = if cap > 0 {
        let guard = state.session_creation.lock().await;
        if store(&state)?.list(&new.namespace, cap).await?.len() >= cap {
            return Err(ApiError::session_limit(cap));
        }
        Some(guard)
    } else {
        None
    };
    let s = state.rag.create_session(new).await?;
    Ok((StatusCode::CREATED, Json(session_out(&s))))
}

/// Which sessions to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SessionListQuery {
    /// The tenant; defaults to the key's namespace or `default`.
    pub namespace: Option<String>,
    /// How many, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::schema::int_opt")]
    pub limit: Option<usize>,
}

/// A namespace's sessions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    /// Most recently updated first.
    pub sessions: Vec<SessionOut>,
}

/// Lists a namespace's sessions, most recently updated first.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", operation_id = "list_sessions",
    params(SessionListQuery),
    responses((status = 200, body = SessionList), (status = 422, body = ErrorBody),
        (status = 404, description = "sessions are not configured", body = ErrorBody)),
    security(("api_key" = ["read"])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<SessionListQuery>,
) -> ApiResult<Json<SessionList>> {
    p.require(Scope::Read)?;
    let ns = p.namespace(q.namespace.as_deref())?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit must be 1 to 1000"));
    }
    let sessions = store(&state)?.list(&ns, limit).await?;
    Ok(Json(SessionList {
        sessions: sessions.iter().map(session_out).collect(),
    }))
}

async fn owned(state: &AppState, p: &Principal, id: uuid::Uuid) -> ApiResult<rag::Session> {
    match store(state)?.get(id).await {
        Ok(s) if p.may_access(&s.namespace) => Ok(s),
        Ok(_) | Err(rag::Error::NotFound { .. }) => Err(ApiError::not_found("no such session")),
        Err(e) => Err(e.into()),
    }
}

/// A session's history.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions", operation_id = "get_session",
    params(("id" = uuid::Uuid, Path, description = "session id")),
    responses((status = 200, body = SessionHistory), (status = 404, body = ErrorBody)),
    security(("api_key" = ["read"])))]
pub async fn history(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<Json<SessionHistory>> {
    p.require(Scope::Read)?;
    let s = owned(&state, &p, id).await?;
    let messages = store(&state)?.history(id, usize::MAX).await?;
    Ok(Json(SessionHistory {
        session: session_out(&s),
        messages: messages
            .into_iter()
            .map(|m| MessageOut {
                role: serde_json::to_value(m.message.role)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                content: m.message.content,
                at: m.at.to_rfc3339(),
            })
            .collect(),
    }))
}

/// Deletes a session.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions", operation_id = "delete_session",
    params(("id" = uuid::Uuid, Path, description = "session id")),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)),
    security(("api_key" = ["read"])))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> ApiResult<StatusCode> {
    p.require(Scope::Read)?;
    owned(&state, &p, id).await?;
    store(&state)?.delete(id).await?;
    Ok(StatusCode::NO_CONTENT)
}
