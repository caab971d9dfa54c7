//! rag-llm-openai against a local server scripted in the test (wiremock on
//! 127.0.0.1:0, and a raw TCP server for cut and stalled streams), speaking
//! the real wire format.

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use rag_core::testkit::{embedder as embedder_kit, llm as llm_kit};
use rag_core::{ChatDelta, ChatRequest, Embedder, Error, FinishReason, LlmClient, Message, Result};
use rag_llm_openai::{OpenAiChat, OpenAiConfig, OpenAiEmbedder};
use serde_json::{Value, json};
use support::*;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk-test-9f8e7d6c5b4a";

fn config(server: &str) -> OpenAiConfig {
    OpenAiConfig::new()
        .with_base_url(server)
        .with_api_key(KEY)
        .with_chat_model(MODEL)
        .with_embedding_model("text-embedding-3-small")
        .with_embedding_dimensions(64)
        .with_request_timeout(Duration::from_secs(10))
}

async fn server() -> MockServer {
    MockServer::start().await
}

fn url(server: &MockServer) -> String {
    format!("{}/v1", server.uri())
}

fn request() -> ChatRequest {
    ChatRequest::new(vec![
        Message::system("Be brief."),
        Message::user("Name a primary colour."),
    ])
    .with_temperature(0.0)
    .with_max_tokens(16)
}

async fn collect(llm: &OpenAiChat) -> Vec<Result<ChatDelta>> {
    llm.stream(request())
        .await
        .expect("stream starts")
        .collect()
        .await
}

fn texts(items: &[Result<ChatDelta>]) -> String {
    items
        .iter()
        .filter_map(|i| match i {
            Ok(ChatDelta::Text(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- embeddings

#[tokio::test]
async fn embeddings_are_batched_and_returned_in_input_order() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(FakeOpenAi { dimensions: 64 })
        .expect(3)
        .mount(&server)
        .await;
    let embedder = OpenAiEmbedder::new(config(&url(&server)).with_embed_batch_size(2)).unwrap();
    let texts: Vec<String> = (0..5).map(|i| format!("document number {i}")).collect();
    let vectors = embedder.embed(&texts).await.unwrap();
    let local = rag_core::HashEmbedder::new(64);
    assert_eq!(vectors.len(), 5);
    for (text, v) in texts.iter().zip(&vectors) {
        assert_eq!(v, &local.embed_one(text), "vector of {text:?} out of order");
    }
    let requests = server.received_requests().await.unwrap();
    let sizes: Vec<usize> = requests
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["model"], "text-embedding-3-small");
            assert_eq!(body["dimensions"], 64, "text-embedding-3 gets `dimensions`");
            body["input"].as_array().unwrap().len()
        })
        .collect();
    assert_eq!(sizes, vec![2, 2, 1]);
}

#[tokio::test]
async fn invalid_inputs_are_rejected_before_any_request() {
    let server = server().await;
    Mock::given(method("POST"))
        .respond_with(FakeOpenAi { dimensions: 64 })
        .expect(0)
        .mount(&server)
        .await;
    let embedder =
        OpenAiEmbedder::new(config(&url(&server)).with_embed_max_input_tokens(50)).unwrap();
    let err = embedder
        .embed(&["fine".into(), "".into()])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }) && err.to_string().contains("index 1"));
    let long = "token ".repeat(60);
    let n = rag_core::TokenEncoding::Cl100k.count(&long);
    let err = embedder
        .embed(&["fine".into(), "fine".into(), long])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("index 2") && msg.contains(&format!("{n} tokens")),
        "{msg}"
    );
    assert!(embedder.embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn embedder_passes_the_conformance_suite() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(FakeOpenAi { dimensions: 64 })
        .mount(&server)
        .await;
    let embedder = OpenAiEmbedder::new(config(&url(&server)).with_embed_batch_size(16)).unwrap();
    embedder_kit::run_all(&embedder).await;
}

#[tokio::test]
async fn wrong_vector_length_is_a_protocol_error() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(FakeOpenAi { dimensions: 8 })
        .mount(&server)
        .await;
    let embedder = OpenAiEmbedder::new(config(&url(&server))).unwrap();
    let err = embedder.embed(&["x".into()]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("8 values, expected 64"), "{err}");
}

// ---------------------------------------------------------------- chat

#[tokio::test]
async fn completion_sends_the_options_and_reads_the_answer() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(body_partial_json(json!({
            "model": MODEL, "max_tokens": 16, "seed": 7, "stop": ["\n\n"],
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a primary colour."}]
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Blue.", Some((21, 2)))))
        .expect(1)
        .mount(&server)
        .await;
    let llm = OpenAiChat::new(config(&url(&server))).unwrap();
    let answer = llm
        .complete(request().with_seed(7).with_stop(vec!["\n\n".into()]))
        .await
        .unwrap();
    assert_eq!(answer.text, "Blue.");
    assert_eq!(answer.usage.prompt_tokens, 21);
    assert_eq!(answer.usage.completion_tokens, 2);
    assert_eq!(answer.finish_reason, FinishReason::Stop);
    assert_eq!(answer.model, MODEL);
}

#[tokio::test]
async fn completion_without_usage_is_counted_locally() {
    let server = server().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "choices": [{"message": {"content": "Red is a primary colour."}, "finish_reason": "length"}]
        })))
        .mount(&server)
        .await;
    let llm = OpenAiChat::new(config(&url(&server))).unwrap();
    let answer = llm.complete(request()).await.unwrap();
    assert_eq!(answer.finish_reason, FinishReason::Length);
    // "Red is a primary colour." is 6 cl100k tokens.
    assert_eq!(answer.usage.completion_tokens, 6);
    assert!(answer.usage.prompt_tokens > 10, "{:?}", answer.usage);
    assert_eq!(answer.model, MODEL, "falls back to the configured model");
}

#[tokio::test]
async fn stream_yields_deltas_then_finish_with_the_usage_chunk() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(body_partial_json(
            json!({"stream": true, "stream_options": {"include_usage": true}}),
        ))
        .respond_with(sse_response(sse_body(&REPLY, Some((12, 3)))))
        .expect(1)
        .mount(&server)
        .await;
    let llm = OpenAiChat::new(config(&url(&server))).unwrap();
    let items = collect(&llm).await;
    let deltas: Vec<&str> = items
        .iter()
        .filter_map(|i| match i {
            Ok(ChatDelta::Text(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, REPLY, "one Text per content delta, in order");
    match items.last() {
        Some(Ok(ChatDelta::Finish {
            usage,
            finish_reason,
            model,
            ..
        })) => {
            assert_eq!((usage.prompt_tokens, usage.completion_tokens), (12, 3));
            assert_eq!(*finish_reason, FinishReason::Stop);
            assert_eq!(model, MODEL);
        }
        other => panic!("expected Finish last, got {other:?}"),
    }
    assert_eq!(items.len(), REPLY.len() + 1);
}

#[tokio::test]
async fn stream_without_usage_chunk_counts_locally() {
    let server = server().await;
    Mock::given(method("POST"))
        .respond_with(sse_response(sse_body(&REPLY, None)))
        .mount(&server)
        .await;
    let llm = OpenAiChat::new(config(&url(&server)).with_stream_usage(false)).unwrap();
    let items = collect(&llm).await;
    match items.last() {
        Some(Ok(ChatDelta::Finish { usage, .. })) => {
            // "Blue is primary." is 4 cl100k tokens.
            assert_eq!(usage.completion_tokens, 4);
            assert!(usage.prompt_tokens > 10);
        }
        other => panic!("expected Finish last, got {other:?}"),
    }
    let sent: Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert!(sent.get("stream_options").is_none(), "{sent}");
}

#[tokio::test]
async fn llm_passes_the_conformance_suite() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(FakeOpenAi { dimensions: 64 })
        .mount(&server)
        .await;
    let llm = OpenAiChat::new(config(&url(&server))).unwrap();
    llm_kit::run_all(&llm).await;
}

// ---------------------------------------------------------------- failures

#[tokio::test]
async fn rate_limit_carries_retry_after() {
    let server = server().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "7")
                .set_body_json(json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})),
        )
        .mount(&server)
        .await;
    let llm = OpenAiChat::new(config(&url(&server))).unwrap();
    let err = llm.complete(request()).await.unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(7)),
        "{err:?}"
    );
    assert!(err.is_retryable());
    let err = llm.stream(request()).await.err().expect("stream refused");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    let embedder = OpenAiEmbedder::new(config(&url(&server))).unwrap();
    let err = embedder.embed(&["x".into()]).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn rate_limit_from_reset_headers() {
    let server = server().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("x-ratelimit-remaining-requests", "99")
                .insert_header("x-ratelimit-reset-requests", "2m59.56s")
                .insert_header("x-ratelimit-remaining-tokens", "0")
                .insert_header("x-ratelimit-reset-tokens", "7.66s")
                .set_body_json(json!({"error": {"message": "Rate limit reached for tokens"}})),
        )
        .mount(&server)
        .await;
    let llm = OpenAiChat::new(config(&url(&server))).unwrap();
    let err = llm.complete(request()).await.unwrap_err();
    assert_eq!(
        err.retry_after(),
        Some(Duration::from_secs_f64(7.66)),
        "{err:?}"
    );
}

#[tokio::test]
async fn server_errors_are_retryable() {
    let server = server().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_string("internal error"))
        .mount(&server)
        .await;
    let llm = OpenAiChat::new(config(&url(&server))).unwrap();
    let err = llm.complete(request()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("HTTP 500") && err.to_string().contains("internal error"),
        "{err}"
    );
    let err = llm.stream(request()).await.err().expect("stream refused");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn hanging_server_times_out() {
    let server = server().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion("late", None))
                .set_delay(Duration::from_secs(30)),
        )
        .mount(&server)
        .await;
    let llm =
        OpenAiChat::new(config(&url(&server)).with_request_timeout(Duration::from_millis(200)))
            .unwrap();
    let started = Instant::now();
    let err = llm.complete(request()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let err = llm.stream(request()).await.err().expect("stream times out");
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn stream_stalled_midway_times_out_after_the_deltas() {
    let events = vec![event(&chunk("Blue")), event(&chunk(" is"))];
    let base = raw_sse_server(events, Some(Duration::from_secs(30))).await;
    let llm =
        OpenAiChat::new(config(&base).with_request_timeout(Duration::from_millis(300))).unwrap();
    let started = Instant::now();
    let items = collect(&llm).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(texts(&items), "Blue is");
    assert!(
        matches!(items.last(), Some(Err(Error::Timeout { .. }))),
        "{items:?}"
    );
}

#[tokio::test]
async fn malformed_json_is_a_protocol_error() {
    let server = server().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200).set_body_raw("{\"choices\": [", "application/json"),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/embeddings"))
        .respond_with(ResponseTemplate::new(200).set_body_raw("<html>oops</html>", "text/html"))
        .mount(&server)
        .await;
    let llm = OpenAiChat::new(config(&url(&server))).unwrap();
    let err = llm.complete(request()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("malformed JSON"), "{err}");
    let embedder = OpenAiEmbedder::new(config(&url(&server))).unwrap();
    let err = embedder.embed(&["x".into()]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("malformed JSON"), "{err}");
}

#[tokio::test]
async fn malformed_json_in_a_stream_is_an_error_item_after_the_deltas() {
    let server = server().await;
    let body = format!(
        "{}{}data: {{not json\n\n",
        event(&chunk("Blue")),
        event(&chunk(" is"))
    );
    Mock::given(method("POST"))
        .respond_with(sse_response(body))
        .mount(&server)
        .await;
    let llm = OpenAiChat::new(config(&url(&server))).unwrap();
    let items = collect(&llm).await;
    assert_eq!(texts(&items), "Blue is");
    assert_eq!(items.len(), 3);
    match items.last() {
        Some(Err(
            e @ Error::Backend {
                retryable: false, ..
            },
        )) => {
            assert!(
                e.to_string().contains("malformed JSON in stream event 3"),
                "{e}"
            )
        }
        other => panic!("expected a protocol error last, got {other:?}"),
    }
}

#[tokio::test]
async fn stream_without_done_is_a_protocol_error_after_the_deltas() {
    let server = server().await;
    let body = format!("{}{}", event(&chunk("Blue")), event(&chunk(" is")));
    Mock::given(method("POST"))
        .respond_with(sse_response(body))
        .mount(&server)
        .await;
    let llm = OpenAiChat::new(config(&url(&server))).unwrap();
    let items = collect(&llm).await;
    assert_eq!(texts(&items), "Blue is");
    assert_eq!(
        items.len(),
        3,
        "two deltas and one error, no Finish: {items:?}"
    );
    match items.last() {
        Some(Err(
            e @ Error::Backend {
                retryable: false, ..
            },
        )) => {
            assert!(e.to_string().contains("without [DONE]"), "{e}")
        }
        other => panic!("expected a protocol error last, got {other:?}"),
    }
}

#[tokio::test]
async fn connection_cut_midway_is_an_error_item_after_the_deltas() {
    let base = raw_sse_server(vec![event(&chunk("Blue")), event(&chunk(" is"))], None).await;
    let llm = OpenAiChat::new(config(&base)).unwrap();
    let items = collect(&llm).await;
    assert_eq!(texts(&items), "Blue is");
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(
        matches!(items.last(), Some(Err(Error::Backend { .. }))),
        "{items:?}"
    );
}

#[tokio::test]
async fn error_event_midstream_follows_the_delivered_deltas() {
    let server = server().await;
    let body = format!(
        "{}{}{}",
        event(&chunk("Blue")),
        event(&chunk(" is")),
        event(&json!({"error": {"message": "The server is overloaded", "type": "server_error"}}))
    );
    Mock::given(method("POST"))
        .respond_with(sse_response(body))
        .mount(&server)
        .await;
    let llm = OpenAiChat::new(config(&url(&server))).unwrap();
    let items = collect(&llm).await;
    assert_eq!(texts(&items), "Blue is");
    assert_eq!(items.len(), 3);
    match items.last() {
        Some(Err(
            e @ Error::Backend {
                retryable: true, ..
            },
        )) => {
            assert!(e.to_string().contains("overloaded"), "{e}")
        }
        other => panic!("expected the server's error last, got {other:?}"),
    }
}

#[tokio::test]
async fn json_answer_to_a_stream_request_is_named() {
    let server = server().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("Blue.", None)))
        .mount(&server)
        .await;
    let llm = OpenAiChat::new(config(&url(&server))).unwrap();
    let items = collect(&llm).await;
    match items.last() {
        Some(Err(e)) => assert!(e.to_string().contains("expected an event stream"), "{e}"),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn context_length_is_mapped() {
    let server = server().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "This model's maximum context length is 16385 tokens. However, your messages resulted in 20012 tokens.",
            "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"
        }})))
        .mount(&server)
        .await;
    let llm = OpenAiChat::new(config(&url(&server))).unwrap();
    let err = llm.complete(request()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ContextLengthExceeded {
                tokens: 20012,
                limit: 16385
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn unauthorized_never_shows_the_key() {
    let server = server().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": {
            "message": format!("Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com/account/api-keys."),
            "type": "invalid_request_error", "code": "invalid_api_key"
        }})))
        .mount(&server)
        .await;
    let cfg = config(&url(&server));
    let llm = OpenAiChat::new(cfg.clone()).unwrap();
    let embedder = OpenAiEmbedder::new(cfg.clone()).unwrap();
    let e1 = llm.complete(request()).await.unwrap_err();
    let e2 = llm.stream(request()).await.err().unwrap();
    let e3 = embedder.embed(&["x".into()]).await.unwrap_err();
    for e in [&e1, &e2, &e3] {
        assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
        assert!(e.to_string().contains("Incorrect API key provided"), "{e}");
    }
    let mut shown = format!("{e1} {e1:?} {e2} {e2:?} {e3} {e3:?}");
    shown.push_str(&format!("{cfg:?} {cfg:#?} {llm:?} {embedder:?}"));
    shown.push_str(&serde_json::to_string(&cfg).unwrap());
    assert!(!shown.contains(KEY), "the key leaked: {shown}");
    assert!(
        !shown.contains("9f8e7d6c5b4a"),
        "part of the key leaked: {shown}"
    );
}

#[tokio::test]
async fn unknown_model_is_not_found() {
    let server = server().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": {
            "message": "The model `nope` does not exist", "type": "invalid_request_error", "code": "model_not_found"
        }})))
        .mount(&server)
        .await;
    let llm = OpenAiChat::new(config(&url(&server))).unwrap();
    let err = llm.complete(request()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let llm = OpenAiChat::new(config(&format!("http://127.0.0.1:{port}/v1"))).unwrap();
    let err = llm.complete(request()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
}
