//! `rag_core::eval`'s metrics against pytrec_eval on the same run and
//! judgements (`tests/fixtures/eval_pytrec.json`, made by
//! `tests/fixtures/make_eval_fixture.py`).

use std::collections::BTreeMap;

use rag_core::eval::{Qrels, Run, score_query, score_run};
use serde_json::Value;

#[test]
fn metrics_match_pytrec_eval_per_query_and_on_average() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/eval_pytrec.json"
    );
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let qrels: Qrels = serde_json::from_value(fixture["qrels"].clone()).unwrap();
    let ranked: BTreeMap<String, Vec<String>> =
        serde_json::from_value(fixture["run"].clone()).unwrap();
    let expected = fixture["metrics"].as_object().unwrap();
    assert_eq!(expected.len(), 60);

    let mut sums = BTreeMap::<&str, f64>::new();
    for (q, want) in expected {
        let got = score_query(&ranked[q], &qrels[q]);
        let pairs = [
            ("ndcg_at_10", got.ndcg_at_10),
            ("recall_at_10", got.recall_at_10),
            ("recall_at_100", got.recall_at_100),
            ("mrr_at_10", got.mrr_at_10),
            ("map", got.map),
        ];
        for (name, value) in pairs {
            let w = want[name].as_f64().unwrap();
            assert!(
                (value - w).abs() < 1e-9,
                "{q} {name}: ours {value}, pytrec_eval {w}"
            );
            *sums.entry(name).or_default() += w;
        }
    }
    // The run-level means agree too (every query is judged and relevant).
    let run: Run = ranked
        .iter()
        .map(|(q, docs)| {
            let n = docs.len();
            let scored = docs
                .iter()
                .enumerate()
                .map(|(i, d)| (d.clone(), (n - i) as f64));
            (q.clone(), scored.collect())
        })
        .collect();
    let (mean, per_query) = score_run(&run, &qrels);
    assert_eq!(mean.queries, 60);
    assert_eq!(per_query.len(), 60);
    assert!((mean.ndcg_at_10 - sums["ndcg_at_10"] / 60.0).abs() < 1e-12);
    assert!((mean.map - sums["map"] / 60.0).abs() < 1e-12);
    // The fixture is not degenerate: some queries score 0, some 1, most between.
    let ndcgs: Vec<f64> = per_query.values().map(|m| m.ndcg_at_10).collect();
    assert!(ndcgs.contains(&0.0) && ndcgs.iter().any(|v| *v > 0.0 && *v < 1.0));
}
