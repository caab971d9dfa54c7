//! LocalChat on SmolLM2-135M-Instruct: the rag-core LLM conformance suite,
//! streaming, limits and the GGUF tokenizer. Needs `scripts/fetch-models`.
#![cfg(feature = "candle")]

mod common;

use common::{fixture, models};
use futures::StreamExt;
use rag_core::{ChatDelta, ChatRequest, Error, FinishReason, LlmClient, Message, testkit};
use rag_local::{LocalChat, LocalChatConfig, LocalModels};

const WHAT: &str = "chat model (SmolLM2-135M-Instruct GGUF)";

fn chat(test: &str) -> Option<LocalChat> {
    let m = models(test, WHAT, LocalModels::has_chat)?;
    Some(m.chat().expect("the chat model loads"))
}

fn question(max_tokens: u32) -> ChatRequest {
    ChatRequest::new(vec![Message::user("What is the capital of France?")])
        .with_max_tokens(max_tokens)
}

async fn collect(llm: &LocalChat, req: ChatRequest) -> (String, Vec<ChatDelta>) {
    let items: Vec<_> = llm.stream(req).await.unwrap().collect().await;
    let items: Vec<ChatDelta> = items.into_iter().map(|i| i.unwrap()).collect();
    let text = items
        .iter()
        .filter_map(|d| match d {
            ChatDelta::Text(t) => Some(t.as_str()),
            ChatDelta::Finish { .. } => None,
        })
        .collect();
    (text, items)
}

#[tokio::test]
async fn conformance() {
    let Some(llm) = chat("llm conformance (LocalChat)") else {
        return;
    };
    testkit::llm::run_all(&llm).await;
}

#[tokio::test]
async fn greedy_answer_streams_the_same_text() {
    let Some(llm) = chat("greedy_answer_streams_the_same_text") else {
        return;
    };
    assert_eq!(llm.model_id(), "SmolLM2-135M-Instruct.Q4_1");
    assert_eq!(llm.context_window(), 4096);
    let (done, stats) = llm.complete_with_stats(question(48)).await.unwrap();
    assert!(!done.text.trim().is_empty());
    assert!(done.text.contains("Paris"), "{:?}", done.text);
    eprintln!(
        "LocalChat: {} prompt tokens, {} generated at {:.1} tokens/s (prompt {:.0} tokens/s): {:?}",
        stats.prompt_tokens,
        stats.completion_tokens,
        stats.tokens_per_second(),
        stats.prompt_tokens_per_second(),
        done.text
    );
    let (streamed, items) = collect(&llm, question(48)).await;
    assert_eq!(
        streamed, done.text,
        "stream deltas concatenate to complete()'s text"
    );
    assert!(
        items
            .iter()
            .filter(|d| matches!(d, ChatDelta::Text(_)))
            .count()
            > 1
    );
    match items.last().unwrap() {
        ChatDelta::Finish {
            usage,
            finish_reason,
            model,
            ..
        } => {
            assert_eq!(*usage, done.usage);
            assert_eq!(*finish_reason, done.finish_reason);
            assert_eq!(model, "SmolLM2-135M-Instruct.Q4_1");
        }
        other => panic!("last item {other:?}"),
    }
    // Deterministic: greedy decoding gives the same answer again.
    assert_eq!(llm.complete(question(48)).await.unwrap().text, done.text);
}

#[tokio::test]
async fn max_tokens_and_end_of_turn() {
    let Some(llm) = chat("max_tokens_and_end_of_turn") else {
        return;
    };
    let cut = llm
        .complete(
            ChatRequest::new(vec![Message::user("Write a long story about a dragon.")])
                .with_max_tokens(5),
        )
        .await
        .unwrap();
    assert_eq!(cut.usage.completion_tokens, 5);
    assert_eq!(cut.finish_reason, FinishReason::Length);
    let (streamed, items) = collect(
        &llm,
        ChatRequest::new(vec![Message::user("Write a long story about a dragon.")])
            .with_max_tokens(5),
    )
    .await;
    assert_eq!(streamed, cut.text);
    assert!(matches!(
        items.last(),
        Some(ChatDelta::Finish {
            finish_reason: FinishReason::Length,
            ..
        })
    ));

    let full = llm.complete(question(200)).await.unwrap();
    assert_eq!(
        full.finish_reason,
        FinishReason::Stop,
        "stops at <|im_end|>: {:?}",
        full.text
    );
    assert!(full.usage.completion_tokens < 200);
    assert!(!full.text.contains("<|im_end|>"));
    assert!(full.usage.prompt_tokens > 10);
}

#[tokio::test]
async fn stop_sequences_and_sampling() {
    let Some(llm) = chat("stop_sequences_and_sampling") else {
        return;
    };
    let base = llm.complete(question(48)).await.unwrap();
    let word = "Paris";
    let at = base.text.find(word).expect("the greedy answer names Paris");
    let stopped = llm
        .complete(question(48).with_stop(vec![word.to_owned()]))
        .await
        .unwrap();
    assert_eq!(stopped.text, base.text[..at]);
    assert_eq!(stopped.finish_reason, FinishReason::Stop);
    let (streamed, _) = collect(&llm, question(48).with_stop(vec![word.to_owned()])).await;
    assert_eq!(streamed, stopped.text, "a stop sequence is never streamed");

    let hot = question(24).with_temperature(1.2).with_seed(7);
    let a = llm.complete(hot.clone()).await.unwrap();
    let b = llm.complete(hot).await.unwrap();
    assert_eq!(a.text, b.text, "the same seed samples the same answer");
    assert!(!a.text.is_empty());
}

#[tokio::test]
async fn prompt_longer_than_the_context_is_refused() {
    let Some(m) = models(
        "prompt_longer_than_the_context_is_refused",
        WHAT,
        LocalModels::has_chat,
    ) else {
        return;
    };
    let llm =
        LocalChat::load(LocalChatConfig::new(m.chat_file()).with_context_window(256)).unwrap();
    assert_eq!(llm.context_window(), 256);
    let long = "rotate the keys ".repeat(200);
    let req = ChatRequest::new(vec![Message::user(long)]);
    match llm.complete(req.clone()).await {
        Err(Error::ContextLengthExceeded { tokens, limit }) => {
            assert_eq!(limit, 256);
            assert!(tokens > 256);
        }
        other => panic!("expected ContextLengthExceeded, got {other:?}"),
    }
    assert!(matches!(
        llm.stream(req).await,
        Err(Error::ContextLengthExceeded { .. })
    ));
    assert!(matches!(
        llm.complete(ChatRequest::new(vec![])).await,
        Err(Error::InvalidInput { .. })
    ));
    // A prompt that fits leaves max_tokens capped to the room left.
    let n = llm.count_prompt_tokens(&[Message::user("Hi")]).unwrap();
    let r = llm
        .complete(ChatRequest::new(vec![Message::user("Hi")]).with_max_tokens(10_000))
        .await
        .unwrap();
    assert!(n + r.usage.completion_tokens as usize <= 256);
}

#[tokio::test]
async fn gguf_tokenizer_matches_transformers() {
    let Some(llm) = chat("gguf_tokenizer_matches_transformers") else {
        return;
    };
    let fx = fixture("gguf_tokens.json");
    for case in fx["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(llm.tokenize(text).unwrap(), want, "tokens of {text:?}");
    }
}

#[tokio::test]
async fn a_complete_cut_by_its_deadline_stops_generating() {
    let Some(llm) = chat("a_complete_cut_by_its_deadline_stops_generating") else {
        return;
    };
    let long = ChatRequest::new(vec![Message::user("Write a long story about a dragon.")])
        .with_max_tokens(1000);
    // The deadline fires while the model is generating.
    let cut = tokio::time::timeout(std::time::Duration::from_millis(300), llm.complete(long)).await;
    assert!(
        cut.is_err(),
        "1000 tokens in 300 ms: the deadline should fire"
    );
    // The abandoned generation stops at its next token: polled every 10 ms,
    // it is gone long before 1000 tokens (tens of seconds here) could run.
    let t = std::time::Instant::now();
    while llm.generations_running() > 0 {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "the generation went on after its caller gave up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn dropping_the_stream_stops_generation() {
    let Some(llm) = chat("dropping_the_stream_stops_generation") else {
        return;
    };
    let mut s = llm
        .stream(
            ChatRequest::new(vec![Message::user("Write a long story about a dragon.")])
                .with_max_tokens(400),
        )
        .await
        .unwrap();
    assert!(matches!(s.next().await, Some(Ok(ChatDelta::Text(_)))));
    drop(s);
    // The blocking generation notices at its next token; the next call
    // works and is not slowed by 400 tokens of abandoned work.
    let t = std::time::Instant::now();
    llm.complete(question(8)).await.unwrap();
    assert!(t.elapsed() < std::time::Duration::from_secs(20));
}
