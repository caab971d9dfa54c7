//! Shared helpers of the model tests.
#![allow(dead_code, unreachable_pub)]

use rag_core::testkit::under_ci;
use rag_local::{LocalModels, default_models_dir};

/// The models directory when it holds what `test` needs (`has`); otherwise
/// a failure under CI (a missing model is never a silent pass) and a
/// NOT RUN notice elsewhere.
pub fn models(test: &str, what: &str, has: fn(&LocalModels) -> bool) -> Option<LocalModels> {
    let dir = default_models_dir();
    let found = LocalModels::discover(&dir).ok().filter(has);
    if found.is_none() {
        let msg = format!(
            "the {what} is missing from {} (run scripts/fetch-models, or set RAG_MODELS_DIR)",
            dir.display()
        );
        if under_ci() {
            panic!("{test} must run under CI: {msg}");
        }
        // Straight to stderr, past the test harness's output capture, so the
        // notice shows in a normal `cargo test` run.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "NOT RUN: {test} (run scripts/fetch-models): {msg}"
        );
    }
    found
}

/// A fixture file of `tests/fixtures`.
pub fn fixture(name: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}
