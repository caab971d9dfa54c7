//! `rag_core::eval::answers` against the official SQuAD v1.1 evaluation
//! logic: `fixtures/squad_v11_cases.json` was written by
//! `fixtures/squad_v11_metrics.py`, which carries the official script's
//! functions verbatim.

use rag_core::eval::answers::{exact_match, normalize_answer, token_f1};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    prediction: String,
    answers: Vec<String>,
    normalized: String,
    exact_match: bool,
    f1: f64,
}

#[test]
fn exact_match_and_f1_equal_the_official_squad_v1_1_script() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/squad_v11_cases.json"
    );
    let cases: Vec<Case> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(cases.len() >= 20);
    for c in &cases {
        assert_eq!(
            normalize_answer(&c.prediction),
            c.normalized,
            "{:?}",
            c.prediction
        );
        assert_eq!(
            exact_match(&c.prediction, &c.answers),
            c.exact_match,
            "{:?}",
            c.prediction
        );
        let f1 = token_f1(&c.prediction, &c.answers);
        assert!(
            (f1 - c.f1).abs() < 1e-12,
            "{:?}: {f1} against {}",
            c.prediction,
            c.f1
        );
    }
}
