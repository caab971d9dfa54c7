//! Liveness, readiness, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::state::AppState;

/// `/health` and `/ready`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Status {
    /// `ok` or `unavailable`.
    pub status: String,
    /// Each dependency's state (`ok` or why not), for `/ready` with an
    /// `admin` key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

/// One readiness check.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// `store`, `sessions` or `llm`.
    pub name: String,
    /// `ok` or the error.
    pub status: String,
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, body = Status)))]
pub async fn health() -> Json<Status> {
    Json(Status {
        status: "ok".into(),
        checks: Vec::new(),
    })
}

/// How long `/ready` waits for each of the store and the session store.
const READY_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A readiness check that fails after [`READY_CHECK_TIMEOUT`]: a backend
/// that does not answer (a database behind a dead network, a pool waiting
/// for a connection) fails the probe quickly instead of outlasting the
/// prober's own timeout.
async fn bounded(
    check: impl std::future::Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(READY_CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within {} s",
                READY_CHECK_TIMEOUT.as_secs()
            ))
        })
}

/// Readiness: the store, the session store and the LLM are reachable.
/// Everyone gets `ok` or `unavailable`; each check's state (and why it
/// fails) is shown only to a request with an `admin` key, and logged.
#[utoipa::path(get, path = "/ready", tag = "ops",
    responses((status = 200, body = Status), (status = 503, body = Status)))]
pub async fn ready(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> (StatusCode, Json<Status>) {
    let mut checks = Vec::new();
    let mut ok = true;
    let mut push = |name: &str, r: Result<(), String>| {
        ok &= r.is_ok();
        checks.push(Check {
            name: name.into(),
            status: r.err().unwrap_or_else(|| "ok".into()),
        });
    };
    push(
        "store",
        bounded(async { state.rag.store().health().await.map_err(|e| e.to_string()) }).await,
    );
    let sessions = match state.rag.sessions() {
        Some(s) => {
            bounded(async move {
                s.list(&rag::Namespace::default(), 1)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
        }
        None => Err("no session store".into()),
    };
    push("sessions", sessions);
    let llm = match &*state.llm_kind {
        // In-process: loaded at startup, nothing to reach.
        "extractive" | "local" => Ok(()),
        _ => {
            let mut last = state.llm_probe.lock().await;
            match &*last {
                Some((at, r)) if at.elapsed() < std::time::Duration::from_secs(30) => r.clone(),
                _ => {
                    // A one-token completion: the cheapest call every
                    // OpenAI-compatible API serves.
                    let req =
                        rag::ChatRequest::new(vec![rag::Message::user("ping")]).with_max_tokens(1);
                    let r = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        state.rag.llm().complete(req),
                    )
                    .await
                    .map_err(|_| "timed out".to_owned())
                    .and_then(|r| r.map(|_| ()).map_err(|e| e.to_string()));
                    *last = Some((std::time::Instant::now(), r.clone()));
                    r
                }
            }
        }
    };
    push("llm", llm);
    for c in checks.iter().filter(|c| c.status != "ok") {
        tracing::warn!(check = %c.name, error = %c.status, "not ready");
    }
    if !state.keys.admits_admin(&headers) {
        checks.clear();
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Status {
            status: if ok { "ok" } else { "unavailable" }.into(),
            checks,
        }),
    )
}

/// Prometheus metrics, text format.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document, generated from the handlers and their types.
#[derive(OpenApi)]
#[openapi(
    info(title = "rag server", description = "Retrieval-augmented generation over HTTP."),
    paths(
        health, ready, metrics, openapi,
        super::documents::ingest, super::documents::upload, super::documents::list,
        super::documents::get_document, super::documents::delete,
        super::ask::ask, super::ask::ask_stream,
        super::sessions::create, super::sessions::list, super::sessions::history, super::sessions::delete,
        super::feedback::submit,
        crate::openai_compat::chat_completions, crate::openai_compat::models,
        super::admin::export, super::admin::import,
        super::ui::info, super::ui::index, super::ui::asset,
        super::api_docs::swagger, super::api_docs::redoc, super::api_docs::asset,
    ),
    components(schemas(crate::error::ErrorBody, super::ask::DeltaOut)),
    modifiers(&Security)
)]
pub struct ApiDoc;

/// The OpenAPI 3 document of this server: [`ApiDoc`] completed by
/// [`crate::schema::document`] (without API keys, the server is open and
/// the document declares no security).
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    use std::sync::OnceLock;
    static KEYED: OnceLock<serde_json::Value> = OnceLock::new();
    static OPEN: OnceLock<serde_json::Value> = OnceLock::new();
    let keys = !state.keys.is_empty();
    let doc = if keys { &KEYED } else { &OPEN };
    let mut doc = doc.get_or_init(|| crate::schema::document(keys)).clone();
    if !state.config.ui.chat {
        // The pages are not served: the document does not offer them.
        if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
            paths.remove("/");
            paths.remove("/ui/{asset}");
        }
    }
    if !state.config.ui.api_docs
        && let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut())
    {
        for p in super::api_docs::PATHS {
            paths.remove(p);
        }
    }
    Json(doc)
}
