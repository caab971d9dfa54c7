//! The JSON error body every endpoint returns, and the mapping from
//! [`rag::Error`] to HTTP statuses.

use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An error response: `{"error": {"code", "message", "field"}}`.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`invalid_input`, `unauthorized`…).
    pub code: &'static str,
    /// A human-readable message. Never contains keys or document text.
    pub message: String,
    /// The request field at fault, for validation errors.
    pub field: Option<String>,
    /// Seconds to wait before retrying, for `429` and `503`.
    pub retry_after: Option<Duration>,
    /// Also write OpenAI's `type` and `param` (for `/v1/chat/completions`,
    /// whose clients read them).
    pub openai: bool,
}

/// The body of an error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code.
    pub code: String,
    /// A human-readable message.
    pub message: String,
    /// The request field at fault, for `422`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// OpenAI's error type (`invalid_request_error`, `rate_limit_error`,
    /// `server_error`…), on `/v1/chat/completions` only.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// OpenAI's name for `field` (`null` when no field is at fault), on
    /// `/v1/chat/completions` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub param: Option<Option<String>>,
    /// The request's id (its `x-request-id`), to quote when reporting the
    /// error: the server's log has the detail under it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ErrorDetail {
    /// The detail of an error (without OpenAI's fields).
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            field: None,
            kind: None,
            param: None,
            request_id: None,
        }
    }
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
            openai: false,
        }
    }

    /// `404` `model_not_found`, as OpenAI answers an unknown model.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("The model `{model}` does not exist; GET /v1/models lists the models served"),
        )
        .with_field("model")
        .openai()
    }

    /// Writes OpenAI's `type` and `param` too.
    #[must_use]
    pub fn openai(mut self) -> Self {
        self.openai = true;
        self
    }

    /// `422 Unprocessable Entity` naming the field at fault.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", message);
        e.field = Some(field.into());
        e
    }

    /// `401 Unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// `403 Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// `404 Not Found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// `429 Too Many Requests` with `Retry-After`.
    pub fn rate_limited(retry_after: Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests",
        );
        e.retry_after = Some(retry_after);
        e
    }

    /// `429 Too Many Requests`: the namespace holds `cap` live sessions.
    pub fn session_limit(cap: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "session_limit",
            format!(
                "this namespace has {cap} live sessions, the most allowed: delete one or wait \
                 for one to expire"
            ),
        )
    }

    /// Sets the field at fault.
    #[must_use]
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// An error and its sources, `: `-separated, for the log.
struct Chain<'a>(&'a rag::Error);

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = std::error::Error::source(self.0);
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// The error that decided the outcome: the last attempt's, through retry
/// layers.
fn innermost(e: &rag::Error) -> &rag::Error {
    match e {
        rag::Error::RetriesExhausted { last, .. } => innermost(last),
        e => e,
    }
}

impl From<rag::Error> for ApiError {
    /// Errors about the request itself keep their message; errors of the
    /// backends get a stable code and a plain message, and their detail
    /// (upstream URLs, hosts, SQL, paths, library error chains) goes to the
    /// log only, under the request's id.
    fn from(e: rag::Error) -> Self {
        use rag::Error as E;
        let (status, code, message): (StatusCode, &'static str, Option<&str>) = match innermost(&e)
        {
            E::InvalidInput { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input", None),
            E::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", None),
            E::Unsupported { .. } => (StatusCode::NOT_IMPLEMENTED, "unsupported", None),
            E::ContextLengthExceeded { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "context_length_exceeded",
                None,
            ),
            E::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "upstream_rate_limited",
                Some("a provider the server depends on is limiting its requests; retry later"),
            ),
            E::Unauthorized { .. } => (
                StatusCode::BAD_GATEWAY,
                "upstream_unauthorized",
                Some(
                    "a provider refused the server's credentials; the server's operator must fix its configuration",
                ),
            ),
            E::Timeout { .. } => (
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                Some("a backend the server depends on did not answer in time; retry later"),
            ),
            E::CircuitOpen { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "circuit_open",
                Some(
                    "a backend the server depends on is failing and is rested for a while; retry later",
                ),
            ),
            E::Overloaded { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "model_busy",
                Some("the model is busy with other questions; retry later"),
            ),
            E::Corrupt { .. } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                Some("the server found stored data it cannot read; its operator has the detail"),
            ),
            E::Cancelled(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "cancelled",
                Some("the request was cancelled (the server is shutting down?); retry"),
            ),
            _ => (
                StatusCode::BAD_GATEWAY,
                "backend_error",
                Some("a backend the server depends on failed; retry later"),
            ),
        };
        let mut out = Self::new(
            status,
            code,
            message.map_or_else(|| e.to_string(), str::to_owned),
        );
        // The wait a wrapped error (retries exhausted on an open breaker,
        // say) carries counts too.
        out.retry_after = e.retry_after().or_else(|| innermost(&e).retry_after());
        if message.is_some() {
            // The span of the request carries its id.
            tracing::warn!(kind = e.kind(), code, status = status.as_u16(), error = %Chain(&e), "request failed");
        }
        out
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (kind, param) = if self.openai {
            let kind = match self.status.as_u16() {
                401 => "authentication_error",
                403 => "permission_error",
                429 => "rate_limit_error",
                500.. => "server_error",
                _ => "invalid_request_error",
            };
            (Some(kind.to_owned()), Some(self.field.clone()))
        } else {
            (None, None)
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
                field: self.field,
                kind,
                param,
                request_id: None,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(d) = self.retry_after {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// The result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
