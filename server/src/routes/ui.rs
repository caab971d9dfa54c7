//! The chat page at `/` and its assets under `/ui/`, compiled into the
//! binary (no CDN, nothing fetched at run time), and `GET /v1/info`, which
//! tells a client (the page among them) what this server offers it.

use std::sync::LazyLock;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::ApiPath;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The page's policy: its own scripts, styles, images and API only; no
/// inline script or style, no frames, no form posts elsewhere.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../ui/index.html"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/app.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../ui/icon.svg"),
    },
];

/// The names `/ui/{asset}` serves.
pub fn asset_names() -> Vec<&'static str> {
    ASSETS.iter().map(|a| a.name).collect()
}

/// Each asset's entity tag: a digest of its bytes, computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.body))[..20]))
        .collect()
});

fn serve(i: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let etag = &ETAGS[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = resp.headers_mut();
    // Revalidated on each load (a cheap 304), so an upgraded server never
    // runs a stale script against a newer API.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    resp
}

/// The chat page: ask with streamed answers and citations, sessions,
/// document upload (when `ui.chat` is on).
#[utoipa::path(get, path = "/", tag = "ui",
    responses((status = 200, description = "the chat page", content_type = "text/html", body = String),
        (status = 304, description = "not modified (`If-None-Match`)")))]
pub async fn index(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

/// One of the chat page's assets: `app.js`, `app.css` or `icon.svg`.
#[utoipa::path(get, path = "/ui/{asset}", tag = "ui",
    params(("asset" = String, Path, description = "`app.js`, `app.css`, `icon.svg` or `index.html`")),
    responses((status = 200, description = "the asset", content(
            (String = "text/javascript"), (String = "text/css"), (String = "image/svg+xml"), (String = "text/html"))),
        (status = 304, description = "not modified (`If-None-Match`)"),
        (status = 404, body = ErrorBody)))]
pub async fn asset(ApiPath(name): ApiPath<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().position(|a| a.name == name) {
        Some(i) => serve(i, &headers),
        None => ApiError::not_found("no such asset").into_response(),
    }
}

/// What the upload endpoint accepts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadLimits {
    /// Largest file, in bytes (`413 file_too_large` beyond).
    pub max_file_bytes: usize,
    /// Largest request body, in bytes (`413 payload_too_large` beyond).
    pub max_body_bytes: usize,
    /// Accepted file extensions, lower case, without the dot.
    pub extensions: Vec<String>,
}

/// `GET /v1/info`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServerInfo {
    /// The server's version.
    pub version: String,
    /// Whether requests need an API key.
    pub auth: bool,
    /// The calling key's name (`anonymous` on an open server).
    pub key: String,
    /// The namespace requests default to: the key's own, or `default`.
    pub namespace: String,
    /// Whether the key is bound to that namespace alone.
    pub namespace_bound: bool,
    /// May the key ingest and delete documents.
    pub can_ingest: bool,
    /// Whether sessions are configured (`/v1/sessions`).
    pub sessions: bool,
    /// The answerer: `extractive`, `local`, `openai` or `groq`.
    pub answerer: String,
    /// The upload endpoint's limits.
    pub upload: UploadLimits,
}

/// What this server offers the caller: its limits, the key's namespace and
/// scopes, whether sessions are on.
#[utoipa::path(get, path = "/v1/info", tag = "ops",
    responses((status = 200, body = ServerInfo), (status = 401, body = ErrorBody)),
    security(("api_key" = ["read"])))]
pub async fn info(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<ServerInfo>, ApiError> {
    p.require(Scope::Read)?;
    let ns = p.namespace(None)?;
    let cfg = &state.config;
    Ok(Json(ServerInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        auth: !state.keys.is_empty(),
        key: p.name.to_string(),
        namespace: ns.as_str().to_owned(),
        namespace_bound: p.bound_namespace().is_some(),
        can_ingest: p.require(Scope::Ingest).is_ok(),
        sessions: state.rag.sessions().is_some(),
        answerer: state.llm_kind.to_string(),
        upload: UploadLimits {
            max_file_bytes: cfg.upload_max_file_bytes,
            max_body_bytes: cfg.body_limit_bytes,
            extensions: cfg.upload_extensions.clone(),
        },
    }))
}
