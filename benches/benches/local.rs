//! Local models (rag-local): embedding throughput of all-MiniLM-L6-v2 on
//! candle and of bge-small-en-v1.5 (int8) on ONNX Runtime (batch 32 of
//! ~20-token and ~200-token texts), cross-encoder latency for 20 candidates
//! on ONNX Runtime (truncated to 256 and to 512 tokens), and SmolLM2-135M
//! generation speed.
//!
//! ```text
//! scripts/fetch-models
//! cargo bench -p rag-benches --features local --bench local
//! CANDLE_NUM_THREADS=1 cargo bench -p rag-benches --features local --bench local -- local_embed/
//! cargo bench -p rag-benches --features local --bench local -- local_embed_bge
//! python3 benches/compare/sentence_transformers_embed.py   # the same inputs in Python
//! ```
//!
//! `CANDLE_NUM_THREADS=1` turns off candle's element-wise thread pool, which
//! lets `LocalEmbedder` run batches side by side (see its docs); compare
//! both settings.
//!
//! Inputs: `benches/compare/local_inputs.json`, shared with the Python
//! script. Criterion's "elements/s" is sentences/s for the embedding
//! groups and generated tokens/s for the chat group. Without the models the
//! bench prints a notice and measures nothing.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use rag::local::{
    CrossEncoderConfig, CrossEncoderReranker, LocalModels, OnnxEmbedder, OnnxEmbedderConfig,
};
use rag::{
    ChatRequest, Chunk, Document, Embedder, FinishReason, LlmClient, Message, Reranker, ScoredChunk,
};
use serde_json::Value;

const INPUTS: &str = include_str!("../compare/local_inputs.json");
const GENERATED: u32 = 64;

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

fn main() {
    let models = match LocalModels::from_env() {
        Ok(m) if m.has_embedder() && m.has_reranker() && m.has_chat() => m,
        Ok(_) | Err(_) => {
            eprintln!("local bench NOT RUN: the models are missing (run scripts/fetch-models)");
            return;
        }
    };
    let inputs: Value = serde_json::from_str(INPUTS).expect("local_inputs.json");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));

    // Embedding throughput.
    let embedder = Arc::new(models.embedder().expect("embedder"));
    let mut group = c.benchmark_group("local_embed");
    group.sample_size(10);
    for name in ["short", "long"] {
        let texts = strings(&inputs[name]);
        assert_eq!(texts.len(), 32);
        let tokens: usize = texts
            .iter()
            .map(|t| t.split_whitespace().count())
            .sum::<usize>()
            / texts.len();
        eprintln!("local_embed/{name}: 32 texts of about {tokens} words");
        group.throughput(Throughput::Elements(32));
        group.bench_function(format!("minilm_batch32_{name}"), |b| {
            b.to_async(&rt).iter(|| {
                let e = Arc::clone(&embedder);
                let texts = texts.clone();
                async move { e.embed(&texts).await.expect("embed") }
            });
        });
    }
    group.finish();

    // Embedding throughput of bge-small-en-v1.5 (int8 ONNX), the same
    // inputs, 32 texts per call, run in forward passes of 16 (its default
    // batch size) or in one pass of 32. Passages: no query instruction.
    if models.has_bge_embedder() {
        let mut group = c.benchmark_group("local_embed_bge");
        group.sample_size(10);
        for batch in [16usize, 32] {
            let embedder = Arc::new(
                OnnxEmbedder::load(
                    OnnxEmbedderConfig::new(models.bge_dir())
                        .with_onnxruntime_library(models.onnxruntime_library())
                        .with_batch_size(batch),
                )
                .expect("bge embedder"),
            );
            for name in ["short", "long"] {
                let texts = strings(&inputs[name]);
                assert_eq!(texts.len(), 32);
                group.throughput(Throughput::Elements(32));
                group.bench_function(
                    format!("bge_small_int8_batch32_{name}_passes_of_{batch}"),
                    |b| {
                        b.to_async(&rt).iter(|| {
                            let e = Arc::clone(&embedder);
                            let texts = texts.clone();
                            async move { e.embed(&texts).await.expect("embed") }
                        });
                    },
                );
            }
        }
        group.finish();
    } else {
        eprintln!(
            "local_embed_bge NOT RUN: bge-small-en-v1.5 is missing (run scripts/fetch-models)"
        );
    }

    // Rerank latency, 20 candidates.
    let query = inputs["query"].as_str().expect("query").to_owned();
    let candidates: Vec<ScoredChunk> = strings(&inputs["passages"])
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let doc = Document::new(format!("passage{i}"), text.clone());
            ScoredChunk::dense(Chunk::from_document(&doc, 0, 0..text.len()), 0.5)
        })
        .collect();
    let mut group = c.benchmark_group("local_rerank_20");
    group.sample_size(10);
    for (max_length, batch) in [(192usize, 8usize), (256, 8), (512, 8), (512, 20)] {
        let reranker = Arc::new(
            CrossEncoderReranker::load(
                CrossEncoderConfig::new(models.reranker_dir())
                    .with_onnxruntime_library(models.onnxruntime_library())
                    .with_max_length(max_length)
                    .with_batch_size(batch),
            )
            .expect("reranker"),
        );
        group.bench_function(format!("max_length_{max_length}_batch_{batch}"), |b| {
            b.to_async(&rt).iter(|| {
                let r = Arc::clone(&reranker);
                let (q, cands) = (query.clone(), candidates.clone());
                async move { r.rerank(&q, cands, 5).await.expect("rerank") }
            });
        });
    }
    group.finish();

    // Generation speed: 64 tokens after a short prompt.
    let chat = Arc::new(models.chat().expect("chat model"));
    let request = ChatRequest::new(vec![Message::user(
        "Write a long story about a dragon who learns to bake bread.",
    )])
    .with_max_tokens(GENERATED);
    let (probe, stats) = rt
        .block_on(chat.complete_with_stats(request.clone()))
        .expect("generate");
    assert_eq!(
        probe.finish_reason,
        FinishReason::Length,
        "{:?}",
        probe.text
    );
    eprintln!(
        "local_chat: prompt {} tokens at {:.0} tokens/s, {} generated at {:.1} tokens/s",
        stats.prompt_tokens,
        stats.prompt_tokens_per_second(),
        stats.completion_tokens,
        stats.tokens_per_second()
    );
    let mut group = c.benchmark_group("local_chat");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(GENERATED)));
    group.bench_function("smollm2_135m_q4_1_generate_64", |b| {
        b.to_async(&rt).iter(|| {
            let llm = Arc::clone(&chat);
            let req = request.clone();
            async move { llm.complete(req).await.expect("complete") }
        });
    });
    group.finish();
    c.final_summary();
}
