//! OnnxEmbedder (bge-small-en-v1.5, int8 ONNX) against onnxruntime in
//! Python on the same model and tokenizer, its query instruction, and the
//! rag-core embedder conformance suite. Needs `scripts/fetch-models`.
#![cfg(feature = "onnx")]

mod common;

use common::{cosine, fixture, models};
use rag_core::{Embedder, Error, testkit};
use rag_local::{BGE_QUERY_INSTRUCTION, LocalModels, OnnxEmbedder, OnnxEmbedderConfig, Pooling};

const WHAT: &str = "bge embedder (bge-small-en-v1.5) or ONNX Runtime";

fn config(m: &LocalModels) -> OnnxEmbedderConfig {
    OnnxEmbedderConfig::new(m.bge_dir()).with_onnxruntime_library(m.onnxruntime_library())
}

fn embedder(test: &str) -> Option<OnnxEmbedder> {
    let m = models(test, WHAT, LocalModels::has_bge_embedder)?;
    Some(OnnxEmbedder::load(config(&m)).expect("the bge model loads"))
}

/// The instruction-set class ONNX Runtime's int8 kernels take on this CPU
/// (`vnni`, `avx512` or `avx2`), as `make_bge_fixture.py` records it: the
/// kernels round differently, so vectors differ a little between classes.
/// (The same rule as `tests/reranker.rs`.)
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

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// (a) The fixture's sentences went through onnxruntime in ONE batch (see
/// `make_bge_fixture.py`): the int8 model quantizes activations per forward
/// pass, so only the same batch gives the same vectors. 8 sentences and the
/// default batch size of 16 make one batch here too; sorting by length
/// only permutes its rows. Each sentence alone is compared as well.
#[tokio::test]
async fn matches_onnxruntime_python() {
    let Some(e) = embedder("matches_onnxruntime_python") else {
        return;
    };
    let fx = fixture("bge_embeddings.json");
    assert_eq!(e.max_length() as u64, fx["max_length"].as_u64().unwrap());
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() <= e.config().batch_size);
    assert!(
        cases.iter().any(|c| c["tokens"].as_u64().unwrap() > 512),
        "the fixture has a text longer than the model's 512 positions"
    );
    // Same CPU class as the reference run: the same kernels, so the same
    // vectors up to float noise. Another class: a looser bound.
    let same_cpu = fx["cpu_int8"].as_str() == Some(int8_class());
    let bound = if same_cpu { 0.999 } else { 0.99 };
    if !same_cpu {
        eprintln!(
            "the fixture was made on a {:?} CPU, this one is {:?}: cosine bound {bound}",
            fx["cpu_int8"],
            int8_class()
        );
    }
    let texts: Vec<String> = cases
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_owned())
        .collect();
    let vectors = e.embed(&texts).await.unwrap();
    let mut min = f32::MAX;
    for (case, v) in cases.iter().zip(&vectors) {
        assert_eq!(v.len(), 384);
        let sim = cosine(v, &floats(&case["vector"]));
        min = min.min(sim);
        assert!(
            sim >= bound,
            "cosine {sim} < {bound} against onnxruntime (Python) for {:?}",
            case["text"]
                .as_str()
                .unwrap()
                .chars()
                .take(40)
                .collect::<String>()
        );
    }
    eprintln!(
        "bge: min cosine vs onnxruntime (Python), same batch, over {} sentences: {min:.7} \
         (1 - min = {:.1e})",
        cases.len(),
        1.0 - min
    );
    // Each alone, as the reference also ran them: the same vectors, and how
    // far batch composition moves a vector.
    let (mut min_alone, mut min_moved) = (f32::MAX, f32::MAX);
    for ((case, t), batched) in cases.iter().zip(&texts).zip(&vectors) {
        let alone = e.embed(std::slice::from_ref(t)).await.unwrap();
        let sim = cosine(&alone[0], &floats(&case["alone"]));
        assert!(sim >= bound, "alone: cosine {sim} < {bound} for {t:.40}");
        min_alone = min_alone.min(sim);
        min_moved = min_moved.min(cosine(&alone[0], batched));
    }
    eprintln!(
        "bge: min cosine vs onnxruntime (Python), each alone: {min_alone:.7}; \
         alone vs in the batch of {}: {min_moved:.5}",
        cases.len()
    );
    // About 0.989 here: the batch pads to 512 tokens for the long text.
    assert!(
        min_moved >= 0.98,
        "batch composition moved a vector: {min_moved}"
    );
}

#[tokio::test]
async fn settings_of_the_bundled_model() {
    let Some(m) = models(
        "settings_of_the_bundled_model",
        WHAT,
        LocalModels::has_bge_embedder,
    ) else {
        return;
    };
    let e = m.bge_embedder().unwrap();
    assert_eq!(e.model_id(), "bge-small-en-v1.5");
    assert_eq!(e.dimensions(), 384);
    assert_eq!(e.pooling(), Pooling::Cls);
    assert_eq!(e.max_length(), 512);
    assert_eq!(e.query_instruction(), Some(BGE_QUERY_INSTRUCTION));
    let v = e.embed_query("How often are keys rotated?").await.unwrap();
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");
    let debug = format!("{e:?}");
    assert!(
        debug.contains("bge-small-en-v1.5") && debug.len() < 1000,
        "{debug}"
    );
}

/// (b) `embed_query` is `embed` of the instruction + query, and the
/// instruction changes the vector.
#[tokio::test]
async fn embed_query_applies_the_instruction() {
    let Some(e) = embedder("embed_query_applies_the_instruction") else {
        return;
    };
    let query = "how do I rotate the API keys?";
    let q = e.embed_query(query).await.unwrap();
    let prefixed = e
        .embed(&[format!("{BGE_QUERY_INSTRUCTION}{query}")])
        .await
        .unwrap();
    let bare = e.embed(&[query.to_owned()]).await.unwrap();
    let same = cosine(&q, &prefixed[0]);
    let moved = cosine(&q, &bare[0]);
    assert!(
        same > 0.99999,
        "embed_query vs embed(instruction + query): {same}"
    );
    assert!(
        moved < 0.99,
        "the instruction must change the vector: {moved}"
    );

    let plain = OnnxEmbedder::load(e.config().clone().without_query_instruction()).unwrap();
    assert_eq!(plain.query_instruction(), None);
    let q = plain.embed_query(query).await.unwrap();
    assert!(cosine(&q, &bare[0]) > 0.99999);
    let custom = OnnxEmbedder::load(e.config().clone().with_query_instruction("query: ")).unwrap();
    let q = custom.embed_query(query).await.unwrap();
    let want = e.embed(&[format!("query: {query}")]).await.unwrap();
    assert!(cosine(&q, &want[0]) > 0.99999);
}

/// (c) A relevant passage scores above an irrelevant one.
#[tokio::test]
async fn relevant_passage_scores_higher() {
    let Some(e) = embedder("relevant_passage_scores_higher") else {
        return;
    };
    let cases = [
        (
            "how do I rotate the API keys?",
            "To rotate a key, create a new key, deploy it, then revoke the old key after an hour.",
            "The cafeteria serves lunch at noon on weekdays.",
        ),
        (
            "How do I change my car's tyre?",
            "Replacing a flat tire on an automobile: loosen the lug nuts, jack it up.",
            "The quarterly budget review is due on Friday.",
        ),
        (
            "what is the capital of Japan?",
            "東京は日本の首都です。 Tokyo is the capital of Japan.",
            "Sourdough bread needs a long, cold fermentation.",
        ),
    ];
    for (query, relevant, irrelevant) in cases {
        let q = e.embed_query(query).await.unwrap();
        let p = e
            .embed(&[relevant.to_owned(), irrelevant.to_owned()])
            .await
            .unwrap();
        let (good, bad) = (cosine(&q, &p[0]), cosine(&q, &p[1]));
        eprintln!("{query:?}: relevant {good:.3}, irrelevant {bad:.3}");
        assert!(
            good > bad + 0.05,
            "{query:?}: relevant {good} vs irrelevant {bad}"
        );
    }
}

#[tokio::test]
async fn conformance() {
    let Some(m) = models(
        "bge embedder conformance",
        WHAT,
        LocalModels::has_bge_embedder,
    ) else {
        return;
    };
    // One text per forward pass: the suite wants a text's vector in a batch
    // to be the same (cosine >= 0.999) as alone, and the int8 model's
    // per-pass activation quantization moves it by more than that (cosine
    // about 0.997 for its three short texts) when texts share a pass.
    let e = OnnxEmbedder::load(config(&m).with_batch_size(1)).unwrap();
    testkit::embedder::run_all(&e).await;
    let batched = OnnxEmbedder::load(config(&m)).unwrap();
    testkit::embedder::model_id_and_dimensions(&batched).await;
    testkit::embedder::one_vector_per_text(&batched).await;
    testkit::embedder::empty_batch_is_empty(&batched).await;
    testkit::embedder::rejects_empty_text(&batched).await;
    testkit::embedder::unicode_text(&batched).await;
    testkit::embedder::embed_query_returns_one_vector(&batched).await;
}

/// With the default batch size, a text's vector depends a little on the
/// other texts of its pass, but the output is still in input order: each
/// vector is far closer to its own text embedded alone than to any other.
#[tokio::test]
async fn batches_keep_input_order() {
    let Some(e) = embedder("batches_keep_input_order") else {
        return;
    };
    let texts: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "Document number {i} talks about topic {} and item {}.{}",
                i * 7 % 13,
                i * i,
                " More words.".repeat(i % 5)
            )
        })
        .collect();
    let batch = e.embed(&texts).await.unwrap();
    let mut worst = f32::MAX;
    for (i, t) in texts.iter().enumerate() {
        let alone = e.embed(std::slice::from_ref(t)).await.unwrap();
        let own = cosine(&batch[i], &alone[0]);
        worst = worst.min(own);
        for (j, other) in batch.iter().enumerate() {
            if j != i {
                assert!(
                    own > cosine(other, &alone[0]),
                    "vector {i} of the batch is closer to text {j} alone"
                );
            }
        }
    }
    eprintln!("bge: batch of 40 vs each alone, min cosine {worst:.5}");
    assert!(worst >= 0.98, "{worst}");
}

#[tokio::test]
async fn empty_input_is_rejected() {
    let Some(e) = embedder("empty_input_is_rejected") else {
        return;
    };
    assert!(matches!(
        e.embed(&["ok".to_owned(), " ".to_owned()]).await,
        Err(Error::InvalidInput { .. })
    ));
    assert!(matches!(
        e.embed_query("\n").await,
        Err(Error::InvalidInput { .. })
    ));
    assert!(e.embed(&[]).await.unwrap().is_empty());
}

#[test]
fn corrupt_model_is_named() {
    let Some(m) = models(
        "corrupt_model_is_named",
        WHAT,
        LocalModels::has_bge_embedder,
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broken-bge");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        m.bge_dir().join("tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(dir.join("model.onnx"), b"definitely not an onnx graph").unwrap();
    let err = OnnxEmbedder::load(
        OnnxEmbedderConfig::new(&dir).with_onnxruntime_library(m.onnxruntime_library()),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("model.onnx") && msg.contains("scripts/fetch-models"),
        "{msg}"
    );
}

/// Sentences per second of OnnxEmbedder (bge-small int8) and, with the
/// `candle` feature, LocalEmbedder (all-MiniLM-L6-v2) on the bench's 32
/// ~200-token texts, twice over (64 texts). Only with
/// `RAG_LOCAL_TIMINGS=1`; prints, asserts nothing about speed. ONNX
/// Runtime is a release build whatever this test's profile, and the
/// workspace compiles candle optimised in dev builds.
#[tokio::test]
async fn throughput_on_long_texts() {
    if std::env::var_os("RAG_LOCAL_TIMINGS").is_none() {
        eprintln!("throughput_on_long_texts: set RAG_LOCAL_TIMINGS=1 to measure");
        return;
    }
    let Some(m) = models(
        "throughput_on_long_texts",
        WHAT,
        LocalModels::has_bge_embedder,
    ) else {
        return;
    };
    let inputs = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../benches/compare/local_inputs.json");
    let inputs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&inputs).unwrap()).unwrap();
    let texts = |name: &str| -> Vec<String> {
        let v: Vec<String> = inputs[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect();
        v.iter().chain(&v).cloned().collect()
    };
    let (long, short) = (texts("long"), texts("short"));

    async fn time(name: &str, e: &dyn Embedder, texts: &[String], what: &str) {
        e.embed(&texts[..4]).await.unwrap(); // warm up
        let mut best = f64::MAX;
        for _ in 0..2 {
            let start = std::time::Instant::now();
            let v = e.embed(texts).await.unwrap();
            best = best.min(start.elapsed().as_secs_f64());
            assert_eq!(v.len(), texts.len());
        }
        eprintln!(
            "{name}: {} texts of {what} in {best:.2} s = {:.1} sentences/s",
            texts.len(),
            texts.len() as f64 / best
        );
    }
    for batch in [1usize, 4, 16, 32] {
        let bge = OnnxEmbedder::load(config(&m).with_batch_size(batch)).unwrap();
        let name = format!("OnnxEmbedder bge-small-en-v1.5 int8, batch {batch}");
        time(&name, &bge, &long, "~200 tokens").await;
        time(&name, &bge, &short, "~20 tokens").await;
    }
    #[cfg(feature = "candle")]
    if m.has_embedder() {
        let mini = m.embedder().unwrap();
        let name = "LocalEmbedder all-MiniLM-L6-v2 candle, batch 32";
        time(name, &mini, &long, "~200 tokens").await;
        time(name, &mini, &short, "~20 tokens").await;
    }
}
