//! GroqChat against a local server scripted in the test (wiremock on
//! 127.0.0.1:0) speaking Groq's flavour of the OpenAI wire format:
//! `/openai/v1` paths, `service_tier: "on_demand"`, usage under `x_groq`,
//! rate-limit headers with Go-style durations.

use std::time::Duration;

use futures::StreamExt;
use rag_core::testkit::llm as llm_kit;
use rag_core::{ChatDelta, ChatRequest, Error, LlmClient, Message};
use rag_llm_groq::{GroqChat, groq_config, models};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "gsk_test_0a1b2c3d4e5f";
const MODEL: &str = models::LLAMA_3_1_8B_INSTANT;

fn chunk(delta: &Value, finish: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-g", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
        "system_fingerprint": "fp_1", "service_tier": "on_demand",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        "x_groq": {"id": "req_1"}
    })
}

/// Groq's stream: role, content deltas, a last chunk with the finish reason
/// and the usage under `x_groq`, then `[DONE]`.
fn groq_sse() -> String {
    let mut events = vec![
        chunk(&json!({"role": "assistant", "content": ""}), None),
        chunk(&json!({"content": "Red"}), None),
        chunk(&json!({"content": "."}), None),
    ];
    let mut last = chunk(&json!({}), Some("stop"));
    last["x_groq"]["usage"] =
        json!({"prompt_tokens": 18, "completion_tokens": 2, "total_tokens": 20});
    events.push(last);
    let mut body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    body.push_str("data: [DONE]\n\n");
    body
}

#[derive(Clone, Debug)]
struct FakeGroq;

impl Respond for FakeGroq {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        if body["stream"] == json!(true) {
            ResponseTemplate::new(200).set_body_raw(groq_sse(), "text/event-stream")
        } else {
            ResponseTemplate::new(200).set_body_json(json!({
                "id": "chatcmpl-g", "object": "chat.completion", "created": 1, "model": MODEL,
                "service_tier": "on_demand", "system_fingerprint": "fp_1",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Red."},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": {"queue_time": 0.01, "prompt_tokens": 18, "prompt_time": 0.002,
                          "completion_tokens": 2, "completion_time": 0.003, "total_tokens": 20,
                          "total_time": 0.005},
                "x_groq": {"id": "req_1"}
            }))
        }
    }
}

async fn groq(server: &MockServer) -> GroqChat {
    GroqChat::with_config(
        groq_config(KEY, MODEL).with_base_url(format!("{}/openai/v1", server.uri())),
    )
    .unwrap()
}

fn request() -> ChatRequest {
    ChatRequest::new(vec![Message::user("Name a primary colour.")]).with_max_tokens(8)
}

#[tokio::test]
async fn groq_passes_the_llm_conformance_suite() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/openai/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(FakeGroq)
        .mount(&server)
        .await;
    let llm = groq(&server).await;
    llm_kit::run_all(&llm).await;
    assert!(!server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn groq_completion_and_stream_read_groq_usage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(FakeGroq)
        .mount(&server)
        .await;
    let llm = groq(&server).await;
    let answer = llm.complete(request()).await.unwrap();
    assert_eq!(answer.text, "Red.");
    assert_eq!(answer.usage.total_tokens(), 20);
    let items: Vec<_> = llm.stream(request()).await.unwrap().collect().await;
    assert!(matches!(&items[0], Ok(ChatDelta::Text(t)) if t == "Red"));
    match items.last() {
        Some(Ok(ChatDelta::Finish { usage, model, .. })) => {
            assert_eq!(
                (usage.prompt_tokens, usage.completion_tokens),
                (18, 2),
                "x_groq.usage"
            );
            assert_eq!(model, MODEL);
        }
        other => panic!("expected Finish, got {other:?}"),
    }
}

#[tokio::test]
async fn groq_rate_limit_headers_become_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-ratelimit-limit-requests", "14400")
                .insert_header("x-ratelimit-remaining-requests", "0")
                .insert_header("x-ratelimit-reset-requests", "2m59.56s")
                .insert_header("x-ratelimit-limit-tokens", "6000")
                .insert_header("x-ratelimit-remaining-tokens", "5990")
                .insert_header("x-ratelimit-reset-tokens", "100ms")
                .set_body_json(json!({"error": {
                    "message": "Rate limit reached for model `llama-3.1-8b-instant` on requests per day (RPD)",
                    "type": "requests", "code": "rate_limit_exceeded"
                }})),
        )
        .mount(&server)
        .await;
    let llm = groq(&server).await;
    let err = llm.complete(request()).await.unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after: Some(d) } if d == Duration::from_secs_f64(179.56)),
        "{err:?}"
    );
    let err = llm.stream(request()).await.err().unwrap();
    assert_eq!(err.retry_after(), Some(Duration::from_secs_f64(179.56)));
}

#[tokio::test]
async fn groq_errors_name_groq_and_hide_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({"error": {
            "message": format!("Service Unavailable for key {KEY}"), "type": "internal_server_error"
        }})))
        .mount(&server)
        .await;
    let llm = groq(&server).await;
    let err = llm.complete(request()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Backend { backend, retryable: true, .. } if backend == "groq"),
        "{err:?}"
    );
    let shown = format!("{err} {err:?} {llm:?}");
    assert!(!shown.contains(KEY), "{shown}");
}
