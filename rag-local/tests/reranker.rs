//! CrossEncoderReranker against onnxruntime in Python on the same model and
//! tokenizer. Needs `scripts/fetch-models`.
#![cfg(feature = "onnx")]

mod common;

use common::{fixture, models};
use rag_core::{Chunk, Document, Error, Reranker, ScoredChunk};
use rag_local::{CrossEncoderConfig, CrossEncoderReranker, LocalModels, ScoreMode};

const WHAT: &str = "cross-encoder (ms-marco-MiniLM-L-12-v2) or ONNX Runtime";

fn config(m: &LocalModels) -> CrossEncoderConfig {
    CrossEncoderConfig::new(m.reranker_dir()).with_onnxruntime_library(m.onnxruntime_library())
}

fn candidate(i: usize, text: &str) -> ScoredChunk {
    let doc = Document::new(format!("doc{i}"), text.to_owned());
    ScoredChunk::dense(
        Chunk::from_document(&doc, 0, 0..text.len()),
        1.0 - i as f32 * 0.01,
    )
}

fn fixture_pairs() -> (serde_json::Value, Vec<(String, String)>) {
    let fx = fixture("rerank.json");
    let pairs = fx["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["query"].as_str().unwrap().to_owned(),
                p["passage"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (fx, pairs)
}

/// The instruction-set class ONNX Runtime's int8 kernels take on this CPU
/// (`vnni`, `avx512` or `avx2`), as `make_fixtures.py` records it: the
/// kernels round differently, so a logit differs by up to ~0.25 between
/// classes for the same input.
fn int8_class() -> &'static str {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    if flags.contains(&"avx512_vnni") || flags.contains(&"avx_vnni") {
        "vnni"
    } else if flags.contains(&"avx512bw") {
        "avx512"
    } else {
        "avx2"
    }
}

#[test]
fn matches_onnxruntime_python() {
    let Some(m) = models(
        "matches_onnxruntime_python",
        WHAT,
        LocalModels::has_reranker,
    ) else {
        return;
    };
    let (fx, pairs) = fixture_pairs();
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(q, p)| (q.as_str(), p.as_str()))
        .collect();
    // Same CPU class as the reference run: the same kernels, so the same
    // logits up to float noise. Another class: within the cross-CPU spread.
    let same_cpu = fx["cpu_int8"].as_str() == Some(int8_class());
    let tolerance = if same_cpu { 2e-3 } else { 0.5 };
    if !same_cpu {
        eprintln!(
            "the fixture was made on a {:?} CPU, this one is {:?}: comparing within {tolerance}",
            fx["cpu_int8"],
            int8_class()
        );
    }
    let mut worst = 0f32;
    for max_length in [512usize, 256] {
        let want: Vec<f32> = fx["by_max_length"][max_length.to_string()]["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        // One batch of every pair, as the reference ran them.
        let r = CrossEncoderReranker::load(
            config(&m)
                .with_max_length(max_length)
                .with_batch_size(pairs.len()),
        )
        .unwrap();
        let got = r.score_pairs_blocking(&pairs).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let diff = (g - w).abs();
            worst = worst.max(diff);
            assert!(
                diff <= tolerance,
                "pair {i} at max_length {max_length}: {g} vs onnxruntime {w}"
            );
        }
        // Scored in batches of 2 instead: the int8 model quantizes
        // activations per batch (padding included), so a pair's score moves
        // with its neighbours, by up to about 0.4 for the 512-token pair
        // here; the order within a query does not.
        let r =
            CrossEncoderReranker::load(config(&m).with_max_length(max_length).with_batch_size(2))
                .unwrap();
        let small = r.score_pairs_blocking(&pairs).unwrap();
        for (i, (g, w)) in small.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 0.5 + tolerance,
                "pair {i}, batches of 2: {g} vs {w}"
            );
        }
        for q in [0..3, 3..5] {
            let order = |s: &[f32]| {
                let mut idx: Vec<usize> = q.clone().collect();
                idx.sort_by(|a, b| s[*b].total_cmp(&s[*a]));
                idx
            };
            assert_eq!(
                order(&small),
                order(&want),
                "order at max_length {max_length}"
            );
            assert_eq!(
                order(&got),
                order(&want),
                "order at max_length {max_length}"
            );
        }
    }
    eprintln!("max abs logit difference vs onnxruntime (Python): {worst:.2e}");
}

#[tokio::test]
async fn rerank_orders_and_cuts() {
    let Some(m) = models("rerank_orders_and_cuts", WHAT, LocalModels::has_reranker) else {
        return;
    };
    let r = m.reranker().unwrap();
    assert_eq!(r.model_id(), "ms-marco-MiniLM-L-12-v2");
    let (_, pairs) = fixture_pairs();
    let candidates: Vec<ScoredChunk> = pairs[..3]
        .iter()
        .enumerate()
        .map(|(i, (_, p))| candidate(i, p))
        .collect();
    let query = &pairs[0].0;
    let out = r.rerank(query, candidates.clone(), 10).await.unwrap();
    assert_eq!(out.len(), 3);
    let texts: Vec<&str> = out.iter().map(|c| c.chunk.text.as_str()).collect();
    assert_eq!(
        texts[2], pairs[1].1,
        "the cafeteria passage is last: {texts:?}"
    );
    for w in out.windows(2) {
        assert!(w[0].score >= w[1].score);
    }
    for c in &out {
        assert_eq!(c.rerank_score, Some(c.score));
        assert!(c.dense_score.is_some(), "other scores are kept");
    }
    let top = r.rerank(query, candidates.clone(), 1).await.unwrap();
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].chunk.id, out[0].chunk.id);
    assert!(r.rerank(query, Vec::new(), 5).await.unwrap().is_empty());
    assert!(
        r.rerank(query, candidates.clone(), 0)
            .await
            .unwrap()
            .is_empty()
    );

    let sig = CrossEncoderReranker::load(config(&m).with_score(ScoreMode::Sigmoid)).unwrap();
    let s = sig.rerank(query, candidates, 3).await.unwrap();
    assert!(s.iter().all(|c| c.score > 0.0 && c.score < 1.0));
    assert_eq!(s[0].chunk.id, out[0].chunk.id);
}

#[test]
fn corrupt_model_is_named() {
    let Some(m) = models("corrupt_model_is_named", WHAT, LocalModels::has_reranker) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broken-cross-encoder");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        m.reranker_dir().join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(dir.join("model.onnx"), b"definitely not an onnx graph").unwrap();
    let err = CrossEncoderReranker::load(
        CrossEncoderConfig::new(&dir).with_onnxruntime_library(m.onnxruntime_library()),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("model.onnx") && msg.contains("scripts/fetch-models"),
        "{msg}"
    );
}
