//! The conformance suites run against the core's own implementations, the
//! mocks used as trait objects, and deliberately broken implementations that
//! the suites must reject.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rag_core::testkit::mocks::{
    MockChunker, MockEmbedder, MockLlmClient, MockReranker, MockSessionStore, MockVectorStore,
    predicate,
};
use rag_core::testkit::{ScriptedLlm, Step, chunker, embedder, llm};
use rag_core::{
    AutoChunker, ChatDelta, ChatRequest, ChatResponse, ChatStream, Chunk, ChunkSize, Chunker,
    Document, DocumentId, DocumentInfo, Embedder, Error, FinishReason, HashEmbedder, LlmClient,
    MarkdownChunker, Namespace, Reranker, Result, SessionStore, TextChunker, TokenEncoding, Usage,
    VectorStore, async_trait,
};

// ---------------------------------------------------------------------------
// The suites pass on the core's implementations.

#[tokio::test]
async fn hash_embedder_64_passes() {
    embedder::run_all(&HashEmbedder::new(64)).await;
}

#[tokio::test]
async fn hash_embedder_default_passes() {
    embedder::run_all(&HashEmbedder::default()).await;
}

#[tokio::test]
async fn hash_embedder_behind_arc_dyn_passes() {
    let e: Arc<dyn Embedder> = Arc::new(HashEmbedder::new(128));
    embedder::run_all(&e).await;
    embedder::run_all(e.as_ref()).await;
}

#[tokio::test]
async fn scripted_llm_passes() {
    let l = ScriptedLlm::new();
    llm::run_all(&l).await;
    // Every call of the suite reached the model: 1 complete, 1 full stream,
    // 1 dropped stream, 1 complete after it.
    assert_eq!(l.requests().len(), 4);
}

#[tokio::test]
async fn scripted_llm_behind_arc_dyn_passes() {
    let l: Arc<dyn LlmClient> = Arc::new(ScriptedLlm::new().with_model_id("scripted-arc"));
    llm::run_all(&l).await;
}

#[tokio::test]
async fn text_chunker_by_chars_passes() {
    chunker::run_all(&TextChunker::by_chars(200, 20).unwrap()).await;
}

#[tokio::test]
async fn text_chunker_by_tokens_passes() {
    chunker::run_all(&TextChunker::by_tokens(TokenEncoding::Cl100k, 64, 8).unwrap()).await;
}

#[tokio::test]
async fn markdown_chunker_by_chars_passes() {
    chunker::run_all(&MarkdownChunker::by_chars(300, 0).unwrap()).await;
}

#[tokio::test]
async fn auto_chunker_passes() {
    let auto = AutoChunker::new(ChunkSize::Characters {
        max: 400,
        overlap: 40,
    })
    .unwrap();
    chunker::run_all(&auto).await;
    let boxed: Box<dyn Chunker> = Box::new(auto);
    chunker::run_all(&boxed).await;
}

#[test]
fn sample_documents_cover_the_promised_kinds() {
    let docs = chunker::sample_documents();
    assert_eq!(docs.len(), 5);
    assert!(docs.iter().any(|d| d.source().ends_with(".md")));
    assert!(docs.iter().any(|d| d.text().len() >= 50 * 1024));
    assert!(docs.iter().any(|d| d.text().contains('東')));
    for d in &docs {
        d.validate().unwrap();
        assert!(!d.metadata().is_empty());
    }
}

// ---------------------------------------------------------------------------
// The mocks work as trait objects.

#[tokio::test]
async fn mock_embedder_rate_limited_as_arc_dyn() {
    let mut mock = MockEmbedder::new();
    mock.expect_model_id()
        .return_const("mock-embedder".to_owned());
    mock.expect_embed().times(1).returning(|_| {
        Err(Error::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        })
    });
    let e: Arc<dyn Embedder> = Arc::new(mock);
    assert!(format!("{e:?}").contains("MockEmbedder"));
    assert_eq!(e.model_id(), "mock-embedder");
    let err = e.embed(&["text".to_owned()]).await.unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { .. }),
        "expected RateLimited, got {err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
}

/// A mock that delegates to the hash embedder passes the suite: the suite
/// only relies on the trait.
#[tokio::test]
async fn mock_embedder_delegating_to_hash_embedder_passes() {
    fn check(texts: &[String]) -> Result<()> {
        match texts.iter().position(|t| t.trim().is_empty()) {
            Some(i) => Err(Error::invalid_input(format!("text {i} is empty"))),
            None => Ok(()),
        }
    }
    let inner = Arc::new(HashEmbedder::new(32));
    let mut mock = MockEmbedder::new();
    mock.expect_model_id().return_const("mock-hash".to_owned());
    mock.expect_dimensions().return_const(32usize);
    let h = inner.clone();
    mock.expect_embed().returning(move |texts| {
        check(texts)?;
        Ok(texts.iter().map(|t| h.embed_one(t)).collect())
    });
    mock.expect_embed_query().returning(move |q| {
        check(&[q.to_owned()])?;
        Ok(inner.embed_one(q))
    });
    embedder::run_all(&mock).await;
}

#[tokio::test]
async fn mock_llm_vector_store_reranker_sessions_chunker_as_trait_objects() {
    let mut l = MockLlmClient::new();
    l.expect_model_id().return_const("mock-llm".to_owned());
    l.expect_context_window().return_const(2048usize);
    l.expect_complete()
        .withf(|r: &ChatRequest| r.messages.len() == 1)
        .returning(|_| {
            Err(Error::Unauthorized {
                message: "no key".into(),
            })
        });
    let l: Arc<dyn LlmClient> = Arc::new(l);
    assert_eq!((l.model_id(), l.context_window()), ("mock-llm", 2048));
    let err = l
        .complete(ChatRequest::new(vec![rag_core::Message::user("hi")]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }));

    let mut s = MockVectorStore::new();
    let ns = Namespace::new("tenant").unwrap();
    let after = DocumentId::new("a").unwrap();
    s.expect_list_documents()
        .with(
            predicate::eq(ns.clone()),
            predicate::eq(Some(after.clone())),
            predicate::eq(10usize),
        )
        .times(1)
        .returning(|_, _, _| {
            Ok(vec![DocumentInfo::new(
                DocumentId::new("b").unwrap(),
                "b.md".into(),
                "h".into(),
                2,
            )])
        });
    s.expect_count().returning(|_| Ok(7));
    let s: Arc<dyn VectorStore> = Arc::new(s);
    let listed = s.list_documents(&ns, Some(&after), 10).await.unwrap();
    assert_eq!(listed[0].id.as_str(), "b");
    assert_eq!(s.count(&ns).await.unwrap(), 7);

    let mut r = MockReranker::new();
    r.expect_rerank()
        .withf(|q: &str, c, n| q == "query" && c.is_empty() && *n == 3)
        .returning(|_, c, _| Ok(c));
    let r: Arc<dyn Reranker> = Arc::new(r);
    assert!(r.rerank("query", Vec::new(), 3).await.unwrap().is_empty());

    let mut ss = MockSessionStore::new();
    ss.expect_get()
        .returning(|id| Err(Error::not_found(format!("session {id}"))));
    let ss: Arc<dyn SessionStore> = Arc::new(ss);
    let err = ss.get(some_session_id()).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));

    let mut c = MockChunker::new();
    c.expect_chunk()
        .returning(|_| Err(Error::invalid_input("mocked")));
    let c: Arc<dyn Chunker> = Arc::new(c);
    assert!(c.chunk(&Document::new("a", "b")).is_err());
}

fn some_session_id() -> rag_core::SessionId {
    // SessionId is a UUID; any fixed value will do for a mock.
    rag_core::SessionId::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0)
}

// ---------------------------------------------------------------------------
// The suites catch broken implementations.

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "<non-string panic>".to_owned()
    }
}

/// Runs `fut`, which must panic; returns the panic message.
async fn must_panic(fut: impl std::future::Future<Output = ()>) -> String {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(()) => panic!("the suite passed a broken implementation"),
        Err(payload) => panic_message(payload.as_ref()),
    }
}

/// Returns its vectors in reverse order.
#[derive(Debug)]
struct ReversingEmbedder(HashEmbedder);

#[async_trait]
impl Embedder for ReversingEmbedder {
    fn model_id(&self) -> &str {
        "reversing"
    }
    fn dimensions(&self) -> usize {
        self.0.dimensions()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let mut v = self.0.embed(texts).await?;
        v.reverse();
        Ok(v)
    }
}

/// Accepts empty texts (embeds them as zero vectors).
#[derive(Debug)]
struct LenientEmbedder(HashEmbedder);

#[async_trait]
impl Embedder for LenientEmbedder {
    fn model_id(&self) -> &str {
        "lenient"
    }
    fn dimensions(&self) -> usize {
        self.0.dimensions()
    }
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| self.0.embed_one(t)).collect())
    }
}

#[tokio::test]
async fn embedder_suite_catches_reversed_output() {
    let msg = must_panic(embedder::run_all(&ReversingEmbedder(HashEmbedder::new(64)))).await;
    assert!(msg.contains("input order"), "{msg}");
}

#[tokio::test]
async fn embedder_suite_catches_accepted_empty_text() {
    let msg = must_panic(embedder::run_all(&LenientEmbedder(HashEmbedder::new(64)))).await;
    assert!(msg.contains("InvalidInput"), "{msg}");
}

/// Shifts every byte range one byte to the right, keeping the text.
#[derive(Debug)]
struct OffByOneChunker(TextChunker);

impl Chunker for OffByOneChunker {
    fn chunk(&self, doc: &Document) -> Result<Vec<Chunk>> {
        let mut chunks = self.0.chunk(doc)?;
        for c in &mut chunks {
            c.byte_range = c.byte_range.start + 1..c.byte_range.end + 1;
        }
        Ok(chunks)
    }
}

/// Drops the last chunk of every document.
#[derive(Debug)]
struct LossyChunker(TextChunker);

impl Chunker for LossyChunker {
    fn chunk(&self, doc: &Document) -> Result<Vec<Chunk>> {
        let mut chunks = self.0.chunk(doc)?;
        if chunks.len() > 1 {
            chunks.pop();
        }
        Ok(chunks)
    }
}

#[tokio::test]
async fn chunker_suite_catches_off_by_one_ranges() {
    let msg = must_panic(chunker::run_all(&OffByOneChunker(
        TextChunker::by_chars(200, 20).unwrap(),
    )))
    .await;
    assert!(
        msg.contains("byte_range") || msg.contains("character boundaries"),
        "{msg}"
    );
}

#[tokio::test]
async fn chunker_suite_catches_lost_text() {
    let msg = must_panic(chunker::covers_all_text(&LossyChunker(
        TextChunker::by_chars(200, 0).unwrap(),
    )))
    .await;
    assert!(msg.contains("non-whitespace character"), "{msg}");
}

/// Streams text, `Finish`, then more text.
#[derive(Debug)]
struct TextAfterFinishLlm;

#[async_trait]
impl LlmClient for TextAfterFinishLlm {
    fn model_id(&self) -> &str {
        "text-after-finish"
    }
    fn context_window(&self) -> usize {
        1024
    }
    async fn complete(&self, _request: ChatRequest) -> Result<ChatResponse> {
        Ok(ChatResponse {
            text: "Red.".into(),
            usage: Usage::default(),
            finish_reason: FinishReason::Stop,
            model: self.model_id().into(),
            extractive: false,
        })
    }
    async fn stream(&self, _request: ChatRequest) -> Result<ChatStream> {
        let finish = ChatDelta::Finish {
            usage: Usage::default(),
            finish_reason: FinishReason::Stop,
            model: self.model_id().into(),
            extractive: false,
        };
        let items = vec![
            Ok(ChatDelta::Text("Red".into())),
            Ok(finish),
            Ok(ChatDelta::Text(".".into())),
        ];
        Ok(futures::stream::iter(items).boxed())
    }
}

#[tokio::test]
async fn llm_suite_catches_text_after_finish() {
    let msg = must_panic(llm::run_all(&TextAfterFinishLlm)).await;
    assert!(msg.contains("Finish must be the last item"), "{msg}");
}

#[tokio::test]
async fn llm_suite_catches_missing_finish_and_mid_stream_errors() {
    let no_finish = ScriptedLlm::new().then(Step::Deltas(Vec::new()));
    let msg = must_panic(llm::stream_protocol(&no_finish)).await;
    assert!(msg.contains("at least one Text"), "{msg}");

    let failing = ScriptedLlm::new().then(Step::FailMidStream(
        vec!["Red".into()],
        Error::backend("scripted", true, "connection reset"),
    ));
    let msg = must_panic(llm::stream_protocol(&failing)).await;
    assert!(msg.contains("no error items"), "{msg}");
}

#[tokio::test(start_paused = true)]
async fn llm_suite_catches_a_hanging_call() {
    let slow = ScriptedLlm::new().then(Step::Delay(
        Duration::from_secs(3600),
        Box::new(Step::Reply("late".into())),
    ));
    let msg = must_panic(llm::complete_short_prompt(&slow)).await;
    assert!(msg.contains("must finish within"), "{msg}");
}
