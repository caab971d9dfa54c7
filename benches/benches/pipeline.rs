//! Pipeline overhead of one question: everything except model time.
//!
//! 10,000 chunks in the in-memory store, the 384-dimensional HashEmbedder,
//! and a ScriptedLlm that answers instantly; one `ask` (condense off: no
//! session) measures query embedding, dense and keyword search, fusion,
//! packing with tiktoken budgets, citation parsing and answer assembly.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use futures::StreamExt;
use rag::testkit::ScriptedLlm;
use rag::{
    Ask, Document, Embedder, HashEmbedder, MemoryVectorStore, Rag, SearchMode, SearchRequest,
    VectorStore,
};

const CHUNKS: usize = 10_000;
const QUESTION: &str = "How do I rotate the API keys of the billing service?";

/// Domain words, placed at moderate frequency ranks of the vocabulary.
const DOMAIN: &[&str] = &[
    "api",
    "key",
    "keys",
    "rotate",
    "billing",
    "service",
    "deploy",
    "release",
    "database",
    "backup",
    "restore",
    "token",
    "secret",
    "vault",
    "team",
    "ops",
    "oncall",
    "alert",
    "metric",
    "dashboard",
    "latency",
    "error",
    "budget",
    "incident",
    "review",
    "policy",
    "access",
    "role",
    "user",
    "admin",
    "network",
    "firewall",
    "cluster",
    "node",
    "pod",
    "queue",
    "worker",
    "cache",
    "index",
    "search",
    "query",
    "schema",
    "migration",
    "table",
];
const STOP: &[&str] = &["the", "a", "of", "to", "and", "is", "in", "for"];
const VOCAB: usize = 5_000;

/// The word of frequency rank `r`: stop words first, domain words from rank
/// 100 on, synthetic words elsewhere.
fn word(r: usize) -> String {
    if r < STOP.len() {
        STOP[r].to_owned()
    } else if (100..100 + DOMAIN.len()).contains(&r) {
        DOMAIN[r - 100].to_owned()
    } else {
        format!("w{r}x")
    }
}

/// A deterministic text of `words` words with a Zipf-like (1/rank) word
/// distribution over a 5,000-word vocabulary, as natural text has.
fn text(seed: u64, words: usize) -> String {
    let mut x = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    let mut out = String::new();
    for i in 0..words {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let u = (x >> 11) as f64 / (1u64 << 53) as f64;
        let rank = ((VOCAB as f64).powf(u) as usize).saturating_sub(1);
        out.push_str(&word(rank));
        out.push_str(if i % 12 == 11 { ". " } else { " " });
    }
    out
}

fn bench_ask(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rag = Rag::builder()
        .store(MemoryVectorStore::default())
        .embedder(HashEmbedder::new(384))
        .llm(
            ScriptedLlm::new()
                .with_responder(|_| "Rotate them monthly [1] with the vault [2].".into()),
        )
        .build()
        .expect("pipeline");
    // One chunk per document (~60 words, well under the 256-token chunk size).
    let docs = (0..CHUNKS as u64).map(|i| Document::new(format!("doc-{i}.md"), text(i, 60)));
    let report = rt.block_on(rag.ingest_many(docs));
    assert!(report.is_success());
    let count = rt
        .block_on(rag.store().count(&rag::Namespace::default()))
        .expect("count");
    assert_eq!(count, CHUNKS);

    let mut group = c.benchmark_group("pipeline_ask_10k_chunks");
    for (name, mode) in [
        ("hybrid", SearchMode::Hybrid),
        ("dense", SearchMode::Dense),
        ("keyword", SearchMode::Keyword),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let answer = rag
                    .ask(Ask::new(QUESTION).mode(mode))
                    .await
                    .expect("answer");
                black_box(answer)
            });
        });
    }
    // Baselines: the store's own searches, which `ask` includes.
    let ns = rag::Namespace::default();
    let query = rt
        .block_on(rag.embedder().embed_query(QUESTION))
        .expect("query vector");
    group.bench_function("store_dense_search_only", |b| {
        b.to_async(&rt).iter(|| async {
            let hits = rag
                .store()
                .search(&ns, SearchRequest::dense(query.clone(), 20))
                .await
                .expect("search");
            black_box(hits)
        });
    });
    group.bench_function("store_keyword_search_only", |b| {
        b.to_async(&rt).iter(|| async {
            let hits = rag
                .store()
                .search(&ns, SearchRequest::keyword(QUESTION, 20))
                .await
                .expect("search");
            black_box(hits)
        });
    });
    group.bench_function("hybrid_stream", |b| {
        b.to_async(&rt).iter(|| async {
            let events: Vec<_> = rag
                .ask_stream(Ask::new(QUESTION))
                .await
                .expect("stream")
                .collect()
                .await;
            black_box(events)
        });
    });
    group.finish();
}

criterion_group!(benches, bench_ask);
criterion_main!(benches);
