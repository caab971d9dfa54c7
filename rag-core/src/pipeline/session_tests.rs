//! Session behaviour of the pipeline and the packing property test.
//!
//! They run on the reference `MemorySessionStore`.

use std::sync::Arc;

use futures::StreamExt;
use proptest::prelude::*;

use super::packing::{self, PackInput};
use super::*;
use crate::chat::{Message, Role};
use crate::search::ScoredChunk;
use crate::session::{SessionId, StoredMessage};
use crate::testkit::{ScriptedLlm, Step};
use crate::types::{Chunk, Document, Namespace};
use crate::{Ask, AskEvent, TextChunker};

/// The reference session store.
type TestSessions = crate::memory::MemorySessionStore;

fn docs() -> Vec<Document> {
    vec![
        Document::new(
            "keys.md",
            "API keys are rotated every month. The first key is the admin key. The second key \
             is the read-only key, rotated every week.",
        ),
        Document::new(
            "lunch.md",
            "The cafeteria serves lunch at noon on weekdays.",
        ),
    ]
}

async fn rag(llm: impl LlmClient + 'static) -> (Rag, Arc<TestSessions>) {
    let sessions = Arc::new(TestSessions::default());
    let rag = Rag::builder()
        .llm(llm)
        .sessions_arc(sessions.clone())
        .chunker(TextChunker::by_chars(200, 0).unwrap())
        .build()
        .unwrap();
    assert!(rag.ingest_many(docs()).await.is_success());
    (rag, sessions)
}

async fn messages(s: &TestSessions, id: SessionId) -> Vec<StoredMessage> {
    s.history(id, 100).await.unwrap()
}

#[tokio::test]
async fn a_successful_answer_is_appended_with_its_citations() {
    let llm = ScriptedLlm::new().then_reply("Monthly [1].");
    let (rag, sessions) = rag(llm).await;
    let s = rag.create_session(NewSession::default()).await.unwrap();
    let answer = rag
        .ask(Ask::new("How often are keys rotated?").session(s.id))
        .await
        .unwrap();
    assert_eq!(answer.session, Some(s.id));
    assert!(
        !answer.trace.condensed,
        "no history yet: nothing to condense"
    );
    let stored = messages(&sessions, s.id).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].message.role, Role::User);
    assert_eq!(stored[0].message.content, "How often are keys rotated?");
    assert_eq!(stored[1].message.role, Role::Assistant);
    assert_eq!(stored[1].message.content, "Monthly [1].");
    let cites = &stored[1].message.metadata["citations"];
    assert_eq!(cites[0]["number"], 1);
    assert_eq!(cites[0]["source"], "keys.md");
}

#[tokio::test]
async fn follow_ups_are_condensed_using_the_history() {
    let llm = ScriptedLlm::new()
        .then_reply("Keys are rotated monthly [1].")
        // The condensing call, then the answer.
        .then_reply("How often is the second key rotated?")
        .then_reply("Weekly [1].");
    let (rag, _) = rag(llm.clone()).await;
    let s = rag.create_session(NewSession::default()).await.unwrap();
    rag.ask(Ask::new("How often are keys rotated?").session(s.id))
        .await
        .unwrap();
    let answer = rag
        .ask(Ask::new("and what about the second one?").session(s.id))
        .await
        .unwrap();
    assert!(answer.trace.condensed);
    assert_eq!(
        answer.trace.standalone_query,
        "How often is the second key rotated?"
    );
    let requests = llm.requests();
    assert_eq!(requests.len(), 3);
    let condense = requests[1]
        .messages
        .iter()
        .map(|m| m.content.as_str())
        .collect::<String>();
    assert!(
        condense.contains("How often are keys rotated?"),
        "{condense}"
    );
    assert!(condense.contains("Keys are rotated monthly [1]."));
    assert!(condense.contains("and what about the second one?"));
    // The answer prompt has the history and the original question.
    let prompt = &requests[2].messages;
    assert_eq!(prompt.len(), 4);
    assert_eq!(prompt[1].content, "How often are keys rotated?");
    assert_eq!(prompt[1].metadata, serde_json::Value::Null);
    assert_eq!(prompt[3].content, "and what about the second one?");
    assert_eq!(answer.trace.history_messages, 2);
    assert!(prompt[0].content.contains("second key"));

    // Switched off: the question is used as is, with no condensing call.
    let off = rag
        .ask(Ask::new("and the first one?").session(s.id).condense(false))
        .await
        .unwrap();
    assert!(!off.trace.condensed);
    assert_eq!(off.trace.standalone_query, "and the first one?");
    assert_eq!(llm.requests().len(), 4);
}

#[tokio::test]
async fn the_extractive_default_condenses_without_a_model() {
    let sessions = Arc::new(TestSessions::default());
    let rag = Rag::builder()
        .sessions_arc(sessions.clone())
        .build()
        .unwrap();
    rag.ingest_many(docs()).await;
    let s = rag.create_session(NewSession::default()).await.unwrap();
    rag.ask(Ask::new("When is lunch served?").session(s.id))
        .await
        .unwrap();
    let a = rag
        .ask(Ask::new("and on weekends?").session(s.id))
        .await
        .unwrap();
    assert!(a.trace.condensed);
    assert_eq!(
        a.trace.standalone_query,
        "When is lunch served? and on weekends?"
    );
    assert_eq!(messages(&sessions, s.id).await.len(), 4);
}

/// A model behind a fallback to the extractive answerer, down for every
/// call: condensing fails and the follow-up is rewritten without a model
/// (the extractive answerer refuses a request without sources instead of
/// turning "no sources" into the query), and the answer is extractive,
/// cited from the right document, and says so.
#[tokio::test]
async fn a_failed_condense_behind_a_fallback_rewrites_without_a_model() {
    let down = || Error::backend("primary", true, "connection refused");
    let primary = ScriptedLlm::new()
        .with_model_id("primary")
        .then_fail(down())
        .then_fail(down())
        .then_fail(down());
    let llm = crate::layers::Fallback::new(primary, crate::ExtractiveAnswerer::default());
    assert!(!llm.model_free(), "the primary is a model");
    let (rag, sessions) = rag(llm).await;
    let s = rag.create_session(NewSession::default()).await.unwrap();
    let first = rag
        .ask(Ask::new("When is lunch served?").session(s.id))
        .await
        .unwrap();
    assert!(first.extractive, "the fallback answered: {}", first.text);
    let a = rag
        .ask(Ask::new("and on weekdays?").session(s.id))
        .await
        .unwrap();
    assert!(a.trace.condensed && a.trace.condense_failed);
    assert_eq!(
        a.trace.standalone_query,
        "When is lunch served? and on weekdays?"
    );
    assert!(a.extractive);
    assert!(a.text.contains("noon"), "{}", a.text);
    assert_eq!(a.citations[0].source, "lunch.md");
    assert_eq!(messages(&sessions, s.id).await.len(), 4);
}

#[tokio::test]
async fn a_failing_llm_leaves_the_session_unchanged() {
    let llm = ScriptedLlm::new()
        .then_reply("Monthly [1].")
        .then_fail(Error::RateLimited { retry_after: None })
        .then(Step::FailMidStream(
            vec!["half ".into()],
            Error::backend("scripted", true, "reset"),
        ));
    let (rag, sessions) = rag(llm).await;
    let s = rag.create_session(NewSession::default()).await.unwrap();
    rag.ask(Ask::new("keys?").session(s.id).condense(false))
        .await
        .unwrap();
    let err = rag
        .ask(Ask::new("lunch?").session(s.id).condense(false))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RateLimited { .. }));
    assert_eq!(messages(&sessions, s.id).await.len(), 2);
    let items: Vec<Result<AskEvent>> = rag
        .ask_stream(Ask::new("lunch?").session(s.id).condense(false))
        .await
        .unwrap()
        .collect()
        .await;
    assert!(items.last().is_some_and(|i| i.is_err()));
    assert_eq!(messages(&sessions, s.id).await.len(), 2);
}

#[tokio::test]
async fn a_dropped_stream_records_nothing_and_a_finished_one_does() {
    let llm = ScriptedLlm::new()
        .then_reply("one two three four five [1]")
        .then_reply("Weekly [1].");
    let (rag, sessions) = rag(llm).await;
    let s = rag.create_session(NewSession::default()).await.unwrap();
    let mut stream = rag
        .ask_stream(Ask::new("keys?").session(s.id))
        .await
        .unwrap();
    assert!(matches!(
        stream.next().await,
        Some(Ok(AskEvent::Sources(_)))
    ));
    assert!(matches!(stream.next().await, Some(Ok(AskEvent::Delta(_)))));
    drop(stream);
    assert!(messages(&sessions, s.id).await.is_empty());

    let events: Vec<AskEvent> = rag
        .ask_stream(Ask::new("keys?").session(s.id))
        .await
        .unwrap()
        .map(|e| e.unwrap())
        .collect()
        .await;
    let Some(AskEvent::Done(answer)) = events.last() else {
        panic!("no Done event");
    };
    let stored = messages(&sessions, s.id).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].message.content, answer.text);
}

#[tokio::test]
async fn sessions_of_other_namespaces_and_unknown_ones_are_not_found() {
    let (rag, _) = rag(ScriptedLlm::new()).await;
    let other = rag
        .create_session(NewSession::new(Namespace::new("other").unwrap()))
        .await
        .unwrap();
    let err = rag
        .ask(Ask::new("keys?").session(other.id))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));
    let err = rag
        .ask(Ask::new("keys?").session(uuid::Uuid::new_v4()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }));
}

#[tokio::test]
async fn history_is_trimmed_oldest_first_to_its_budget() {
    let (rag, sessions) = rag(ScriptedLlm::new()).await;
    let s = rag.create_session(NewSession::default()).await.unwrap();
    let old: Vec<Message> = (0..10)
        .flat_map(|i| {
            [
                Message::user(format!("question number {i} {}", "pad ".repeat(40))),
                Message::assistant(format!("answer number {i}")),
            ]
        })
        .collect();
    sessions.append(s.id, old).await.unwrap();
    let a = rag
        .ask(
            Ask::new("keys?")
                .session(s.id)
                .condense(false)
                .history_tokens(120),
        )
        .await
        .unwrap();
    assert!(a.trace.history_messages >= 1);
    assert!(a.trace.history_dropped >= 1);
    assert_eq!(
        a.trace.history_messages + a.trace.history_dropped,
        rag.config().history_window
    );
}

// ------------------------------------------------------------ packing property

fn chunk(i: usize, text: &str, counted: bool) -> ScoredChunk {
    let doc = Document::new(format!("doc{i}.md"), text);
    let mut c = Chunk::from_document(&doc, 0, 0..text.len());
    if counted {
        c.token_count = Some(crate::TokenEncoding::Cl100k.count(text) as u32);
    }
    ScoredChunk::dense(c, 1.0 / (i as f32 + 1.0))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn packing_never_exceeds_any_budget(
        texts in prop::collection::vec("[a-z .,!?\n日本🙂\\[\\]0-9<>\"]{0,300}", 0..10),
        history in prop::collection::vec("[a-zé ,.\n]{0,200}", 0..8),
        question in "[a-z ?\n]{1,400}",
        window in 16usize..3000,
        context in 0usize..1500,
        history_budget in 0usize..600,
        answer in 0u32..500,
        counted in any::<bool>(),
    ) {
        let enc = crate::TokenEncoding::Cl100k;
        let template = PromptTemplate::default();
        let candidates: Vec<ScoredChunk> = texts.into_iter().enumerate()
            .map(|(i, t)| chunk(i, &t, counted)).collect();
        let history: Vec<Message> = history.into_iter().enumerate()
            .map(|(i, t)| if i % 2 == 0 { Message::user(t) } else { Message::assistant(t) })
            .collect();
        let n_history = history.len();
        let out = packing::pack(PackInput {
            template: &template,
            template_tokens: None,
            question: &question,
            history,
            candidates,
            budget: TokenBudget::new(context, history_budget, answer),
            context_window: window,
            encoding: enc,
        });
        match out {
            Ok(p) => {
                let limit = window - answer as usize;
                let tokens = count_prompt_tokens(&p.messages, enc);
                prop_assert!(tokens <= limit, "{tokens} > {limit}");
                prop_assert!(tokens <= p.prompt_tokens);
                let hist: usize = p.messages[1..p.messages.len() - 1].iter()
                    .map(|m| enc.count(&m.content) + MESSAGE_OVERHEAD_TOKENS).sum();
                prop_assert!(hist <= history_budget);
                let src: usize = p.sources.iter().map(|s| enc.count(&s.text)).sum();
                prop_assert!(src <= context);
                prop_assert_eq!(p.history_used + p.history_dropped, n_history);
                // Kept history is the most recent, in order.
                prop_assert_eq!(p.messages.last().map(|m| m.content.clone()), Some(question));
                for (k, s) in p.sources.iter().enumerate() {
                    prop_assert_eq!(s.number, k + 1);
                }
            }
            Err(Error::ContextLengthExceeded { tokens, limit }) => {
                prop_assert!(tokens > limit);
                prop_assert_eq!(limit, window - answer as usize);
            }
            Err(Error::InvalidInput { .. }) => prop_assert!(answer as usize >= window),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}
