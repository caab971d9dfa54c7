//! An entry point for coverage-guided fuzzing of the chat stream parser
//! (the `fuzz/` crate runs it under AFL++; `tests/fuzz_corpus.rs` replays
//! its corpus and past crashes). Compiled with the `fuzz` feature only.

use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use rag_core::{ChatDelta, Message};

use crate::config::OpenAiConfig;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    })
}

/// The items of the stream parsed from `body` delivered in pieces of
/// `piece` bytes, each as a comparable line.
fn parse(body: &[u8], piece: usize) -> Vec<String> {
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(piece.max(1)).map(|c| Ok(c.to_vec())).collect();
    let response = http::Response::builder()
        .status(200)
        .header("content-type", "text/event-stream")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
        .expect("a response");
    let stream = crate::stream::chat_stream(
        reqwest::Response::from(response),
        Arc::new(OpenAiConfig::new()),
        vec![Message::user("question")],
    );
    let items: Vec<_> = runtime().block_on(stream.collect());
    assert!(!items.is_empty(), "a stream ends with a finish or an error");
    let last = items.len() - 1;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Ok(ChatDelta::Text(t)) => {
                assert!(!t.is_empty(), "an empty text delta");
                assert!(
                    i < last,
                    "the stream ended on text, without a finish or an error"
                );
                format!("text {t:?}")
            }
            Ok(ChatDelta::Finish {
                finish_reason,
                usage,
                ..
            }) => {
                assert_eq!(i, last, "items after the finish");
                format!("finish {finish_reason:?} {usage:?}")
            }
            Err(e) => {
                assert_eq!(i, last, "items after an error");
                format!("error {}", e.kind())
            }
        })
        .collect()
}

/// A `stream: true` chat completion body: the first byte picks how the
/// bytes are cut into network reads, the rest is the body. The parser ends
/// every stream with exactly one finish or error, yields no empty text, and
/// yields the same items however the body is cut.
pub fn chat_stream(data: &[u8]) {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let cut = parse(body, 1 + usize::from(seed % 64));
    let whole = parse(body, body.len());
    assert_eq!(cut, whole, "the items depend on how the body was cut");
}
