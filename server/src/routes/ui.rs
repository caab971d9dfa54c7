//! The chat page at `/` and its assets under `/ui/`, compiled into the
//! binary (no CDN, nothing fetched at run time), and `GET /v1/info`, which
//! tells a client (the page among them) what this server offers it.

use std::io::Read;
use std::sync::OnceLock;

use axum::body::Bytes;

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

/// A file compiled into the binary, served with an entity tag.
pub(crate) struct Asset {
    pub(crate) name: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) body: &'static [u8],
    /// `body` is gzip-compressed: sent as is to a client that accepts
    /// gzip, decompressed once for one that does not.
    pub(crate) gzip: bool,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../ui/index.html"),
        gzip: false,
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../ui/app.js"),
        gzip: false,
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../ui/app.css"),
        gzip: false,
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../ui/icon.svg"),
        gzip: false,
    },
];

/// The names `/ui/{asset}` serves.
pub fn asset_names() -> Vec<&'static str> {
    ASSETS.iter().map(|a| a.name).collect()
}

/// A set of assets with their entity tags (a digest of their bytes,
/// computed once) and, for compressed ones, their plain bytes (decompressed
/// on first need).
pub(crate) struct Assets {
    list: &'static [Asset],
    etags: OnceLock<Vec<String>>,
    plain: OnceLock<Vec<OnceLock<Bytes>>>,
}

impl Assets {
    pub(crate) const fn new(list: &'static [Asset]) -> Self {
        Self {
            list,
            etags: OnceLock::new(),
            plain: OnceLock::new(),
        }
    }

    /// The index of the asset called `name`.
    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|a| a.name == name)
    }

    /// The asset at `i`, as stored.
    #[cfg(test)]
    pub(crate) fn get(&self, i: usize) -> &'static Asset {
        &self.list[i]
    }

    /// Asset `i`'s bytes as the client gets them without compression.
    pub(crate) fn plain(&self, i: usize) -> Bytes {
        let asset = &self.list[i];
        if !asset.gzip {
            return Bytes::from_static(asset.body);
        }
        let cells = self
            .plain
            .get_or_init(|| self.list.iter().map(|_| OnceLock::new()).collect());
        cells[i]
            .get_or_init(|| {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(asset.body)
                    .read_to_end(&mut out)
                    .expect("a vendored asset is valid gzip (tested)");
                Bytes::from(out)
            })
            .clone()
    }

    /// Serves asset `i` under the page policy `csp`: compressed to a client
    /// that accepts gzip, `304` when the client's copy is current.
    pub(crate) fn serve(&self, i: usize, headers: &HeaderMap, csp: &'static str) -> Response {
        let asset = &self.list[i];
        let etags = self.etags.get_or_init(|| {
            self.list
                .iter()
                .map(|a| hex::encode(Sha256::digest(a.body))[..20].to_owned())
                .collect()
        });
        let gzip = asset.gzip && accepts_gzip(headers);
        // One tag per representation: the compressed bytes are not the
        // plain ones.
        let etag = if gzip {
            format!("\"{}-gz\"", etags[i])
        } else {
            format!("\"{}\"", etags[i])
        };
        let fresh = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
        let mut resp = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else if gzip {
            (
                [
                    (header::CONTENT_TYPE, asset.content_type),
                    (header::CONTENT_ENCODING, "gzip"),
                ],
                asset.body,
            )
                .into_response()
        } else {
            ([(header::CONTENT_TYPE, asset.content_type)], self.plain(i)).into_response()
        };
        let h = resp.headers_mut();
        // Revalidated on each load (a cheap 304), so an upgraded server never
        // runs a stale script against a newer API.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if asset.gzip {
            h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        if let Ok(v) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, v);
        }
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        );
        resp
    }
}

/// Whether `Accept-Encoding` accepts gzip (`gzip` or `*`, with a non-zero
/// weight).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero
        })
}

static CHAT: Assets = Assets::new(ASSETS);

/// The chat page: ask with streamed answers and citations, sessions,
/// document upload (when `ui.chat` is on).
#[utoipa::path(get, path = "/", tag = "ui",
    responses((status = 200, description = "the chat page", content_type = "text/html", body = String),
        (status = 304, description = "not modified (`If-None-Match`)")))]
pub async fn index(headers: HeaderMap) -> Response {
    CHAT.serve(0, &headers, PAGE_CSP)
}

/// One of the chat page's assets: `app.js`, `app.css` or `icon.svg`.
#[utoipa::path(get, path = "/ui/{asset}", tag = "ui",
    params(("asset" = String, Path, description = "`app.js`, `app.css`, `icon.svg` or `index.html`")),
    responses((status = 200, description = "the asset", content(
            (String = "text/javascript"), (String = "text/css"), (String = "image/svg+xml"), (String = "text/html"))),
        (status = 304, description = "not modified (`If-None-Match`)"),
        (status = 404, body = ErrorBody)))]
pub async fn asset(ApiPath(name): ApiPath<String>, headers: HeaderMap) -> Response {
    match CHAT.position(&name) {
        Some(i) => CHAT.serve(i, &headers, PAGE_CSP),
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
