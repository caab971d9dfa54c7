//! A scripted OpenAI-compatible server for the tests: wiremock responders
//! speaking the real wire format, and a raw TCP server for what wiremock
//! cannot do (a connection cut or stalled in the middle of a stream).

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use rag_core::HashEmbedder;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::{Request, Respond, ResponseTemplate};

pub const MODEL: &str = "test-model";
pub const REPLY: [&str; 3] = ["Blue", " is", " primary."];

/// One `data:` event.
pub fn event(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// A content chunk.
pub fn chunk(content: &str) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]
    })
}

/// The chunk that ends the choice.
pub fn finish_chunk(reason: &str) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
        "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]
    })
}

/// The final usage chunk (`stream_options.include_usage`).
pub fn usage_chunk(prompt: u32, completion: u32) -> Value {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    })
}

/// A whole SSE body: role chunk, the reply deltas, finish, optional usage,
/// `[DONE]`.
pub fn sse_body(deltas: &[&str], usage: Option<(u32, u32)>) -> String {
    let mut body = String::new();
    body.push_str(&event(&json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]
    })));
    for d in deltas {
        body.push_str(&event(&chunk(d)));
    }
    body.push_str(&event(&finish_chunk("stop")));
    if let Some((p, c)) = usage {
        body.push_str(&event(&usage_chunk(p, c)));
    }
    body.push_str("data: [DONE]\n\n");
    body
}

pub fn sse_response(body: String) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream")
        .set_body_raw(body, "text/event-stream")
}

/// A non-streaming completion.
pub fn completion(text: &str, usage: Option<(u32, u32)>) -> Value {
    let mut v = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
    });
    if let Some((p, c)) = usage {
        v["usage"] = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
    }
    v
}

/// A fake OpenAI: `/embeddings` answers with hash-embedder vectors (the data
/// in reverse order, with indices, as a server may), `/chat/completions`
/// answers JSON or SSE by the request's `stream` flag.
#[derive(Clone, Debug)]
pub struct FakeOpenAi {
    pub dimensions: usize,
}

impl Respond for FakeOpenAi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = match serde_json::from_slice(&request.body) {
            Ok(v) => v,
            Err(_) => {
                return ResponseTemplate::new(400)
                    .set_body_json(json!({"error": {"message": "bad json"}}));
            }
        };
        if request.url.path().ends_with("/embeddings") {
            let inputs: Vec<String> = match &body["input"] {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
                    .collect(),
                _ => return ResponseTemplate::new(400),
            };
            let embedder = HashEmbedder::new(self.dimensions);
            let mut data: Vec<Value> = inputs
                .iter()
                .enumerate()
                .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": embedder.embed_one(t)}))
                .collect();
            data.reverse();
            return ResponseTemplate::new(200).set_body_json(json!({
                "object": "list", "model": body["model"], "data": data,
                "usage": {"prompt_tokens": 1, "total_tokens": 1}
            }));
        }
        if body["stream"] == json!(true) {
            let usage = (body["stream_options"]["include_usage"] == json!(true)).then_some((12, 3));
            sse_response(sse_body(&REPLY, usage))
        } else {
            ResponseTemplate::new(200).set_body_json(completion(&REPLY.concat(), Some((12, 3))))
        }
    }
}

/// A raw HTTP/1.1 server on 127.0.0.1:0 that answers every connection with
/// an SSE response head, writes `events` as chunks, then either closes the
/// connection mid-body (`stall: None`) or keeps it open silently for the
/// given time. Returns the base URL (`http://127.0.0.1:PORT/v1`).
pub async fn raw_sse_server(events: Vec<String>, stall: Option<Duration>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let events = events.clone();
            tokio::spawn(async move {
                // Read the request head and body (enough for our small requests).
                let mut buf = vec![0u8; 64 * 1024];
                let mut seen = Vec::new();
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    seen.extend_from_slice(&buf[..n]);
                    if let Some(head_end) = find(&seen, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if seen.len() >= head_end + 4 + len {
                            break;
                        }
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                            transfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for e in &events {
                    let chunk = format!("{:x}\r\n{e}\r\n", e.len());
                    if socket.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                    let _ = socket.flush().await;
                }
                match stall {
                    Some(d) => tokio::time::sleep(d).await,
                    // Close without the terminating zero-length chunk.
                    None => drop(socket),
                }
            });
        }
    });
    format!("http://{addr}/v1")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
