//! LocalEmbedder against sentence-transformers' own vectors, and the
//! rag-core embedder conformance suite. Needs `scripts/fetch-models`.
#![cfg(feature = "candle")]

mod common;

use common::{cosine, fixture, models};
use rag_core::{Embedder, Error, testkit};
use rag_local::{LocalEmbedder, LocalEmbedderConfig, LocalModels, Pooling};

fn embedder(test: &str) -> Option<LocalEmbedder> {
    let m = models(
        test,
        "embedding model (all-MiniLM-L6-v2)",
        LocalModels::has_embedder,
    )?;
    Some(m.embedder().expect("the embedding model loads"))
}

#[tokio::test]
async fn matches_sentence_transformers() {
    let Some(e) = embedder("matches_sentence_transformers") else {
        return;
    };
    let fx = fixture("embeddings.json");
    assert_eq!(
        e.max_seq_length() as u64,
        fx["max_seq_length"].as_u64().unwrap()
    );
    let cases = fx["cases"].as_array().unwrap();
    let texts: Vec<String> = cases
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_owned())
        .collect();
    let vectors = e.embed(&texts).await.unwrap();
    let mut min = f32::MAX;
    for (case, v) in cases.iter().zip(&vectors) {
        let want: Vec<f32> = case["vector"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let sim = cosine(v, &want);
        min = min.min(sim);
        assert!(
            sim >= 0.999,
            "cosine {sim} < 0.999 against sentence-transformers for {:?}",
            case["text"]
                .as_str()
                .unwrap()
                .chars()
                .take(40)
                .collect::<String>()
        );
    }
    eprintln!(
        "min cosine vs sentence-transformers over {} sentences: {min:.7} (1 - min = {:.1e})",
        cases.len(),
        1.0 - min
    );
    // One at a time gives the same vectors as the batch (padding is masked).
    for (t, v) in texts.iter().zip(&vectors) {
        let alone = e.embed(std::slice::from_ref(t)).await.unwrap();
        assert!(cosine(&alone[0], v) > 0.99999);
    }
}

#[tokio::test]
async fn settings_are_read_from_the_model() {
    let Some(e) = embedder("settings_are_read_from_the_model") else {
        return;
    };
    assert_eq!(e.model_id(), "all-MiniLM-L6-v2");
    assert_eq!(e.dimensions(), 384);
    assert_eq!(e.pooling(), Pooling::Mean);
    assert!(e.normalize());
    assert_eq!(e.max_seq_length(), 256);
    let v = e.embed_query("How often are keys rotated?").await.unwrap();
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "normalised: {norm}");
}

#[tokio::test]
async fn explicit_settings_override_the_model() {
    let Some(m) = models(
        "explicit_settings_override_the_model",
        "embedding model (all-MiniLM-L6-v2)",
        LocalModels::has_embedder,
    ) else {
        return;
    };
    let e = LocalEmbedder::load(
        LocalEmbedderConfig::new(m.embedder_dir())
            .with_pooling(Pooling::Cls)
            .with_normalize(false)
            .with_max_seq_length(16)
            .with_batch_size(2)
            .with_query_prefix("query: ")
            .with_model_id("mini-cls"),
    )
    .unwrap();
    assert_eq!(
        (e.pooling(), e.normalize(), e.max_seq_length()),
        (Pooling::Cls, false, 16)
    );
    assert_eq!(e.model_id(), "mini-cls");
    let v = e
        .embed(&["Rotate the API keys every month.".to_owned()])
        .await
        .unwrap();
    let norm: f32 = v[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() > 1e-3, "not normalised: {norm}");
    // Truncation to 16 tokens: two texts sharing their first 30 words embed alike.
    let head = "word ".repeat(30);
    let a = e.embed(&[format!("{head} apples")]).await.unwrap();
    let b = e
        .embed(&[format!("{head} a completely different ending")])
        .await
        .unwrap();
    assert!(cosine(&a[0], &b[0]) > 0.99999);
    // The query prefix changes the query's vector, not the passage's.
    let q = e.embed_query("rotate keys").await.unwrap();
    let p = e.embed(&["rotate keys".to_owned()]).await.unwrap();
    assert!(cosine(&q, &p[0]) < 0.9999);
}

#[tokio::test]
async fn semantic_neighbours() {
    let Some(e) = embedder("semantic_neighbours") else {
        return;
    };
    let q = e
        .embed_query("How do I change my car's tyre?")
        .await
        .unwrap();
    let docs = e
        .embed(&[
            "Replacing a flat tire on an automobile: loosen the lug nuts, jack it up.".to_owned(),
            "The quarterly budget review is due on Friday.".to_owned(),
        ])
        .await
        .unwrap();
    assert!(cosine(&q, &docs[0]) > cosine(&q, &docs[1]) + 0.2);
}

#[tokio::test]
async fn conformance() {
    let Some(e) = embedder("embedder conformance") else {
        return;
    };
    testkit::embedder::run_all(&e).await;
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
}
