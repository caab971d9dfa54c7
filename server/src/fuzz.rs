//! The server's request handling under a coverage-guided fuzzer (`fuzz`
//! feature; `scripts/fuzz server_request`): arbitrary bytes become a request
//! to one of the operations that read a body or a query — documents (JSON
//! and multipart upload), ask (plain and streamed), chat completions,
//! sessions, feedback, the lists — and go through the whole router
//! in-process (middleware, extractors, validation, handlers) against an
//! in-memory server: memory store and sessions, the hash embedder,
//! extractive answers, no key, no limit.
//!
//! What must hold for every input: no panic; no `5xx` (nothing here can
//! fail on the backend side, so a `5xx` is the server's own bug); every
//! error is the JSON error body with a code and the request id; every
//! success on a JSON operation is JSON; a stream ends.
//!
//! The input: byte 0 picks the operation, byte 1 its `Content-Type`
//! variant, the rest is the body (or the query string of a list).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::config::ServerConfig;
use crate::state::AppState;

/// The multipart boundary of the upload operation's content type.
pub const BOUNDARY: &str = "rag-fuzz-boundary";

/// Requests after which the server is built afresh, so that what the
/// accepted inputs stored does not grow without bound over a long run.
const REBUILD_EVERY: usize = 5_000;

/// The operations, by the input's first byte (modulo their number).
const OPERATIONS: &[(Method, &str, Kind)] = &[
    (Method::POST, "/v1/documents", Kind::Json),
    (Method::POST, "/v1/documents/upload", Kind::Multipart),
    (Method::POST, "/v1/ask", Kind::Json),
    (Method::POST, "/v1/ask/stream", Kind::Stream),
    (Method::POST, "/v1/chat/completions", Kind::Json),
    (Method::POST, "/v1/sessions", Kind::Json),
    (Method::POST, "/v1/feedback", Kind::Json),
    (Method::GET, "/v1/documents", Kind::Query),
    (Method::GET, "/v1/sessions", Kind::Query),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A JSON body; a JSON answer.
    Json,
    /// A JSON body; an event stream (or a JSON error).
    Stream,
    /// A multipart body; a JSON answer.
    Multipart,
    /// No body; the input is the query string.
    Query,
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    app: std::sync::Mutex<Option<Router>>,
    served: AtomicUsize,
}

fn config() -> ServerConfig {
    let mut c = ServerConfig::default();
    c.store.kind = "memory".into();
    c.sessions.kind = "memory".into();
    c.embedder.kind = "hash".into();
    c.llm.kind = "extractive".into();
    c.reranker.kind = "none".into();
    c.rate_limit.per_key_per_minute = 0;
    c.rate_limit.per_ip_per_minute = 0;
    c.rate_limit.auth_failures_per_ip_per_minute = 0;
    c.rate_limit.asks_per_key_per_minute = 0;
    c.rate_limit.per_session_per_minute = 0;
    c
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| Harness {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime"),
        app: std::sync::Mutex::new(None),
        served: AtomicUsize::new(0),
    })
}

/// The `Content-Type` a JSON operation is sent with, by `variant`: mostly
/// right, sometimes with parameters or case, sometimes wrong or missing.
fn json_type(variant: u8) -> Option<&'static str> {
    match variant % 8 {
        0..=3 => Some("application/json"),
        4 => Some("Application/JSON; charset=utf-8"),
        5 => Some("text/plain"),
        6 => Some("application/json;"),
        _ => None,
    }
}

fn multipart_type(variant: u8) -> Option<String> {
    match variant % 4 {
        0 | 1 => Some(format!("multipart/form-data; boundary={BOUNDARY}")),
        2 => Some("multipart/form-data".to_owned()),
        _ => Some("application/json".to_owned()),
    }
}

/// Sends one request built from `data` and checks the answer (see the
/// module's documentation). Panics on a violation, which the fuzzer
/// records as a crash.
pub fn request(data: &[u8]) {
    let [op, variant, rest @ ..] = data else {
        return;
    };
    let (method, path, kind) = &OPERATIONS[usize::from(*op) % OPERATIONS.len()];
    let h = harness();
    let app = {
        let mut slot = h.app.lock().unwrap_or_else(|e| e.into_inner());
        if h.served
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(REBUILD_EVERY)
        {
            *slot = None;
        }
        slot.get_or_insert_with(|| {
            let state = h
                .runtime
                .block_on(AppState::build(config()))
                .expect("the fuzzing server builds");
            crate::app(state)
        })
        .clone()
    };

    let mut uri = (*path).to_owned();
    let mut builder = Request::builder().method(method.clone());
    let body = match kind {
        Kind::Query => {
            // The bytes as a query string, as a client could send them
            // (a URI takes no control bytes or spaces; escape those).
            let q: String = rest
                .iter()
                .map(|&b| match b {
                    b'!'..=b'~' if b != b'#' => char::from(b).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect();
            uri.push('?');
            uri.push_str(&q);
            Body::empty()
        }
        Kind::Multipart => {
            if let Some(t) = multipart_type(*variant) {
                builder = builder.header(header::CONTENT_TYPE, t);
            }
            Body::from(rest.to_vec())
        }
        Kind::Json | Kind::Stream => {
            if let Some(t) = json_type(*variant) {
                builder = builder.header(header::CONTENT_TYPE, t);
            }
            Body::from(rest.to_vec())
        }
    };
    let Ok(mut req) = builder.uri(uri.as_str()).body(body) else {
        return;
    };
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));

    h.runtime.block_on(async move {
        let resp = app.oneshot(req).await.expect("the router is infallible");
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let has_request_id = resp.headers().contains_key("x-request-id");
        let body = resp
            .into_body()
            .collect()
            .await
            .expect("the body is read to its end")
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(
            !status.is_server_error(),
            "{method} {path}: {status} for a client's input: {text}"
        );
        assert!(has_request_id, "{method} {path}: no x-request-id");
        if !status.is_success() {
            let v: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{method} {path}: {status}, not JSON ({e}): {text}"));
            assert!(
                v["error"]["code"].as_str().is_some_and(|c| !c.is_empty()),
                "{method} {path}: {status} without an error code: {text}"
            );
            assert!(
                v["error"]["request_id"].as_str().is_some(),
                "{method} {path}: {status} without the request id in the body: {text}"
            );
            return;
        }
        if content_type.starts_with("text/event-stream") {
            // `/v1/ask/stream` ends with `done` or `error`, the
            // OpenAI-compatible stream with `[DONE]`.
            assert!(
                text.contains("event: done")
                    || text.contains("event: error")
                    || text.contains("data: [DONE]"),
                "{method} {path}: a stream without its end: {text}"
            );
        } else {
            assert!(
                *kind != Kind::Stream,
                "{method} {path}: {status} as {content_type}"
            );
            assert!(
                status == StatusCode::NO_CONTENT
                    || serde_json::from_slice::<serde_json::Value>(&body).is_ok(),
                "{method} {path}: {status}, not JSON: {text}"
            );
        }
    });
}
