//! The conformance suite of [`Embedder`].
//!
//! Every embedder, and every wrapper around one, must pass [`run_all`]. The
//! tests compare vectors by cosine similarity (at least [`SAME_VECTOR`]), not
//! bit for bit, so that models running on a GPU or behind an API, whose
//! floating point results vary slightly between batches, pass too.
//!
//! ```
//! use rag_core::testkit::embedder;
//! use rag_core::HashEmbedder;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! embedder::run_all(&HashEmbedder::new(64)).await;
//! # });
//! ```

use crate::error::Error;
use crate::traits::Embedder;

/// Cosine similarity at or above which two vectors count as the same
/// embedding.
pub const SAME_VECTOR: f32 = 0.999;

/// Runs every test of the suite; panics naming the first broken rule.
pub async fn run_all(e: &dyn Embedder) {
    model_id_and_dimensions(e).await;
    one_vector_per_text(e).await;
    input_order_is_preserved(e).await;
    deterministic(e).await;
    empty_batch_is_empty(e).await;
    rejects_empty_text(e).await;
    unicode_text(e).await;
    embed_query_returns_one_vector(e).await;
    batch_of_100(e).await;
}

/// `model_id()` is non-empty and `dimensions()` positive.
pub async fn model_id_and_dimensions(e: &dyn Embedder) {
    assert!(
        !e.model_id().trim().is_empty(),
        "embedder rule: model_id() must not be empty (it is part of every cache key)"
    );
    assert!(
        e.dimensions() > 0,
        "embedder rule: dimensions() must be positive, {} reports 0",
        e.model_id()
    );
}

/// One vector per input text, each `dimensions()` long, all values finite.
pub async fn one_vector_per_text(e: &dyn Embedder) {
    let texts = strings(&[
        "Rotate API keys every month.",
        "The cafeteria serves lunch at noon.",
        "Backups are kept for thirty days.",
    ]);
    let vectors = embed_ok(e, &texts, "one_vector_per_text").await;
    check_shape(e, &texts, &vectors, "one_vector_per_text");
}

/// Embedding `[a, b, c]` gives, at each index, the embedding of that text
/// alone: the output is in input order.
pub async fn input_order_is_preserved(e: &dyn Embedder) {
    let texts = strings(&[
        "Kubernetes pods restart when their liveness probe fails.",
        "Sourdough bread needs a long, cold fermentation.",
        "The quarterly budget review is due on Friday.",
    ]);
    let batch = embed_ok(e, &texts, "input_order_is_preserved").await;
    check_shape(e, &texts, &batch, "input_order_is_preserved");
    for (i, text) in texts.iter().enumerate() {
        let alone = embed_ok(e, std::slice::from_ref(text), "input_order_is_preserved").await;
        let sim = cosine(&batch[i], &alone[0]);
        assert!(
            sim >= SAME_VECTOR,
            "embedder rule: output must be in input order — vector {i} of a batch differs from \
             embedding text {i} alone (cosine {sim:.4} < {SAME_VECTOR}); model {}",
            e.model_id()
        );
    }
}

/// The same text embedded twice gives the same vector.
pub async fn deterministic(e: &dyn Embedder) {
    let texts = strings(&["Deterministic embeddings make caches and tests reliable."]);
    let first = embed_ok(e, &texts, "deterministic").await;
    let second = embed_ok(e, &texts, "deterministic").await;
    check_shape(e, &texts, &first, "deterministic");
    check_shape(e, &texts, &second, "deterministic");
    let sim = cosine(&first[0], &second[0]);
    assert!(
        sim >= SAME_VECTOR,
        "embedder rule: the same text must give the same vector (cosine {sim:.4} < \
         {SAME_VECTOR}); model {}",
        e.model_id()
    );
}

/// An empty slice gives an empty result, not an error or a request.
pub async fn empty_batch_is_empty(e: &dyn Embedder) {
    match e.embed(&[]).await {
        Ok(v) => assert!(
            v.is_empty(),
            "embedder rule: embedding no texts must return no vectors, got {}",
            v.len()
        ),
        Err(err) => panic!("embedder rule: embedding no texts must be Ok(vec![]), got {err}"),
    }
}

/// An empty or whitespace-only text is `Error::InvalidInput`, alone or in a
/// batch, passage or query.
pub async fn rejects_empty_text(e: &dyn Embedder) {
    let cases: [(&str, Vec<String>); 4] = [
        ("an empty text", strings(&[""])),
        ("a whitespace-only text", strings(&[" \n\t "])),
        (
            "a batch with one empty text",
            strings(&["fine", "", "also fine"]),
        ),
        (
            "a batch with one whitespace-only text",
            strings(&["fine", "   "]),
        ),
    ];
    for (what, texts) in cases {
        match e.embed(&texts).await {
            Err(Error::InvalidInput { .. }) => {}
            Err(other) => panic!(
                "embedder rule: {what} must be rejected with Error::InvalidInput, got {other:?}"
            ),
            Ok(_) => panic!("embedder rule: {what} must be rejected with Error::InvalidInput"),
        }
    }
    for query in ["", "  \n"] {
        match e.embed_query(query).await {
            Err(Error::InvalidInput { .. }) => {}
            Err(other) => panic!(
                "embedder rule: an empty query {query:?} must be rejected with \
                 Error::InvalidInput, got {other:?}"
            ),
            Ok(_) => panic!(
                "embedder rule: an empty query {query:?} must be rejected with Error::InvalidInput"
            ),
        }
    }
}

/// CJK, emoji, accented and mixed texts embed to finite, non-zero vectors
/// (a zero vector has no direction, so cosine similarity to it is
/// undefined).
pub async fn unicode_text(e: &dyn Embedder) {
    let texts = strings(&[
        "東京は日本の首都です。",
        "🎉🚀✨",
        "Café crème brûlée, naïve façade, Ångström, Øresund.",
        "Смешанный текст: 中文, العربية, and English 👍",
        "!!! ??? ...",
    ]);
    let vectors = embed_ok(e, &texts, "unicode_text").await;
    check_shape(e, &texts, &vectors, "unicode_text");
    for (text, v) in texts.iter().zip(&vectors) {
        assert!(
            norm(v) > 0.0,
            "embedder rule: a non-empty text must get a non-zero vector, {text:?} got all zeros"
        );
    }
}

/// `embed_query` returns one `dimensions()`-long finite, non-zero vector.
pub async fn embed_query_returns_one_vector(e: &dyn Embedder) {
    let v = match e.embed_query("How often are API keys rotated?").await {
        Ok(v) => v,
        Err(err) => panic!("embedder rule: embed_query on a plain question failed: {err}"),
    };
    assert_eq!(
        v.len(),
        e.dimensions(),
        "embedder rule: embed_query must return a vector of dimensions() = {} values",
        e.dimensions()
    );
    assert!(
        v.iter().all(|x| x.is_finite()),
        "embedder rule: embed_query returned a non-finite value"
    );
    assert!(
        norm(&v) > 0.0,
        "embedder rule: embed_query returned a zero vector"
    );
}

/// A batch of 100 texts gives 100 vectors in order (spot-checked against
/// embedding single texts, which catches batches split and reassembled out of
/// order).
pub async fn batch_of_100(e: &dyn Embedder) {
    let texts: Vec<String> = (0..100)
        .map(|i| {
            format!(
                "Document number {i} talks about topic {} and item {}.",
                i * 7 % 13,
                i * i
            )
        })
        .collect();
    let vectors = embed_ok(e, &texts, "batch_of_100").await;
    check_shape(e, &texts, &vectors, "batch_of_100");
    for i in [0, 37, 99] {
        let alone = embed_ok(e, std::slice::from_ref(&texts[i]), "batch_of_100").await;
        let sim = cosine(&vectors[i], &alone[0]);
        assert!(
            sim >= SAME_VECTOR,
            "embedder rule: output must be in input order — vector {i} of a batch of 100 \
             differs from embedding text {i} alone (cosine {sim:.4} < {SAME_VECTOR})"
        );
    }
}

/// Cosine similarity; 0 when either vector is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 || a.len() != b.len() {
        return 0.0;
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (na * nb)
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| (*t).to_owned()).collect()
}

async fn embed_ok(e: &dyn Embedder, texts: &[String], test: &str) -> Vec<Vec<f32>> {
    match e.embed(texts).await {
        Ok(v) => v,
        Err(err) => panic!(
            "embedder rule ({test}): embedding {} valid texts must succeed, got {err}",
            texts.len()
        ),
    }
}

fn check_shape(e: &dyn Embedder, texts: &[String], vectors: &[Vec<f32>], test: &str) {
    assert_eq!(
        vectors.len(),
        texts.len(),
        "embedder rule ({test}): one vector per input text — {} texts gave {} vectors",
        texts.len(),
        vectors.len()
    );
    for (i, v) in vectors.iter().enumerate() {
        assert_eq!(
            v.len(),
            e.dimensions(),
            "embedder rule ({test}): every vector must have dimensions() = {} values, vector {i} \
             has {}",
            e.dimensions(),
            v.len()
        );
        assert!(
            v.iter().all(|x| x.is_finite()),
            "embedder rule ({test}): every value must be finite, vector {i} has NaN or infinity"
        );
    }
}
