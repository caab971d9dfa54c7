//! `Instrumented`'s metrics and spans, and that neither carries content.
//!
//! Alone in its own test binary (so its own process under `cargo test`):
//! tracing caches each callsite's interest process-wide, and a callsite
//! first hit by another test's thread while this test's scoped subscriber
//! is being registered can be cached as "never", losing its span here.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rag_core::layers::Instrumented;
use rag_core::testkit::ScriptedLlm;
use rag_core::{Ask, Document, Error, HashEmbedder, MemoryVectorStore, Rag};

fn down() -> Error {
    Error::backend("provider", true, "503 service unavailable")
}

/// A tracing subscriber that keeps every span name and field it sees.
#[derive(Default, Clone)]
struct Capture {
    seen: Arc<parking_lot::Mutex<Vec<String>>>,
    next: Arc<AtomicUsize>,
}

struct Fields<'a>(&'a mut Vec<String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push(format!("{}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut seen = self.seen.lock();
        seen.push(format!("span {}", span.metadata().name()));
        span.record(&mut Fields(&mut seen));
        tracing::span::Id::from_u64(self.next.fetch_add(1, Ordering::SeqCst) as u64 + 1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut Fields(&mut self.seen.lock()));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        event.record(&mut Fields(&mut self.seen.lock()));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn instrumented_records_metrics_and_spans_but_never_content() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    const SECRET_QUESTION: &str = "What is the launch code of project zebra?";
    const SECRET_DOC: &str = "The launch code of project zebra is 7741.";
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let capture = Capture::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        tracing::subscriber::with_default(capture.clone(), || {
            rt.block_on(async {
                let llm = Instrumented::new(
                    ScriptedLlm::new()
                        .with_model_id("model-x")
                        .then_fail(down())
                        .then_reply("The code is 7741 [1]."),
                );
                let rag = Rag::builder()
                    .embedder(Instrumented::new(HashEmbedder::new(64)))
                    .store(Instrumented::new(MemoryVectorStore::default()))
                    .llm(llm)
                    .build()
                    .unwrap();
                rag.ingest(Document::new("zebra.md", SECRET_DOC))
                    .await
                    .unwrap();
                assert!(rag.ask(Ask::new(SECRET_QUESTION)).await.is_err());
                let answer = rag.ask(Ask::new(SECRET_QUESTION)).await.unwrap();
                assert!(answer.text.contains("7741"));
            })
        })
    });

    let snapshot = snapshotter.snapshot().into_vec();
    let mut names = std::collections::BTreeSet::new();
    let counter = |name: &str, label: (&str, &str)| -> u64 {
        snapshot
            .iter()
            .filter(|(k, ..)| {
                k.key().name() == name
                    && k.key()
                        .labels()
                        .any(|l| l.key() == label.0 && l.value() == label.1)
            })
            .map(|(.., v)| match v {
                DebugValue::Counter(n) => *n,
                _ => 0,
            })
            .sum()
    };
    assert_eq!(counter("rag_errors_total", ("kind", "backend")), 1);
    assert!(counter("rag_calls_total", ("outcome", "ok")) >= 4);
    assert_eq!(counter("rag_llm_tokens_total", ("type", "completion")), 5);
    assert!(counter("rag_embedded_texts_total", ("model", "hash-embedder-v1-64")) >= 2);
    for (key, _, _, value) in &snapshot {
        names.insert(key.key().name().to_owned());
        for label in key.key().labels() {
            for secret in ["zebra", "launch", "7741"] {
                assert!(
                    !label.value().contains(secret),
                    "metric {} has content in a label: {label:?}",
                    key.key().name()
                );
            }
        }
        if key.key().name() == "rag_call_duration_seconds" {
            assert!(matches!(value, DebugValue::Histogram(h) if !h.is_empty()));
        }
    }
    for expected in [
        "rag_call_duration_seconds",
        "rag_ask_stage_seconds",
        "rag_llm_tokens_total",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }

    let seen = capture.seen.lock().join("\n");
    for span in [
        "span rag.llm.complete",
        "span rag.embedder.embed",
        "span rag.store.search",
    ] {
        assert!(seen.contains(span), "{span} missing:\n{seen}");
    }
    assert!(seen.contains("model=model-x"), "{seen}");
    assert!(seen.contains("error=\"backend\""), "{seen}");
    for secret in ["zebra", "launch", "7741"] {
        assert!(
            !seen.contains(secret),
            "tracing saw content {secret:?}:\n{seen}"
        );
    }
}
