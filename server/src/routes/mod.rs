//! The router and the handlers, one module per resource.

pub mod admin;
pub mod api_docs;
pub mod ask;
pub mod documents;
pub mod feedback;
pub mod ops;
pub mod sessions;
pub mod ui;

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, extract::DefaultBodyLimit};
use serde::de::DeserializeOwned;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body whose errors are `422` naming the field (or `413` when too
/// large, `415` when not JSON).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                payload_too_large()
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text())
            }
        })?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize::<_, crate::schema::Obj<T>>(de) {
            Ok(v) => Ok(Self(v.0)),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let msg = inner.to_string();
                // A missing field is reported by serde at its parent; name it.
                let field = msg
                    .strip_prefix("missing field `")
                    .and_then(|r| r.split('`').next())
                    .map(|f| {
                        if path == "." {
                            f.to_owned()
                        } else {
                            format!("{path}.{f}")
                        }
                    })
                    .unwrap_or(path);
                if inner.is_syntax() || inner.is_eof() {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "malformed_json",
                        format!("malformed JSON: {msg}"),
                    ));
                }
                Err(ApiError::invalid(field, msg))
            }
        }
    }
}

/// Whether a `Content-Type` is `application/json` (any parameters, any case).
fn is_json_media_type(value: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// Query parameters whose errors are `422` naming the parameter, with the
/// JSON error body (axum's own `Query` answers `400` in plain text).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(Self).map_err(|e| {
            let field = e.path().to_string();
            let msg = e.into_inner().to_string();
            let field = msg
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
                .map_or(field, str::to_owned);
            ApiError::invalid(field, format!("invalid query: {msg}"))
        })
    }
}

/// A path parameter whose errors are `422` naming it, with the JSON error
/// body (axum's own `Path` answers `400` in plain text).
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e| ApiError::invalid("id", e.body_text()))
    }
}

/// `413` with the JSON error body.
pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is larger than the server accepts",
    )
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().to_string();
    let t = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("rag_server_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("rag_server_request_duration_seconds", "method" => method, "route" => route)
        .record(t.elapsed().as_secs_f64());
    resp
}

/// Turns tower-http's plain `413` and `504` into the JSON error body.
async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|v| v != "application/json");
    if !plain {
        return resp;
    }
    match resp.status() {
        StatusCode::PAYLOAD_TOO_LARGE => payload_too_large().into_response(),
        StatusCode::GATEWAY_TIMEOUT => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "the request took longer than the server's deadline",
        )
        .into_response(),
        _ => resp,
    }
}

/// The request's id (`x-request-id`, set by the outermost layer).
pub fn request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Adds the request's id to every JSON error body (`error.request_id`), so
/// a client can quote it and an operator find the detail in the log.
async fn error_request_ids(req: Request, next: Next) -> Response {
    let id = request_id(req.headers());
    let resp = next.run(req).await;
    let Some(id) = id else { return resp };
    let is_json_error = (resp.status().is_client_error() || resp.status().is_server_error())
        && resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_json_media_type);
    if !is_json_error {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // Error bodies are small; a larger one is passed on untouched.
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an error body was too large",
        )
        .into_response();
    };
    let mut v: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => return Response::from_parts(parts, axum::body::Body::from(bytes)),
    };
    if let Some(e) = v
        .get_mut("error")
        .and_then(serde_json::Value::as_object_mut)
    {
        e.insert("request_id".into(), serde_json::Value::String(id));
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = serde_json::to_vec(&v).map_or(bytes, Bytes::from);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// `404` with the JSON error body, for paths no route serves.
async fn no_route() -> ApiError {
    ApiError::not_found("no such route")
}

/// The whole application: `/v1` behind authentication, the operational
/// endpoints outside it, and the middleware stack.
///
/// The per-IP limit reads the peer address, so serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()`, as [`crate::serve`]
/// does.
pub fn app(state: AppState) -> Router {
    let cfg = state.config.clone();
    let v1 = Router::new()
        .route("/documents", post(documents::ingest).get(documents::list))
        .route("/documents/upload", post(documents::upload))
        .route(
            "/documents/{id}",
            get(documents::get_document).delete(documents::delete),
        )
        .route("/ask", post(ask::ask))
        .route("/ask/stream", post(ask::ask_stream))
        .route("/sessions", post(sessions::create).get(sessions::list))
        .route(
            "/sessions/{id}",
            get(sessions::history).delete(sessions::delete),
        )
        .route("/feedback", post(feedback::submit))
        .route(
            "/chat/completions",
            post(crate::openai_compat::chat_completions),
        )
        .route("/models", get(crate::openai_compat::models))
        .route("/info", get(ui::info))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ));

    // Backup and restore: outside the JSON body limit and the request
    // deadline, with their own (`[admin]`).
    let admin = Router::new()
        .route("/v1/admin/export", get(admin::export))
        .route("/v1/admin/import", post(admin::import))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
        .with_state(state.clone())
        .layer(middleware::from_fn(record_metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(cfg.admin.timeout_secs),
        ))
        .layer(middleware::from_fn(json_errors));

    let request_id = HeaderName::from_static("x-request-id");
    let mut router = Router::new()
        .nest("/v1", v1)
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi));
    if cfg.ui.chat {
        router = router
            .route("/", get(ui::index))
            .route("/ui/{asset}", get(ui::asset));
    }
    if cfg.ui.api_docs {
        router = router
            .route("/docs", get(api_docs::swagger))
            .route("/redoc", get(api_docs::redoc))
            .route("/docs/assets/{asset}", get(api_docs::asset));
    }
    let mut router = router
        .fallback(no_route)
        .with_state(state)
        .layer(middleware::from_fn(record_metrics))
        .layer(DefaultBodyLimit::max(cfg.body_limit_bytes))
        .layer(RequestBodyLimitLayer::new(cfg.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(cfg.request_timeout_secs),
        ))
        // Outside the limit and the timeout, so their plain replies get the
        // JSON error body the document declares.
        .layer(middleware::from_fn(json_errors))
        .merge(admin);
    if !cfg.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = cfg
            .cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    HeaderName::from_static("x-api-key"),
                ])
                .expose_headers([request_id.clone(), header::RETRY_AFTER])
                .max_age(Duration::from_secs(600)),
        );
    }
    let security = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'",
        ),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in security {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    router
        .layer(middleware::from_fn(error_request_ids))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                // Path only: never the query string, headers or body.
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id, key = tracing::field::Empty)
            })
            .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}
