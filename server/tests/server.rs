//! End-to-end tests: the server bound to 127.0.0.1:0, driven by a real HTTP
//! client.

// Tests tweak one or two fields of the default configuration at a time.
#![allow(clippy::field_reassign_with_default)]

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use rag_server::auth::{KeyConfig, Scope, hash_key};
use rag_server::{AppState, ServerConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

// Further suites, in files of their own under tests/server/ (one test
// binary: linking another costs minutes on two cores).
#[path = "server/abuse.rs"]
mod abuse;
#[path = "server/faults.rs"]
mod faults;

const ADMIN: &str = "admin-key-0123456789";
const ADMIN_NEW: &str = "admin-key-rotated-9876";
const ACME_READ: &str = "acme-read-key";
const ACME_INGEST: &str = "acme-ingest-key";
const GLOBEX_INGEST: &str = "globex-ingest-key";

/// A client (reqwest is built without a default TLS provider; loopback
/// needs none, but the client insists on one).
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

struct Server {
    base: String,
    client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<std::io::Result<bool>>>,
}

impl Server {
    async fn start(config: ServerConfig) -> Self {
        Self::with_state(AppState::build(config).await.expect("state")).await
    }

    async fn with_state(state: AppState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(rag_server::serve(listener, state, async move {
            let _ = rx.await;
        }));
        Self {
            base: format!("http://{addr}"),
            client: client(),
            stop: Some(tx),
            done: Some(done),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn post(&self, path: &str, key: Option<&str>, body: &Value) -> reqwest::RequestBuilder {
        let r = self.client.post(self.url(path)).json(body);
        match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// `GET path`, its body as JSON.
    async fn get_json(&self, path: &str, key: Option<&str>) -> Value {
        let r = self.get(path, key).send().await.unwrap();
        r.json().await.expect("a JSON body")
    }

    /// `GET path`, its body as text.
    async fn get_text(&self, path: &str, key: Option<&str>) -> String {
        let r = self.get(path, key).send().await.unwrap();
        r.text().await.expect("a text body")
    }

    /// `POST path` with `body`, the reply as JSON.
    async fn post_json(&self, path: &str, key: Option<&str>, body: &Value) -> Value {
        let r = self.post(path, key, body).send().await.unwrap();
        r.json().await.expect("a JSON body")
    }

    fn delete(&self, path: &str, key: Option<&str>) -> reqwest::RequestBuilder {
        let r = self.client.delete(self.url(path));
        match key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    fn get(&self, path: &str, key: Option<&str>) -> reqwest::RequestBuilder {
        let r = self.client.get(self.url(path));
        match key {
            Some(k) => r.header("x-api-key", k),
            None => r,
        }
    }
}

fn key(name: &str, secret: &str, scopes: &[Scope], ns: Option<&str>) -> KeyConfig {
    KeyConfig {
        name: name.into(),
        hash: hash_key(secret),
        scopes: scopes.to_vec(),
        namespace: ns.map(str::to_owned),
    }
}

/// The default configuration with the in-memory store, so tests do not
/// share the default LanceDB directory (`./rag-data`).
/// The in-memory store with the HashEmbedder and extractive answers, so
/// that the tests do not depend on the local models (one test below runs
/// the server on them).
fn test_config() -> ServerConfig {
    let mut c = ServerConfig::default();
    c.store.kind = "memory".into();
    c.embedder.kind = "hash".into();
    c.llm.kind = "extractive".into();
    c.reranker.kind = "none".into();
    c
}

fn secured() -> ServerConfig {
    let mut c = test_config();
    c.keys = vec![
        key("admin", ADMIN, &[Scope::Admin], None),
        key("admin-rotated", ADMIN_NEW, &[Scope::Admin], None),
        key("acme-read", ACME_READ, &[Scope::Read], Some("acme")),
        key("acme-ingest", ACME_INGEST, &[Scope::Ingest], Some("acme")),
        key(
            "globex-ingest",
            GLOBEX_INGEST,
            &[Scope::Ingest],
            Some("globex"),
        ),
    ];
    c.rate_limit.per_key_per_minute = 0;
    c
}

fn docs() -> Value {
    json!({"documents": [
        {"source": "ops/keys.md", "text": "# Keys\n\nRotate API keys every 90 days. Old keys stay valid for one day after rotation.", "metadata": {"team": "ops"}},
        {"source": "dev/build.md", "text": "# Build\n\nRun cargo build to compile the workspace. The tests run with scripts/test.", "metadata": {"team": "dev"}}
    ]})
}

async fn error_of(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let body: Value = resp.json().await.expect("a JSON error body");
    (status, body)
}

#[tokio::test]
async fn ingest_ask_list_get_delete_and_sessions() {
    let s = Server::start(test_config()).await;
    let r = s.post("/v1/documents", None, &docs()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["added"].as_array().unwrap().len(), 2);
    // Ingesting again changes nothing.
    let report: Value = s
        .post("/v1/documents", None, &docs())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["unchanged"].as_array().unwrap().len(), 2);

    let r = s
        .post(
            "/v1/ask",
            None,
            &json!({"question": "How often should API keys be rotated?"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("x-request-id"));
    let a: Value = r.json().await.unwrap();
    assert!(a["text"].as_str().unwrap().contains("90 days"), "{a}");
    assert_eq!(a["citations"][0]["source"], "ops/keys.md");
    assert!(a["extractive"].as_bool().unwrap());
    assert!(a["timings"]["total_ms"].as_f64().unwrap() > 0.0);

    // A filter restricts the sources.
    let a: Value = s
        .post("/v1/ask", None, &json!({"question": "How often should API keys be rotated?", "filter": {"eq": {"field": {"metadata": "team"}, "value": "dev"}}}))
        .send().await.unwrap().json().await.unwrap();
    assert!(
        a["sources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["source"] == "dev/build.md"),
        "{a}"
    );

    // List, paged.
    let page: Value = s
        .get("/v1/documents?limit=1", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["documents"].as_array().unwrap().len(), 1);
    let next = page["next"]
        .as_str()
        .unwrap_or_else(|| panic!("{page}"))
        .to_owned();
    let page2: Value = s
        .get(&format!("/v1/documents?limit=1&after={next}"), None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page2["documents"].as_array().unwrap().len(), 1);
    assert_ne!(page["documents"][0]["id"], page2["documents"][0]["id"]);
    assert!(page2["next"].is_null());

    // Get and delete.
    let d: Value = s
        .get("/v1/documents/ops%2Fkeys.md", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["source"], "ops/keys.md");
    let r = s
        .client
        .delete(s.url("/v1/documents/ops%2Fkeys.md"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .get("/v1/documents/ops%2Fkeys.md", None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s
        .client
        .delete(s.url("/v1/documents/ops%2Fkeys.md"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Sessions: create, ask in it, history, delete.
    let r = s
        .post("/v1/sessions", None, &json!({"metadata": {"title": "t"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let sess: Value = r.json().await.unwrap();
    let id = sess["id"].as_str().unwrap().to_owned();
    let a: Value = s
        .post(
            "/v1/ask",
            None,
            &json!({"question": "How do I compile the workspace?", "session_id": id}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["session_id"], id.as_str());
    let h: Value = s
        .get(&format!("/v1/sessions/{id}"), None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["messages"].as_array().unwrap().len(), 2);
    assert_eq!(h["messages"][0]["role"], "user");
    let r = s
        .client
        .delete(s.url(&format!("/v1/sessions/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = s
        .get(&format!("/v1/sessions/{id}"), None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Feedback on the answer.
    let r = s
        .post(
            "/v1/feedback",
            None,
            &json!({"answer_id": a["answer_id"], "rating": 1}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (st, e) = error_of(
        s.post(
            "/v1/feedback",
            None,
            &json!({"answer_id": a["answer_id"], "rating": 5}),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["field"], "rating");
}

#[tokio::test]
async fn ask_stream_sends_sources_deltas_done() {
    let s = Server::start(test_config()).await;
    s.post("/v1/documents", None, &docs()).send().await.unwrap();
    let r = s
        .post(
            "/v1/ask/stream",
            None,
            &json!({"question": "How often should API keys be rotated?"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events: Vec<_> = eventsource_stream::EventStream::new(r.bytes_stream())
        .map(|e| e.unwrap())
        .collect()
        .await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"sources"));
    assert_eq!(names.last(), Some(&"done"));
    assert!(names[1..names.len() - 1].iter().all(|n| *n == "delta") && names.len() > 2);
    let text: String = events
        .iter()
        .filter(|e| e.event == "delta")
        .map(|e| {
            serde_json::from_str::<Value>(&e.data).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let done: Value = serde_json::from_str(&events.last().unwrap().data).unwrap();
    assert_eq!(done["text"].as_str().unwrap(), text);
    assert_eq!(done["citations"][0]["source"], "ops/keys.md");
    let sources: Value = serde_json::from_str(&events[0].data).unwrap();
    assert!(!sources.as_array().unwrap().is_empty());
}

#[tokio::test]
async fn every_auth_failure_mode() {
    let s = Server::start(secured()).await;
    let q = json!({"question": "keys?"});
    // Missing key.
    let (st, e) = error_of(s.post("/v1/ask", None, &q).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(e["error"]["code"], "unauthorized");
    // Wrong key; a key's hash is not a key.
    for bad in ["nope", hash_key(ADMIN).as_str(), "admin-key-012345678"] {
        let (st, _) = error_of(s.post("/v1/ask", Some(bad), &q).send().await.unwrap()).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{bad}");
    }
    // Malformed header.
    let r = s
        .client
        .post(s.url("/v1/ask"))
        .header("authorization", format!("Basic {ADMIN}"))
        .json(&q)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Wrong scope: a read key cannot ingest or delete.
    let (st, e) = error_of(
        s.post("/v1/documents", Some(ACME_READ), &docs())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(e["error"]["message"].as_str().unwrap().contains("ingest"));
    let r = s
        .client
        .delete(s.url("/v1/documents/x"))
        .bearer_auth(ACME_READ)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Both keys of a rotation work.
    for k in [ADMIN, ADMIN_NEW] {
        let r = s.post("/v1/ask", Some(k), &q).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    // The ops endpoints are open.
    assert_eq!(
        s.get("/health", None).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn tenants_are_isolated() {
    let s = Server::start(secured()).await;
    // acme ingests into its bound namespace without naming it.
    let r: Value = s
        .post("/v1/documents", Some(ACME_INGEST), &docs())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["namespace"], "acme");
    // globex asking for acme's namespace is refused.
    let (st, _) = error_of(
        s.post(
            "/v1/ask",
            Some(GLOBEX_INGEST),
            &json!({"question": "keys?", "namespace": "acme"}),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = error_of(
        s.post(
            "/v1/documents",
            Some(GLOBEX_INGEST),
            &json!({"namespace": "acme", "documents": [{"source": "x", "text": "y"}]}),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let r = s
        .get("/v1/documents?namespace=acme", Some(GLOBEX_INGEST))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // In its own namespace globex sees nothing of acme's.
    let a: Value = s
        .post(
            "/v1/ask",
            Some(GLOBEX_INGEST),
            &json!({"question": "How often should API keys be rotated?"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(a["sources"].as_array().unwrap().is_empty(), "{a}");
    let page: Value = s
        .get("/v1/documents", Some(GLOBEX_INGEST))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(page["documents"].as_array().unwrap().is_empty());
    let r = s
        .get("/v1/documents/ops%2Fkeys.md", Some(GLOBEX_INGEST))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s
        .client
        .delete(s.url("/v1/documents/ops%2Fkeys.md"))
        .bearer_auth(GLOBEX_INGEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // acme reads its own.
    let a: Value = s
        .post(
            "/v1/ask",
            Some(ACME_READ),
            &json!({"question": "How often should API keys be rotated?"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["citations"][0]["source"], "ops/keys.md");
    // A session of acme is invisible to globex, also when used in ask.
    let sess: Value = s
        .post("/v1/sessions", Some(ACME_READ), &json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = sess["id"].as_str().unwrap();
    assert_eq!(sess["namespace"], "acme");
    let r = s
        .get(&format!("/v1/sessions/{id}"), Some(GLOBEX_INGEST))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s
        .client
        .delete(s.url(&format!("/v1/sessions/{id}")))
        .bearer_auth(GLOBEX_INGEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s
        .post(
            "/v1/ask",
            Some(GLOBEX_INGEST),
            &json!({"question": "keys?", "session_id": id}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s
        .get(&format!("/v1/sessions/{id}"), Some(ACME_READ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn limits_413_422_429() {
    let mut c = test_config();
    c.body_limit_bytes = 16 * 1024;
    c.rate_limit.per_key_per_minute = 0;
    let s = Server::start(c).await;
    // 413, JSON body.
    let big = json!({"documents": [{"source": "big", "text": "x".repeat(64 * 1024)}]});
    let (st, e) = error_of(s.post("/v1/documents", None, &big).send().await.unwrap()).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(e["error"]["code"], "payload_too_large");
    // 422 naming the field: missing, wrong type, unknown, semantic.
    let cases = [
        (json!({}), "question"),
        (json!({"question": 3}), "question"),
        (json!({"question": "q", "top_k": 0}), "top_k"),
        (json!({"question": "q", "max_tokens": 0}), "max_tokens"),
        (
            json!({"question": "q", "max_tokens": 100_000}),
            "max_tokens",
        ),
        (json!({"question": "  "}), "question"),
        (
            json!({"question": "q", "namespace": "no spaces"}),
            "namespace",
        ),
        (
            json!({"question": "q", "filter": {"nonsense": 1}}),
            "filter",
        ),
        (json!({"question": "q", "bogus": 1}), "bogus"),
    ];
    for (body, field) in cases {
        let (st, e) = error_of(s.post("/v1/ask", None, &body).send().await.unwrap()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(e["error"]["field"], field, "{body}: {e}");
    }
    let (st, e) = error_of(
        s.post(
            "/v1/documents",
            None,
            &json!({"documents": [{"source": "a", "text": ""}]}),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["field"], "documents[0].text");
    // Malformed JSON is 400, not JSON at all is 415.
    let r = s
        .client
        .post(s.url("/v1/ask"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = s
        .client
        .post(s.url("/v1/ask"))
        .body("question")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // 429 with Retry-After, per key.
    let mut c = secured();
    c.rate_limit.per_key_per_minute = 2;
    let s = Server::start(c).await;
    for _ in 0..2 {
        assert_eq!(
            s.get("/v1/models", Some(ADMIN))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    let r = s.get("/v1/models", Some(ADMIN)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another key has its own budget.
    assert_eq!(
        s.get("/v1/models", Some(ADMIN_NEW))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // Per IP, before authentication.
    let mut c = secured();
    c.rate_limit.per_key_per_minute = 0;
    c.rate_limit.per_ip_per_minute = 1;
    let s = Server::start(c).await;
    assert_eq!(
        s.get("/v1/models", Some("wrong"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let r = s.get("/v1/models", Some(ADMIN)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn headers_request_ids_and_cors() {
    let mut c = test_config();
    c.cors_origins = vec!["https://app.example".into()];
    let s = Server::start(c).await;
    let r = s
        .get("/health", None)
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-123");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let r = s.get("/health", None).send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"].to_str().unwrap().len(), 36);
    let pre = |origin: &'static str| {
        s.client
            .request(reqwest::Method::OPTIONS, s.url("/v1/ask"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let r = pre("https://app.example").await.unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let r = pre("https://evil.example").await.unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn openai_compatible_endpoints() {
    use async_openai::types::chat::{
        CreateChatCompletionResponse, CreateChatCompletionStreamResponse,
    };
    use async_openai::types::models::ListModelResponse;
    let s = Server::start(secured()).await;
    s.post("/v1/documents", Some(ADMIN), &docs())
        .send()
        .await
        .unwrap();
    let models: ListModelResponse = s
        .get("/v1/models", Some(ADMIN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models.data[0].id, "rag");

    let body = json!({"model": "rag", "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "How often should API keys be rotated?"}]});
    let raw: Value = s
        .post("/v1/chat/completions", Some(ADMIN), &body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp: CreateChatCompletionResponse = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(resp.object, "chat.completion");
    let content = resp.choices[0].message.content.clone().unwrap();
    assert!(content.contains("90 days"), "{content}");
    assert_eq!(raw["citations"][0]["source"], "ops/keys.md");
    assert!(resp.usage.unwrap().total_tokens > 0);

    let mut body = body;
    body["stream"] = json!(true);
    let r = s
        .post("/v1/chat/completions", Some(ADMIN), &body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let events: Vec<_> = eventsource_stream::EventStream::new(r.bytes_stream())
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let mut text = String::new();
    let mut last = None;
    for e in &events[..events.len() - 1] {
        let chunk: CreateChatCompletionStreamResponse = serde_json::from_str(&e.data).unwrap();
        assert_eq!(chunk.object, "chat.completion.chunk");
        text.push_str(chunk.choices[0].delta.content.as_deref().unwrap_or(""));
        last = Some(e.data.clone());
    }
    assert_eq!(text, content);
    let last: Value = serde_json::from_str(&last.unwrap()).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["citations"][0]["source"], "ops/keys.md");

    // Without a user message: 422 naming `messages`.
    let (st, e) = error_of(
        s.post(
            "/v1/chat/completions",
            Some(ADMIN),
            &json!({"model": "rag", "messages": []}),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"]["field"], "messages");
    // A tenant key answers from its tenant only.
    let raw: Value = s.post("/v1/chat/completions", Some(GLOBEX_INGEST), &json!({"messages": [{"role": "user", "content": "How often should API keys be rotated?"}]})).send().await.unwrap().json().await.unwrap();
    assert!(raw["citations"].as_array().unwrap().is_empty(), "{raw}");
}

#[tokio::test]
async fn chat_completions_refuse_an_unknown_model_as_openai_does() {
    let s = Server::start(secured()).await;
    s.post("/v1/documents", Some(ADMIN), &docs())
        .send()
        .await
        .unwrap();
    let ask = |model: Value| {
        json!({"model": model, "messages": [
            {"role": "user", "content": "How often should API keys be rotated?"}]})
    };
    let r = s
        .post("/v1/chat/completions", Some(ADMIN), &ask(json!("gpt-4o")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    let e = &body["error"];
    assert_eq!(e["code"], "model_not_found", "{body}");
    assert_eq!(e["type"], "invalid_request_error", "{body}");
    assert_eq!(e["param"], "model", "{body}");
    assert!(e["message"].as_str().unwrap().contains("gpt-4o"), "{body}");
    // An OpenAI client reads it as OpenAI's error.
    let parsed: async_openai::error::WrappedError = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(parsed.error.code.as_deref(), Some("model_not_found"));

    // Every model /v1/models lists is accepted, and so is no model.
    let models: Value = s
        .get("/v1/models", Some(ADMIN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: Vec<Value> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .chain([Value::Null])
        .collect();
    assert!(listed.len() > 1);
    for model in listed {
        let r = s
            .post("/v1/chat/completions", Some(ADMIN), &ask(model.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "model {model}");
    }
    // Other errors of the endpoint carry OpenAI's fields too.
    let r = s
        .post(
            "/v1/chat/completions",
            Some(ADMIN),
            &json!({"model": "rag", "messages": [{"role": "user", "content": "  "}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["param"], "messages", "{body}");
    assert_eq!(body["error"]["field"], "messages", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
}

#[tokio::test]
async fn contract_details_sessions_queries_and_statuses() {
    let s = Server::start(secured()).await;
    // A session created without metadata has `{}`, never null.
    let r = s
        .post("/v1/sessions", Some(ADMIN), &json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let session: Value = r.json().await.unwrap();
    assert_eq!(session["metadata"], json!({}), "{session}");
    let id = session["id"].as_str().unwrap().to_owned();
    let history: Value = s
        .get(&format!("/v1/sessions/{id}"), Some(ADMIN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["session"]["metadata"], json!({}), "{history}");
    // An ingest lists every document of the request that is stored, added
    // or unchanged (what the document's links follow).
    for _ in 0..2 {
        let rep: Value = s
            .post("/v1/documents", Some(ADMIN), &docs())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            rep["documents"],
            json!(["ops/keys.md", "dev/build.md"]),
            "{rep}"
        );
    }
    // Malformed path and query parameters: 422 with the JSON body.
    for path in [
        "/v1/sessions/not-a-uuid",
        "/v1/documents?limit=0",
        "/v1/documents?limit=-1",
        "/v1/documents?bogus=1",
        "/v1/documents?namespace=a%20b",
    ] {
        let (st, e) = error_of(s.get(path, Some(ADMIN)).send().await.unwrap()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {e}");
        assert_eq!(e["error"]["code"], "invalid_input", "{path}: {e}");
    }
    // Malformed JSON is 400, another media type 415, both JSON bodies.
    let r = s
        .client
        .post(s.url("/v1/ask"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    let (st, e) = error_of(r).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("malformed_json"))
    );
    let r = s
        .client
        .post(s.url("/v1/ask"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/jsonx")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = s
        .client
        .post(s.url("/v1/documents/upload"))
        .bearer_auth(ADMIN)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    let (st, _) = error_of(r).await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // An unknown path: 404 with the JSON body.
    let (st, e) = error_of(s.get("/v1/nowhere", Some(ADMIN)).send().await.unwrap()).await;
    assert_eq!(
        (st, e["error"]["code"].clone()),
        (StatusCode::NOT_FOUND, json!("not_found"))
    );
    // The schema's limits are the handlers' limits.
    for (body, field) in [
        (json!({"question": "q", "top_k": 101}), "top_k"),
        (
            json!({"question": "q", "temperature": 2.000_000_000_000_000_4}),
            "temperature",
        ),
        (json!({"question": " \u{3000}"}), "question"),
        (
            json!({"question": "q", "filter": {"exists": {"field": {"metadata": ""}}}}),
            "filter",
        ),
    ] {
        let (st, e) = error_of(s.post("/v1/ask", Some(ADMIN), &body).send().await.unwrap()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        assert_eq!(e["error"]["field"], field, "{body}: {e}");
    }
    let long_key =
        json!({"documents": [{"source": "a", "text": "b", "metadata": {"é".repeat(65): 1}}]});
    let (st, e) = error_of(
        s.post("/v1/documents", Some(ADMIN), &long_key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    // The document declares what the server answers.
    let doc: Value = s
        .get("/openapi.json", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ask = &doc["paths"]["/v1/ask"]["post"]["responses"];
    for status in [
        "200", "400", "401", "403", "404", "413", "415", "422", "429", "503", "504",
    ] {
        assert!(ask[status].is_object(), "/v1/ask does not declare {status}");
    }
    let stream = &doc["paths"]["/v1/ask/stream"]["post"]["responses"]["200"]["content"];
    assert_eq!(
        stream["text/event-stream"]["schema"]["$ref"],
        "#/components/schemas/AskStreamEvent"
    );
    let links = &doc["paths"]["/v1/documents"]["post"]["responses"]["200"]["links"];
    assert_eq!(links["GetDocument"]["operationId"], "get_document");
    assert_eq!(
        doc["components"]["schemas"]["AskRequest"]["properties"]["top_k"]["maximum"],
        100
    );
}

#[tokio::test]
async fn openapi_metrics_ready_and_upload() {
    let s = Server::start(test_config()).await;
    let doc: Value = s
        .get("/openapi.json", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    // A real OpenAPI 3.1 parser accepts the document.
    let spec = oas3::from_json(doc.to_string()).expect("openapi.json parses as OpenAPI 3.1");
    assert_eq!(
        spec.paths.as_ref().map(|p| p.len()),
        Some(doc["paths"].as_object().unwrap().len())
    );
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/health",
        "/ready",
        "/metrics",
        "/openapi.json",
        "/v1/documents",
        "/v1/documents/upload",
        "/v1/documents/{id}",
        "/v1/ask",
        "/v1/ask/stream",
        "/v1/sessions",
        "/v1/sessions/{id}",
        "/v1/feedback",
        "/v1/chat/completions",
        "/v1/models",
    ] {
        assert!(paths.contains_key(p), "{p} missing from openapi.json");
    }
    // Every $ref resolves.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {name}"
        );
    }

    // Multipart upload: accepted types, rejected type, too large.
    let form = reqwest::multipart::Form::new()
        .text("metadata", r#"{"team":"docs"}"#)
        .part(
            "file",
            reqwest::multipart::Part::text("Upload works for Markdown files.")
                .file_name("guide.md"),
        )
        .part(
            "file",
            reqwest::multipart::Part::text("fn main() { println!(\"hi\"); }").file_name("main.rs"),
        );
    let r = s
        .client
        .post(s.url("/v1/documents/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rep: Value = r.json().await.unwrap();
    assert_eq!(rep["added"].as_array().unwrap().len(), 2, "{rep}");
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(vec![0u8; 10]).file_name("image.png"),
    );
    let r = s
        .client
        .post(s.url("/v1/documents/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::text("y".repeat(1024 * 1024 + 1)).file_name("big.txt"),
    );
    let r = s
        .client
        .post(s.url("/v1/documents/upload"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let ready: Value = s
        .get("/ready", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ok");
    // Without an admin key, readiness says only ready or not.
    assert!(ready.get("checks").is_none(), "{ready}");

    s.post("/v1/ask", None, &json!({"question": "upload?"}))
        .send()
        .await
        .unwrap();
    let m = s
        .get("/metrics", None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("rag_server_requests_total"), "{m}");
    assert!(m.contains("route=\"/v1/ask\""));
}

#[tokio::test]
async fn graceful_shutdown_and_invalid_config() {
    let mut s = Server::start(test_config()).await;
    let r = s.get("/health", None).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.stop.take().unwrap().send(()).unwrap();
    let clean = tokio::time::timeout(Duration::from_secs(10), s.done.take().unwrap())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(clean);
    assert!(client().get(s.url("/health")).send().await.is_err());

    let mut c = test_config();
    c.store.kind = "qdrant".into();
    c.store.url = Some("http://127.0.0.1:1".into());
    // A store that cannot be reached stops start-up with an error naming it.
    let e = AppState::build(c).await.unwrap_err();
    assert!(e.contains("qdrant") && e.contains("127.0.0.1:1"), "{e}");
    let mut c = test_config();
    c.store.kind = "milvus".into();
    let e = AppState::build(c).await.unwrap_err();
    assert!(e.contains("unknown store"), "{e}");
    let mut c = test_config();
    c.keys = vec![KeyConfig {
        name: "k".into(),
        hash: "plaintext".into(),
        scopes: vec![Scope::Read],
        namespace: None,
    }];
    assert!(AppState::build(c).await.unwrap_err().contains("sha256"));
}

#[tokio::test]
async fn memory_store_persists_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config();
    c.store.path = Some(dir.path().join("store.bin"));
    let ns = rag::Namespace::default();
    let first = AppState::build(c.clone()).await.unwrap();
    first
        .rag
        .ingest(rag::Document::new(
            "a.md",
            "Persisted text survives a restart.",
        ))
        .await
        .unwrap();
    first.persist().unwrap();
    let second = AppState::build(c).await.unwrap();
    assert_eq!(second.rag.store().count(&ns).await.unwrap(), 1);
}

#[tokio::test]
async fn lance_store_is_the_default_and_persists_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = ServerConfig::default();
    assert_eq!(c.store.kind, "lance");
    c.store.path = Some(dir.path().join("rag-data"));
    // No reader child for a test of the store.
    c.llm.kind = "extractive".into();
    let ns = rag::Namespace::default();
    {
        let first = AppState::build(c.clone()).await.unwrap();
        first
            .rag
            .ingest(rag::Document::new("a.md", "Lance keeps this text on disk."))
            .await
            .unwrap();
    }
    let second = AppState::build(c).await.unwrap();
    assert_eq!(second.rag.store().count(&ns).await.unwrap(), 1);
    assert!(second.rag.store().capabilities().persistent);
    let hits = second
        .rag
        .store()
        .search(&ns, rag::SearchRequest::keyword("disk", 3))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);
}

#[tokio::test]
async fn ready_reports_an_unreachable_llm() {
    // Nothing listens on port 9 of loopback (discard); connecting fails fast.
    let mut c = test_config();
    c.llm.kind = "openai".into();
    c.llm.base_url = Some("http://127.0.0.1:9/v1".into());
    c.llm.model = Some("m".into());
    c.layers.retry_attempts = 1;
    c.keys = secured().keys;
    let s = Server::start(c).await;
    // Anyone learns that the server is not ready, and nothing else.
    for key in [None, Some(ACME_READ), Some("not-a-key")] {
        let r = s.get("/ready", key).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body, json!({"status": "unavailable"}), "{key:?}");
    }
    // An admin key sees each check and why it fails.
    let r = s.get("/ready", Some(ADMIN)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    let llm = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "llm")
        .unwrap();
    assert_ne!(llm["status"], "ok");
    assert_eq!(
        s.get("/health", None).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn pgvector_store_end_to_end() {
    let Some(url) = rag::testkit::service_url(
        "RAG_TEST_PG_URL",
        "pgvector_store_end_to_end",
        "scripts/test starts a server",
    ) else {
        return;
    };
    let prefix = format!(
        "t_server_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let mut c = test_config();
    c.store.kind = "pgvector".into();
    c.store.url = Some(url);
    c.store.table_prefix = Some(prefix.clone());
    let s = Server::start(c).await;
    let ready: Value = s
        .get("/ready", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ok", "{ready}");
    let r: Value = s
        .post("/v1/documents", None, &docs())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["added"].as_array().unwrap().len(), 2, "{r}");
    let sess: Value = s
        .post("/v1/sessions", None, &json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let a: Value = s
        .post(
            "/v1/ask",
            None,
            &json!({"question": "How often should API keys be rotated?", "session_id": sess["id"]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["citations"][0]["source"], "ops/keys.md", "{a}");
    let h: Value = s
        .get(
            &format!("/v1/sessions/{}", sess["id"].as_str().unwrap()),
            None,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["messages"].as_array().unwrap().len(), 2);
    let page: Value = s
        .get("/v1/documents", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["documents"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn shutdown_lets_an_open_stream_finish() {
    let mut s = Server::start(test_config()).await;
    s.post("/v1/documents", None, &docs()).send().await.unwrap();
    let r = s
        .post(
            "/v1/ask/stream",
            None,
            &json!({"question": "How often should API keys be rotated?"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Headers received, body not read yet: shut down now.
    s.stop.take().unwrap().send(()).unwrap();
    let events: Vec<_> = eventsource_stream::EventStream::new(r.bytes_stream())
        .map(|e| e.unwrap())
        .collect()
        .await;
    assert_eq!(events.last().unwrap().event, "done");
    let clean = tokio::time::timeout(Duration::from_secs(10), s.done.take().unwrap())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(clean);
}

/// Collects everything the server logs.
#[derive(Clone, Default)]
struct LogBuf(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn logs_are_json_with_request_ids_and_never_keys_or_text() {
    let buf = LogBuf::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_current_span(true)
        .with_writer(buf.clone())
        .finish();
    // The test runtime is single-threaded: the server's tasks log here too.
    let _guard = tracing::subscriber::set_default(subscriber);
    let s = Server::start(secured()).await;
    let secret_text = "The vault combination is 7-3-9-SECRETWORD.";
    let body = json!({"documents": [{"source": "vault.md", "text": secret_text}]});
    s.post("/v1/documents", Some(ADMIN), &body)
        .send()
        .await
        .unwrap();
    s.post(
        "/v1/ask",
        Some(ADMIN),
        &json!({"question": "What is the vault combination?"}),
    )
    .send()
    .await
    .unwrap();
    s.post(
        "/v1/ask",
        Some("wrong-key-SECRETKEY"),
        &json!({"question": "x"}),
    )
    .send()
    .await
    .unwrap();
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.is_empty());
    for line in logs.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string());
    }
    assert!(logs.contains("request_id"), "{logs}");
    assert!(
        logs.contains("\"key\":\"admin\""),
        "the key's name is logged"
    );
    for secret in [ADMIN, "SECRETKEY", "SECRETWORD", &hash_key(ADMIN)] {
        assert!(!logs.contains(secret), "{secret} leaked into the logs");
    }
}

fn scripted(llm: rag::testkit::ScriptedLlm, config: ServerConfig) -> AppState {
    let rag = rag::Rag::builder()
        .llm(llm)
        .sessions(rag::MemorySessionStore::default())
        .build()
        .unwrap();
    AppState::from_rag(rag, config, "scripted").unwrap()
}

#[tokio::test]
async fn generated_answers_cite_sources_plain_streamed_and_openai() {
    use async_openai::types::chat::CreateChatCompletionStreamResponse;
    use rag::testkit::ScriptedLlm;
    let llm = ScriptedLlm::new()
        .then_reply("Rotate them every 90 days [1].")
        .then_reply("Every 90 days [1], says the handbook.")
        .then_reply("Ninety days [1].");
    let s = Server::with_state(scripted(llm, test_config())).await;
    s.post("/v1/documents", None, &docs()).send().await.unwrap();
    let q = json!({"question": "How often should API keys be rotated?"});
    let a: Value = s
        .post("/v1/ask", None, &q)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["text"], "Rotate them every 90 days [1].");
    assert_eq!(a["extractive"], false);
    assert_eq!(a["citations"].as_array().unwrap().len(), 1);
    assert!(a["citations"][0]["source"].is_string());

    let r = s.post("/v1/ask/stream", None, &q).send().await.unwrap();
    let events: Vec<_> = eventsource_stream::EventStream::new(r.bytes_stream())
        .map(|e| e.unwrap())
        .collect()
        .await;
    let text: String = events
        .iter()
        .filter(|e| e.event == "delta")
        .map(|e| {
            serde_json::from_str::<Value>(&e.data).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "Every 90 days [1], says the handbook.");
    assert!(events.iter().filter(|e| e.event == "delta").count() > 1);

    let body = json!({"model": "rag", "stream": true, "messages": [{"role": "user", "content": "How often should API keys be rotated?"}]});
    let r = s
        .post("/v1/chat/completions", None, &body)
        .send()
        .await
        .unwrap();
    let events: Vec<_> = eventsource_stream::EventStream::new(r.bytes_stream())
        .map(|e| e.unwrap())
        .collect()
        .await;
    let text: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<CreateChatCompletionStreamResponse>(&e.data).unwrap())
        .filter_map(|c| c.choices[0].delta.content.clone())
        .collect();
    assert_eq!(text, "Ninety days [1].");
}

#[tokio::test]
async fn a_slow_request_times_out_with_504() {
    use rag::testkit::{ScriptedLlm, Step};
    let llm = ScriptedLlm::new().then(Step::Delay(
        Duration::from_secs(30),
        Box::new(Step::Reply("late".into())),
    ));
    let mut c = test_config();
    c.request_timeout_secs = 1;
    let s = Server::with_state(scripted(llm, c)).await;
    s.post("/v1/documents", None, &docs()).send().await.unwrap();
    let t = std::time::Instant::now();
    let r = s
        .post(
            "/v1/ask",
            None,
            &json!({"question": "How often should API keys be rotated?"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(t.elapsed() < Duration::from_secs(10));
}

/// The default configuration on the local models: the server embeds with
/// bge-small-en-v1.5 (chunks of 512 tokens), does not rerank (the measured
/// default) and answers with the embedded reader (the reader model on a
/// llama-server child, checked by the grounded answerer); with
/// `reranker.kind = "local"` the cross-encoder reranks. Under CI the models
/// and llama-server must be there (`scripts/test` fetches and builds them).
#[tokio::test]
async fn default_config_serves_the_local_models() {
    let Ok(models) = rag::local::LocalModels::from_env() else {
        assert!(
            !rag::testkit::under_ci(),
            "the local models are missing under CI (scripts/fetch-models)"
        );
        eprintln!("NOT RUN: default_config_serves_the_local_models (run scripts/fetch-models)");
        return;
    };
    assert!(
        models.has_bge_embedder() && models.has_reranker() && models.has_chat(),
        "an incomplete models directory: {}",
        models.dir().display()
    );
    if rag_server::llama::find_llama_server().is_none() {
        assert!(
            !rag::testkit::under_ci(),
            "no llama-server under CI (scripts/services/llama-server builds it)"
        );
        eprintln!("NOT RUN: default_config_serves_the_local_models (no llama-server binary)");
        return;
    }
    for reranker in ["none", "local"] {
        let mut c = ServerConfig::default();
        assert_eq!(c.reranker.kind, "none", "the default reranker");
        c.store.kind = "memory".into();
        c.reranker.kind = reranker.into();
        let s = Server::start(c).await;

        let listed: Value = s
            .get("/v1/models", None)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(listed.to_string().contains("rag (reader)"), "{listed}");
        let ready: Value = s
            .get("/ready", None)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ready["status"], "ok", "{ready}");

        let r = s.post("/v1/documents", None, &docs()).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let a: Value = s
            .post(
                "/v1/ask",
                None,
                &json!({"question": "How often should API keys be rotated?", "max_tokens": 48}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // The reader wrote a short answer citing the keys document, which
        // retrieval (and the cross-encoder, when on) ranked first.
        assert_eq!(a["extractive"], false, "{a}");
        assert!(a["model"].as_str().unwrap().starts_with("grounded/"), "{a}");
        let text = a["text"].as_str().unwrap();
        assert!(text.contains("90 days") && text.contains("[1]"), "{a}");
        assert!(text.split_whitespace().count() <= 12, "{a}");
        assert_eq!(a["sources"][0]["source"], "ops/keys.md", "{a}");
        let rerank_ms = a["timings"]["rerank_ms"].as_f64().unwrap_or(0.0);
        if reranker == "local" {
            assert!(rerank_ms > 0.0, "{a}");
        } else {
            assert!(rerank_ms == 0.0, "no reranker by default: {a}");
        }
    }
}

/// `embedder.kind` picks among the local embedders: `bge` and `minilm` name
/// one, `local` and `auto` take the measured default, and a kind that names
/// no local model loads none.
#[test]
fn embedder_kinds_select_the_local_model() {
    use rag_server::state::{DEFAULT_LOCAL_EMBEDDER, LocalEmbedderModel, load_local};
    let Ok(models) = rag::local::LocalModels::from_env() else {
        assert!(
            !rag::testkit::under_ci(),
            "the local models are missing under CI (scripts/fetch-models)"
        );
        eprintln!("NOT RUN: embedder_kinds_select_the_local_model (run scripts/fetch-models)");
        return;
    };
    assert!(models.has_embedder() && models.has_bge_embedder());
    let id = |kind: &str| {
        load_local(kind, "none", "none")
            .unwrap()
            .embedder
            .map(|e| (e.model_id().to_owned(), e.dimensions()))
    };
    let bge = id("bge").expect("bge");
    let minilm = id("minilm").expect("minilm");
    assert_eq!(bge, ("bge-small-en-v1.5".to_owned(), 384));
    assert_eq!(minilm, ("all-MiniLM-L6-v2".to_owned(), 384));
    let default = match DEFAULT_LOCAL_EMBEDDER {
        LocalEmbedderModel::Bge => bge,
        LocalEmbedderModel::MiniLm => minilm,
    };
    assert_eq!(id("local").as_ref(), Some(&default));
    assert_eq!(id("auto").as_ref(), Some(&default));
    assert_eq!(id("hash"), None);
    // An unknown kind is refused by the configuration before loading.
    let mut c = ServerConfig::default();
    c.embedder.kind = "e5".into();
    let err = c.validate().unwrap_err();
    assert!(err.contains("bge, minilm"), "{err}");
}

/// The shipped deployment files (`server/deployments/*.toml`), each checked
/// by the real binary's `check-config` with no `RAG_*` variable set; a copy
/// with an unknown key is refused with exit code 78.
#[test]
fn every_deployment_file_passes_check_config() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deployments");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    let check = |file: &std::path::Path| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_server"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("RAG_")) {
            cmd.env_remove(k);
        }
        cmd.env_remove("DATABASE_URL")
            .arg("check-config")
            .arg("--config")
            .arg(file)
            .output()
            .unwrap()
    };
    for file in &files {
        let out = check(file);
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "configuration is valid"
        );
        // The file is the whole configuration: it parses to what it says.
        let c: ServerConfig = toml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        c.validate().unwrap();
    }
    let broken = tempfile::NamedTempFile::new().unwrap();
    let text = std::fs::read_to_string(&files[0]).unwrap() + "\n[ask]\ntop_kk = 5\n";
    std::fs::write(broken.path(), text).unwrap();
    let out = check(broken.path());
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid configuration"));
}

/// Sessions in PostgreSQL while the vectors are elsewhere: a session made
/// before a restart is found after it, with its messages.
#[tokio::test]
async fn postgres_sessions_survive_a_restart_with_another_store() {
    let Some(url) = rag::testkit::service_url(
        "RAG_TEST_PG_URL",
        "postgres_sessions_survive_a_restart_with_another_store",
        "scripts/test starts a server",
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = test_config();
    c.store.path = Some(dir.path().join("store.bin"));
    c.sessions.kind = "postgres".into();
    c.sessions.url = Some(url);
    c.sessions.table_prefix = Some(format!(
        "t_sess_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ));
    c.sessions.max_per_namespace = 2;
    let s = Server::start(c.clone()).await;
    assert_eq!(
        s.post("/v1/documents", None, &docs())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let sess: Value = s
        .post(
            "/v1/sessions",
            None,
            &json!({"metadata": {"title": "keys"}}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = sess["id"].as_str().unwrap().to_owned();
    let a = s
        .post(
            "/v1/ask",
            None,
            &json!({"question": "How often should API keys be rotated?", "session_id": id}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), StatusCode::OK);
    // The cap: a second session fits, a third is refused.
    assert_eq!(
        s.post("/v1/sessions", None, &json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    let (status, body) = error_of(
        s.post("/v1/sessions", None, &json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("session_limit"))
    );
    drop(s);
    let again = Server::start(c).await;
    let h: Value = again
        .get(&format!("/v1/sessions/{id}"), None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["session"]["metadata"]["title"], "keys", "{h}");
    assert_eq!(h["messages"].as_array().unwrap().len(), 2, "{h}");
}

/// A deployment file run end to end: `lance-groq-resilient.toml` with
/// Groq unreachable (a closed port) and its OpenAI-compatible fallback on
/// the real llama-server that `scripts/test` starts; the answers come from
/// the fallback, cited, and a session's follow-ups run into the file's
/// per-session rate limit. The stand-in model is a 135M-parameter one, so
/// the test turns on `llm.grounded` to have its replies cited and checked.
#[tokio::test]
async fn deployment_lance_groq_falls_back_and_limits_a_session() {
    let Some(stand_in) = rag::testkit::service_url(
        "RAG_TEST_OPENAI_URL",
        "deployment_lance_groq_falls_back_and_limits_a_session",
        "scripts/test starts llama-server",
    ) else {
        return;
    };
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deployments/lance-groq-resilient.toml");
    let mut c: ServerConfig = toml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    c.bind = "127.0.0.1:0".into();
    c.store.path = Some(dir.path().join("lance"));
    c.llm.base_url = Some("http://127.0.0.1:1/v1".into());
    c.llm.grounded = true;
    c.layers.retry_attempts = 1;
    let fallback = c.llm.fallback.as_mut().unwrap();
    fallback.base_url = Some(stand_in);
    fallback.model = std::env::var("RAG_TEST_OPENAI_MODEL").ok();
    let state =
        AppState::build_with_env(c, |k| (k == "GROQ_API_KEY").then(|| "gsk-test".to_owned()))
            .await
            .unwrap();
    let s = Server::with_state(state).await;
    assert_eq!(
        s.post("/v1/documents", None, &docs())
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let sess: Value = s
        .post("/v1/sessions", None, &json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ask =
        json!({"question": "How often should API keys be rotated?", "session_id": sess["id"]});
    let a: Value = s
        .post("/v1/ask", None, &ask)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(a["citations"][0]["source"], "ops/keys.md", "{a}");
    assert_eq!(a["sources"][0]["source"], "ops/keys.md", "{a}");
    // The file's 10 questions a minute per session: eleven sent at once
    // into a new session (at once, as the bucket refills one every 6 s
    // and a question to the stand-in takes seconds) are ten streams and
    // one 429.
    let burst: Value = s
        .post("/v1/sessions", None, &json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses = same_question_at_once(
        &s,
        None,
        &json!({"question": "How often should API keys be rotated?", "session_id": burst["id"]}),
        11,
    )
    .await;
    assert_eq!(
        statuses
            .iter()
            .filter(|(st, _)| *st == StatusCode::OK)
            .count(),
        10,
        "{statuses:?}"
    );
    let limited: Vec<_> = statuses
        .iter()
        .filter(|(st, _)| *st == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(limited.len(), 1, "{statuses:?}");
    assert!(limited[0].1, "429 carries Retry-After");
    let h: Value = s
        .get(
            &format!("/v1/sessions/{}", sess["id"].as_str().unwrap()),
            None,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(h["messages"].as_array().unwrap().len() >= 2, "{h}");
}

#[tokio::test]
async fn admin_export_and_import_move_a_namespace_between_servers() {
    let a = Server::start(secured()).await;
    a.post("/v1/documents?namespace=acme", Some(ADMIN), &docs())
        .send()
        .await
        .unwrap();
    let ingest = json!({"namespace": "acme", "documents": docs()["documents"]});
    assert_eq!(
        a.post("/v1/documents", Some(ADMIN), &ingest)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let sess: Value = a
        .post("/v1/sessions", Some(ACME_READ), &json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ask =
        json!({"question": "How often should API keys be rotated?", "session_id": sess["id"]});
    let before: Value = a
        .post("/v1/ask", Some(ACME_READ), &ask)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Only the admin scope exports.
    let r = a
        .get("/v1/admin/export?namespace=acme", Some(ACME_INGEST))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = a
        .get("/v1/admin/export?namespace=acme&sessions=true", Some(ADMIN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/gzip");
    let sha = r.headers()["x-rag-sha256"].to_str().unwrap().to_owned();
    let file = r.bytes().await.unwrap().to_vec();

    // A file larger than max_import_bytes fits the JSON body limit nowhere;
    // the import route has its own limit.
    let mut small = secured();
    small.body_limit_bytes = 64;
    small.admin.max_import_bytes = file.len() as u64;
    let b = Server::start(small).await;
    let import = |s: &Server, query: &str, body: Vec<u8>, key: &str| {
        s.client
            .post(s.url(&format!("/v1/admin/import{query}")))
            .header("content-type", "application/gzip")
            .header("x-api-key", key)
            .body(body)
    };
    // A truncated file is refused and nothing is written.
    let r = import(
        &b,
        "?namespace=acme",
        file[..file.len() / 2].to_vec(),
        ADMIN,
    )
    .send()
    .await
    .unwrap();
    let (status, body) = error_of(r).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_backup");
    let listed: Value = b
        .get("/v1/documents?namespace=acme", Some(ADMIN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed["documents"].as_array().unwrap().is_empty(),
        "{listed}"
    );
    // One byte over the limit is 413.
    let mut long = file.clone();
    long.push(0);
    let (status, body) = error_of(
        import(&b, "?namespace=acme", long, ADMIN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    let r = import(&b, "?namespace=acme&sessions=true", file.clone(), ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = r.json().await.unwrap();
    assert_eq!(report["documents_written"], 2, "{report}");
    assert_eq!(report["sessions_written"], 1, "{report}");
    assert_eq!(report["sha256"], sha.as_str());
    let after: Value = b
        .post(
            "/v1/ask",
            Some(ACME_READ),
            &json!({"question": ask["question"]}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["answer"], before["answer"], "{after}");
    assert_eq!(after["citations"], before["citations"], "{after}");

    // Into a namespace that holds data: 409 unless replace or resume.
    let (status, body) = error_of(
        import(&b, "?namespace=acme", file.clone(), ADMIN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "namespace_not_empty");
    let r: Value = import(&b, "?namespace=acme&mode=resume", file.clone(), ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            r["documents_written"].as_u64(),
            r["documents_skipped"].as_u64()
        ),
        (Some(0), Some(2)),
        "{r}"
    );
    // A key bound to a tenant cannot import into another.
    let (status, _) = error_of(
        import(&b, "?namespace=globex", file, ACME_INGEST)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn admin_import_refuses_a_file_of_another_embedder_before_writing() {
    let a = Server::start(secured()).await;
    a.post("/v1/documents", Some(ADMIN), &docs())
        .send()
        .await
        .unwrap();
    let file = a
        .get("/v1/admin/export", Some(ADMIN))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // The same server with a 128-dimension embedder and store.
    let mut state = AppState::build(secured()).await.unwrap();
    state.rag = rag::Rag::builder()
        .embedder(rag::HashEmbedder::new(128))
        .store(rag::MemoryVectorStore::default())
        .build()
        .unwrap();
    let b = Server::with_state(state).await;
    let r = b
        .client
        .post(b.url("/v1/admin/import"))
        .header("x-api-key", ADMIN)
        .header("content-type", "application/gzip")
        .body(file)
        .send()
        .await
        .unwrap();
    let (status, body) = error_of(r).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("embedder")
            || body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("dimension"),
        "{body}"
    );
    let listed: Value = b
        .get("/v1/documents", Some(ADMIN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed["documents"].as_array().unwrap().is_empty(),
        "{listed}"
    );
}

/// Sends `n` copies of one question at once to `/v1/ask/stream`; each
/// answer's status and whether it carries `Retry-After`. The streams are
/// dropped once their status is in (which stops their generation), so a
/// burst costs no model time and no refill happens meanwhile.
async fn same_question_at_once(
    s: &Server,
    key: Option<&str>,
    ask: &Value,
    n: usize,
) -> Vec<(StatusCode, bool)> {
    let sent = (0..n).map(|_| s.post("/v1/ask/stream", key, ask).send());
    futures::future::join_all(sent)
        .await
        .into_iter()
        .map(|r| {
            let r = r.unwrap();
            (r.status(), r.headers().contains_key("retry-after"))
        })
        .collect()
}

/// A deployment file of `server/deployments`, bound to a free port.
fn deployment(name: &str) -> ServerConfig {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deployments")
        .join(name);
    let mut c: ServerConfig = toml::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    c.bind = "127.0.0.1:0".into();
    c
}

/// What every deployment must do: ingest, answer a question from the right
/// file with citations of what it retrieved, and answer a follow-up in the
/// same session with the first exchange in its history.
async fn ingest_ask_follow_up(s: &Server, reader: Option<&str>, ingester: Option<&str>) {
    let r = s
        .post("/v1/documents", ingester, &docs())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let sess: Value = s
        .post("/v1/sessions", reader, &json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ask = |q: &str| json!({"question": q, "session_id": sess["id"]});
    let r = s
        .post(
            "/v1/ask",
            reader,
            &ask("How often should API keys be rotated?"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["sources"][0]["source"], "ops/keys.md", "{a}");
    let cited: Vec<&str> = a["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["source"].as_str().unwrap())
        .collect();
    assert!(cited.contains(&"ops/keys.md"), "{a}");
    let r = s
        .post(
            "/v1/ask",
            reader,
            &ask("And how long do the old ones stay valid?"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let follow: Value = r.json().await.unwrap();
    assert_eq!(follow["sources"][0]["source"], "ops/keys.md", "{follow}");
    let h: Value = s
        .get(
            &format!("/v1/sessions/{}", sess["id"].as_str().unwrap()),
            reader,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let messages = h["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4, "{h}");
    assert_eq!(
        messages[2]["content"],
        "And how long do the old ones stay valid?"
    );
}

/// `deployments/pgvector-openai.toml`: vectors and sessions in PostgreSQL,
/// OpenAI embeddings and chat (llama-server standing in for both), the
/// CORS allow-list.
#[tokio::test]
async fn deployment_pgvector_openai_runs_end_to_end() {
    let name = "deployment_pgvector_openai_runs_end_to_end";
    let Some(pg) =
        rag::testkit::service_url("RAG_TEST_PG_URL", name, "scripts/test starts PostgreSQL")
    else {
        return;
    };
    let Some(chat) = rag::testkit::service_url(
        "RAG_TEST_OPENAI_URL",
        name,
        "scripts/test starts llama-server",
    ) else {
        return;
    };
    let Some(embed) = rag::testkit::service_url(
        "RAG_TEST_EMBED_URL",
        name,
        "scripts/test starts llama-server start-embeddings",
    ) else {
        return;
    };
    let mut c = deployment("pgvector-openai.toml");
    let prefix = format!("t_dep_{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    c.store.url = Some(pg);
    c.store.table_prefix = Some(prefix.clone());
    c.sessions.table_prefix = Some(prefix);
    c.embedder.base_url = Some(embed);
    c.embedder.model = std::env::var("RAG_TEST_EMBED_MODEL").ok();
    c.embedder.dimensions = std::env::var("RAG_TEST_EMBED_DIMENSIONS")
        .ok()
        .map(|d| d.parse().unwrap());
    c.llm.base_url = Some(chat);
    c.llm.model = std::env::var("RAG_TEST_OPENAI_MODEL").ok();
    // The stand-in is a 135M-parameter model: its replies are checked and
    // cited by the grounded answerer.
    c.llm.grounded = true;
    let state =
        AppState::build_with_env(c, |k| (k == "OPENAI_API_KEY").then(|| "sk-test".to_owned()))
            .await
            .unwrap();
    assert_eq!(state.config.ask.top_k, Some(5));
    assert_eq!(state.rag.config().history_window, 10);
    let s = Server::with_state(state).await;
    ingest_ask_follow_up(&s, None, None).await;
    // The allow-listed origin gets CORS headers, another does not.
    for (origin, allowed) in [
        ("https://app.example.com", true),
        ("https://evil.example", false),
    ] {
        let r = s
            .client
            .request(reqwest::Method::OPTIONS, s.url("/v1/ask"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers().get("access-control-allow-origin").is_some(),
            allowed,
            "{origin}"
        );
    }
}

/// `deployments/qdrant-postgres-openai.toml`: Qdrant vectors, PostgreSQL
/// sessions, OpenAI (llama-server standing in), read and ingest keys, ten
/// questions a minute per key. Runs where scripts/test has started Qdrant
/// (a `qdrant` binary); otherwise scripts/test reports it NOT RUN by name.
#[tokio::test]
async fn deployment_qdrant_postgres_openai_runs_end_to_end() {
    let name = "deployment_qdrant_postgres_openai_runs_end_to_end";
    let Some(qdrant) = rag::testkit::service_url(
        "RAG_TEST_QDRANT_URL",
        name,
        "scripts/test starts Qdrant when a qdrant binary exists",
    ) else {
        return;
    };
    let Some(pg) =
        rag::testkit::service_url("RAG_TEST_PG_URL", name, "scripts/test starts PostgreSQL")
    else {
        return;
    };
    let Some(chat) = rag::testkit::service_url(
        "RAG_TEST_OPENAI_URL",
        name,
        "scripts/test starts llama-server",
    ) else {
        return;
    };
    let Some(embed) = rag::testkit::service_url(
        "RAG_TEST_EMBED_URL",
        name,
        "scripts/test starts llama-server start-embeddings",
    ) else {
        return;
    };
    let mut c = deployment("qdrant-postgres-openai.toml");
    let unique = &uuid::Uuid::new_v4().simple().to_string()[..10];
    c.store.url = Some(qdrant);
    c.store.collection = Some(format!("t_dep_{unique}"));
    c.sessions.url = Some(pg);
    c.sessions.table_prefix = Some(format!("t_dep_{unique}"));
    c.embedder.base_url = Some(embed);
    c.embedder.model = std::env::var("RAG_TEST_EMBED_MODEL").ok();
    c.embedder.dimensions = std::env::var("RAG_TEST_EMBED_DIMENSIONS")
        .ok()
        .map(|d| d.parse().unwrap());
    c.llm.base_url = Some(chat);
    c.llm.model = std::env::var("RAG_TEST_OPENAI_MODEL").ok();
    c.llm.grounded = true;
    let state =
        AppState::build_with_env(c, |k| (k == "OPENAI_API_KEY").then(|| "sk-test".to_owned()))
            .await
            .unwrap();
    let s = Server::with_state(state).await;
    // The file's example keys: the read key may not ingest.
    let (read, ingest) = ("example-chat-app-key", "example-ingest-job-key");
    let r = s
        .post("/v1/documents", Some(read), &docs())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    ingest_ask_follow_up(&s, Some(read), Some(ingest)).await;
    // Ten questions a minute per key: eleven at once from the ingest key
    // (which has asked nothing yet) are ten answers and one 429; the read
    // key's questions are counted apart.
    let ask = json!({"question": "How often should API keys be rotated?"});
    let statuses = same_question_at_once(&s, Some(ingest), &ask, 11).await;
    assert_eq!(
        statuses
            .iter()
            .filter(|(st, _)| *st == StatusCode::OK)
            .count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|(st, retry)| *st == StatusCode::TOO_MANY_REQUESTS && *retry)
            .count(),
        1,
        "{statuses:?}"
    );
}

/// `deployments/lance-groq-uploads.toml`: LanceDB, Groq (llama-server
/// standing in), uploads of Markdown and text up to 512 KiB, caches, 60
/// requests a minute.
#[tokio::test]
async fn deployment_lance_groq_uploads_runs_end_to_end() {
    let name = "deployment_lance_groq_uploads_runs_end_to_end";
    let Some(chat) = rag::testkit::service_url(
        "RAG_TEST_OPENAI_URL",
        name,
        "scripts/test starts llama-server",
    ) else {
        return;
    };
    let mut c = deployment("lance-groq-uploads.toml");
    let dir = tempfile::tempdir().unwrap();
    c.store.path = Some(dir.path().join("lance"));
    c.llm.base_url = Some(chat);
    c.llm.model = std::env::var("RAG_TEST_OPENAI_MODEL").ok();
    c.llm.grounded = true;
    let state =
        AppState::build_with_env(c, |k| (k == "GROQ_API_KEY").then(|| "gsk-test".to_owned()))
            .await
            .unwrap();
    let rag = state.rag.clone();
    let s = Server::with_state(state).await;
    let upload = |name: &str, bytes: Vec<u8>| {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned());
        s.client
            .post(s.url("/v1/documents/upload"))
            .multipart(reqwest::multipart::Form::new().part("file", part))
    };
    let r = upload("notes.pdf", b"%PDF-1.7".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = upload("big.md", vec![b'a'; 512 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = upload(
        "ops/backups.md",
        b"# Backups\n\nBackups are kept for thirty days and tested every week.".to_vec(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    ingest_ask_follow_up(&s, None, None).await;
    // The answer cache: the same question outside a session is answered
    // once by the model.
    let ask = json!({"question": "How long are backups kept?"});
    let first: Value = s
        .post("/v1/ask", None, &ask)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["sources"][0]["source"], "ops/backups.md", "{first}");
    let again: Value = s
        .post("/v1/ask", None, &ask)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["answer"], first["answer"]);
    let stats = rag
        .answer_cache_stats()
        .expect("the file turns the answer cache on");
    assert!(stats.hits >= 1, "answer cache: {stats:?}");
    // 60 requests a minute per client: a few asks and uploads went already.
    let mut limited = false;
    for _ in 0..80 {
        let r = s.get("/v1/documents", None).send().await.unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = true;
            break;
        }
    }
    assert!(limited, "60 requests a minute");
}

#[tokio::test]
async fn the_chat_page_is_served_with_its_own_policy_and_can_be_turned_off() {
    let s = Server::start(secured()).await;
    // The page and its assets need no key (the data they show does).
    let page = s.get("/", None).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let html = page.text().await.unwrap();
    // No inline script or style: the policy allows 'self' only.
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"));
    assert!(!csp.contains("unsafe"), "{csp}");
    assert!(html.contains(r#"<script src="/ui/app.js" defer></script>"#));
    assert_eq!(
        html.matches("<script").count(),
        1,
        "one script, no inline code"
    );
    assert!(
        !html.contains("style=") && !html.contains("<style"),
        "no inline style"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );
    // The API keeps its strict policy.
    let api = s.get("/health", None).send().await.unwrap();
    assert_eq!(
        api.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );

    // Assets revalidate with their entity tag.
    let js = s.get("/ui/app.js", None).send().await.unwrap();
    assert_eq!(js.status(), StatusCode::OK);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(js.headers()["cache-control"], "no-cache");
    let etag = js.headers()["etag"].to_str().unwrap().to_owned();
    assert!(js.text().await.unwrap().contains("/v1/ask/stream"));
    let again = s
        .get("/ui/app.js", None)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    for (asset, kind) in [("app.css", "text/css"), ("icon.svg", "image/svg+xml")] {
        let r = s.get(&format!("/ui/{asset}"), None).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{asset}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    let (status, body) = error_of(s.get("/ui/../Cargo.toml", None).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, _) = error_of(s.get("/ui/secret.js", None).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // What the page reads first: without a key, 401; with one, the key's
    // namespace, scopes and the upload limits.
    let (status, _) = error_of(s.get("/v1/info", None).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let info: Value = s
        .get("/v1/info", Some(ACME_READ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["auth"], true);
    assert_eq!(info["key"], "acme-read");
    assert_eq!(info["namespace"], "acme");
    assert_eq!(info["namespace_bound"], true);
    assert_eq!(info["can_ingest"], false);
    assert_eq!(info["sessions"], true);
    assert_eq!(info["answerer"], "extractive");
    assert_eq!(info["upload"]["max_file_bytes"], 1024 * 1024);
    assert!(
        info["upload"]["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("md"))
    );
    let info: Value = s
        .get("/v1/info", Some(ADMIN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            &info["namespace"],
            &info["namespace_bound"],
            &info["can_ingest"]
        ),
        (&json!("default"), &json!(false), &json!(true))
    );

    // The sessions list: most recent first, one tenant's only.
    let mut ids = Vec::new();
    for title in ["first", "second"] {
        let r: Value = s
            .post(
                "/v1/sessions",
                Some(ACME_READ),
                &json!({"metadata": {"title": title}}),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(r["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.post("/v1/sessions", Some(GLOBEX_INGEST), &json!({}))
        .send()
        .await
        .unwrap();
    let list: Value = s
        .get("/v1/sessions", Some(ACME_READ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let titles: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metadata"]["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["second", "first"]);
    let one: Value = s
        .get("/v1/sessions?limit=1", Some(ACME_READ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["sessions"][0]["id"], ids[1].as_str());
    assert_eq!(one["sessions"].as_array().unwrap().len(), 1);
    let (status, body) = error_of(
        s.get("/v1/sessions?namespace=globex", Some(ACME_READ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = error_of(
        s.get("/v1/sessions?limit=0", Some(ACME_READ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "limit");

    // The document lists what is served, and the paths of what is not.
    let doc: Value = s
        .get("/openapi.json", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for p in ["/", "/ui/{asset}", "/v1/info"] {
        assert!(doc["paths"][p].is_object(), "{p} missing from openapi.json");
    }
    assert!(doc["paths"]["/v1/sessions"]["get"].is_object());

    let mut off = secured();
    off.ui.chat = false;
    let s = Server::start(off).await;
    for path in ["/", "/ui/app.js"] {
        let (status, _) = error_of(s.get(path, None).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let doc: Value = s
        .get("/openapi.json", None)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"].get("/").is_none() && doc["paths"].get("/ui/{asset}").is_none());
    assert!(doc["paths"]["/v1/info"].is_object());
}

#[tokio::test]
async fn the_api_docs_are_served_from_the_binary_with_their_own_policies_and_can_be_turned_off() {
    let s = Server::start(secured()).await;
    let policy = |r: &reqwest::Response| {
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    // The pages need no key; they read /openapi.json beside them.
    for (path, script) in [
        ("/docs", "docs/assets/swagger-ui-bundle.js"),
        ("/redoc", "docs/assets/redoc.standalone.js"),
    ] {
        let page = s.get(path, None).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{path}");
        assert!(
            page.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let csp = policy(&page);
        // Scripts from here only, none inline or evaluated; requests to
        // this server only (the key typed in "Authorize" cannot leave).
        assert!(csp.contains("script-src 'self';"), "{path}: {csp}");
        assert!(csp.contains("connect-src 'self';"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-eval"), "{path}: {csp}");
        assert!(csp.starts_with("default-src 'none';"), "{path}: {csp}");
        assert_eq!(page.headers()["x-frame-options"], "DENY");
        let html = page.text().await.unwrap();
        assert!(html.contains(script), "{path} loads {script}");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{path}: nothing from elsewhere"
        );
    }
    let redoc = s.get("/redoc", None).send().await.unwrap();
    assert!(policy(&redoc).contains("worker-src 'self' blob:"));
    // The API keeps its strict policy.
    let api = s.get("/openapi.json", None).send().await.unwrap();
    assert_eq!(policy(&api), "default-src 'none'; frame-ancestors 'none'");

    // A vendored script: compressed to a client that takes gzip, plain to
    // one that does not, each with its own entity tag.
    let path = "/docs/assets/swagger-ui-bundle.js";
    let gz = s
        .get(path, None)
        .header("accept-encoding", "br, gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.status(), StatusCode::OK);
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    assert_eq!(gz.headers()["vary"], "accept-encoding");
    assert!(
        gz.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let gz_tag = gz.headers()["etag"].to_str().unwrap().to_owned();
    let gz_body = gz.bytes().await.unwrap();
    assert_eq!(&gz_body[..2], &[0x1f, 0x8b], "gzip magic");
    for refused in [None, Some("gzip;q=0, identity"), Some("br")] {
        let mut req = s.get(path, None);
        if let Some(v) = refused {
            req = req.header("accept-encoding", v);
        }
        let plain = req.send().await.unwrap();
        assert_eq!(plain.status(), StatusCode::OK);
        assert!(
            plain.headers().get("content-encoding").is_none(),
            "{refused:?}"
        );
        let tag = plain.headers()["etag"].to_str().unwrap().to_owned();
        assert_ne!(tag, gz_tag, "one tag per representation");
        let text = plain.text().await.unwrap();
        assert!(text.contains("SwaggerUIBundle"), "{refused:?}");
        assert!(text.len() > 4 * gz_body.len() / 2, "decompressed");
    }
    let again = s
        .get(path, None)
        .header("accept-encoding", "gzip")
        .header("if-none-match", &gz_tag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    for (asset, kind) in [
        ("swagger-ui.css", "text/css"),
        ("swagger-init.js", "text/javascript"),
        ("redoc.standalone.js", "text/javascript"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let r = s
            .get(&format!("/docs/assets/{asset}"), None)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{asset}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{asset}"
        );
    }
    for bad in [
        "/docs/assets/../Cargo.toml",
        "/docs/assets/app.js",
        "/docs/",
    ] {
        let (status, body) = error_of(s.get(bad, None).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}");
        assert_eq!(body["error"]["code"], "not_found", "{bad}");
    }

    // The document offers the pages and names their assets.
    let doc = s.get_json("/openapi.json", None).await;
    for p in ["/docs", "/redoc", "/docs/assets/{asset}"] {
        assert!(
            doc["paths"][p]["get"].is_object(),
            "{p} missing from openapi.json"
        );
    }
    let names = &doc["paths"]["/docs/assets/{asset}"]["get"]["parameters"][0]["schema"]["enum"];
    assert!(
        names
            .as_array()
            .unwrap()
            .contains(&json!("swagger-ui-bundle.js")),
        "{names}"
    );

    // Turned off: 404, and not in the document; the chat page stays.
    let mut off = secured();
    off.ui.api_docs = false;
    let s = Server::start(off).await;
    for path in ["/docs", "/redoc", "/docs/assets/swagger-ui.css"] {
        let (status, _) = error_of(s.get(path, None).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let doc = s.get_json("/openapi.json", None).await;
    for p in ["/docs", "/redoc", "/docs/assets/{asset}"] {
        assert!(doc["paths"].get(p).is_none(), "{p} still documented");
    }
    assert!(doc["paths"]["/"].is_object());
    assert_eq!(
        s.get("/", None).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn backend_errors_reach_clients_as_codes_and_request_ids_without_detail() {
    use rag::Error as E;
    use rag::testkit::ScriptedLlm;
    // Each error names an internal host, a path or a secret-looking token
    // that must stay in the server's log.
    let secret = "10.0.0.7";
    let backend = || {
        E::backend(
            "openai",
            true,
            format!("POST http://{secret}:8000/v1/chat/completions: connection refused"),
        )
    };
    let cases: Vec<(E, StatusCode, &str)> = vec![
        (
            E::backend(
                "pgvector",
                false,
                format!("SELECT * FROM rag_chunks: host {secret}"),
            ),
            StatusCode::BAD_GATEWAY,
            "backend_error",
        ),
        (
            E::RetriesExhausted {
                attempts: 3,
                last: Box::new(backend()),
            },
            StatusCode::BAD_GATEWAY,
            "backend_error",
        ),
        (
            E::Timeout {
                operation: format!("POST http://{secret}/v1/chat/completions"),
                elapsed: Duration::from_secs(30),
            },
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
        ),
        (
            E::RetriesExhausted {
                attempts: 3,
                last: Box::new(E::RateLimited {
                    retry_after: Some(Duration::from_secs(7)),
                }),
            },
            StatusCode::TOO_MANY_REQUESTS,
            "upstream_rate_limited",
        ),
        (
            E::Unauthorized {
                message: format!("key sk-…{secret} refused"),
            },
            StatusCode::BAD_GATEWAY,
            "upstream_unauthorized",
        ),
        (
            E::CircuitOpen {
                breaker: format!("openai@{secret}"),
                retry_after: Duration::from_secs(12),
            },
            StatusCode::SERVICE_UNAVAILABLE,
            "circuit_open",
        ),
        (
            E::Overloaded {
                resource: format!("/models/{secret}.gguf"),
                in_use: 1,
                queued: 4,
                retry_after: Duration::from_secs(2),
            },
            StatusCode::SERVICE_UNAVAILABLE,
            "model_busy",
        ),
        (
            E::Corrupt {
                location: format!("/var/lib/rag/{secret}/store.bin"),
                message: "checksum".into(),
            },
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
        ),
    ];
    let llm = ScriptedLlm::new();
    for (e, _, _) in &cases {
        llm.push(rag::testkit::Step::Fail(e.clone()));
        llm.push(rag::testkit::Step::Fail(e.clone()));
    }
    let s = Server::with_state(scripted(llm, test_config())).await;
    s.post("/v1/documents", None, &docs()).send().await.unwrap();
    let q = json!({"question": "How often should API keys be rotated?"});
    for (e, status, code) in &cases {
        let r = s.post("/v1/ask", None, &q).send().await.unwrap();
        assert_eq!(r.status(), *status, "{e}");
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let retry_after = r.headers().get("retry-after").cloned();
        let body: Value = r.json().await.unwrap();
        let text = body.to_string();
        assert_eq!(body["error"]["code"], *code, "{e}: {text}");
        assert_eq!(body["error"]["request_id"], id.as_str(), "{text}");
        assert!(!text.contains(secret), "{e}: the detail leaked: {text}");
        for word in [
            "http", "SELECT", "/var", "sk-", "openai", "pgvector", "gguf",
        ] {
            assert!(!text.contains(word), "{e}: {word} leaked: {text}");
        }
        if let Some(wait) = e.retry_after() {
            assert_eq!(retry_after.unwrap(), wait.as_secs().to_string().as_str());
        }
        // The same through the stream: an error body or an `error` event,
        // never the detail.
        let r = s.post("/v1/ask/stream", None, &q).send().await.unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        let text = r.text().await.unwrap();
        assert!(text.contains(code), "{e}: {text}");
        assert!(text.contains(&id), "{e}: no request id in {text}");
        assert!(!text.contains(secret), "{e}: the detail leaked: {text}");
    }
    // Errors about the request keep their message, with the id as well.
    let r = s
        .post("/v1/ask", None, &json!({"question": ""}))
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let (status, body) = error_of(r).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "question");
    assert_eq!(body["error"]["request_id"], id.as_str());
}

/// Replays the request fuzz target's seed corpus and every crash it found
/// (`fuzz/corpus/server_request`, `fuzz/regressions/server_request`)
/// through the checks the fuzzer runs (`rag_server::fuzz::request`).
#[cfg(feature = "fuzz")]
#[test]
fn server_request_fuzz_corpus() {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    rag::fuzz::replay_corpus(&fuzz, "server_request", rag_server::fuzz::request);
}
