//! Retrieval evaluation on BEIR-format datasets: load a dataset, ingest its
//! corpus through any [`Rag`] pipeline, run every judged query, and score
//! the rankings with nDCG@10, Recall@10/@100, MRR@10 and MAP.
//!
//! The metrics follow `trec_eval` (and so `pytrec_eval`, which BEIR uses):
//! graded relevance with linear gain for nDCG (`ndcg_cut_10`), relevance
//! above 0 counts as relevant for the others, MAP over the whole ranking
//! (`map`), reciprocal rank of the first relevant document in the top 10.
//! A document retrieved twice (two chunks of one document) counts once, at
//! its best rank.
//!
//! Answer-level evaluation (gold answers, citations, groundedness, latency)
//! is in [`answers`].
//!
//! ```no_run
//! # async fn run(rag: rag_core::Rag) -> rag_core::Result<()> {
//! use rag_core::eval::{BeirDataset, EvalOptions, evaluate_pipeline};
//!
//! let data = BeirDataset::load("eval/scifact-subset", "test")?;
//! let report = evaluate_pipeline(&rag, &data, &EvalOptions::default()).await?;
//! println!("nDCG@10 {:.3} over {} queries", report.metrics.ndcg_at_10, report.metrics.queries);
//! # Ok(()) }
//! ```

pub mod answers;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pipeline::{Ask, Rag};
use crate::search::{Fusion, ScoredChunk, SearchMode};
use crate::types::{Document, DocumentId, Namespace};

/// Relevance judgements: query id → document id → grade (above 0 is
/// relevant).
pub type Qrels = BTreeMap<String, BTreeMap<String, i32>>;

/// A ranking per query: query id → (document id, score), best first.
pub type Run = BTreeMap<String, Vec<(String, f64)>>;

/// A document of a BEIR corpus.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeirDoc {
    /// Its id (`_id`).
    #[serde(rename = "_id")]
    pub id: String,
    /// Its title; often empty.
    #[serde(default)]
    pub title: String,
    /// Its text.
    pub text: String,
}

/// A query of a BEIR dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeirQuery {
    /// Its id (`_id`).
    #[serde(rename = "_id")]
    pub id: String,
    /// Its text.
    pub text: String,
}

/// A BEIR-format dataset (`corpus.jsonl`, `queries.jsonl`,
/// `qrels/<split>.tsv`), with the queries of one split.
#[derive(Clone, Debug)]
pub struct BeirDataset {
    /// The directory it was read from.
    pub dir: PathBuf,
    /// The split (`train`, `dev`, `test`).
    pub split: String,
    /// The corpus.
    pub corpus: Vec<BeirDoc>,
    /// The judged queries of the split, in file order.
    pub queries: Vec<BeirQuery>,
    /// The split's judgements.
    pub qrels: Qrels,
}

fn open(path: &Path) -> Result<std::io::BufReader<std::fs::File>> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::invalid_input(format!("cannot read {}: {e}", path.display())))?;
    Ok(std::io::BufReader::new(file))
}

fn jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for (i, line) in open(path)?.lines().enumerate() {
        let line =
            line.map_err(|e| Error::invalid_input(format!("{}:{}: {e}", path.display(), i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line)
                .map_err(|e| Error::invalid_input(format!("{}:{}: {e}", path.display(), i + 1)))?,
        );
    }
    Ok(out)
}

/// Reads a qrels file: `query-id <TAB> corpus-id <TAB> score`, with an
/// optional header line (BEIR's `query-id corpus-id score`); TREC's
/// four-column form (`qid 0 docid grade`) is accepted too.
pub fn read_qrels(path: &Path) -> Result<Qrels> {
    let mut qrels = Qrels::new();
    for (i, line) in open(path)?.lines().enumerate() {
        let bad =
            |what: String| Error::invalid_input(format!("{}:{}: {what}", path.display(), i + 1));
        let line = line.map_err(|e| bad(e.to_string()))?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() || (i == 0 && fields.first() == Some(&"query-id")) {
            continue;
        }
        let (q, d, g) = match fields.as_slice() {
            [q, d, g] => (q, d, g),
            [q, _, d, g] => (q, d, g),
            _ => {
                return Err(bad(format!(
                    "expected 3 or 4 fields, found {}",
                    fields.len()
                )));
            }
        };
        let grade: i32 = g
            .parse()
            .map_err(|_| bad(format!("grade {g:?} is not an integer")))?;
        qrels
            .entry((*q).to_owned())
            .or_default()
            .insert((*d).to_owned(), grade);
    }
    Ok(qrels)
}

impl BeirDataset {
    /// Reads `dir/corpus.jsonl`, `dir/queries.jsonl` and
    /// `dir/qrels/<split>.tsv`. Keeps the queries that have judgements in
    /// the split. `InvalidInput` naming the file and line for anything
    /// malformed, and for judgements of a query that is not in
    /// `queries.jsonl`.
    pub fn load(dir: impl AsRef<Path>, split: &str) -> Result<Self> {
        let dir = dir.as_ref();
        let corpus: Vec<BeirDoc> = jsonl(&dir.join("corpus.jsonl"))?;
        let all: Vec<BeirQuery> = jsonl(&dir.join("queries.jsonl"))?;
        let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
        let qrels = read_qrels(&qrels_path)?;
        let known: HashSet<&str> = all.iter().map(|q| q.id.as_str()).collect();
        if let Some(q) = qrels.keys().find(|q| !known.contains(q.as_str())) {
            return Err(Error::invalid_input(format!(
                "{}: query {q:?} has judgements but is not in queries.jsonl",
                qrels_path.display()
            )));
        }
        let queries = all
            .into_iter()
            .filter(|q| qrels.contains_key(&q.id))
            .collect();
        Ok(Self {
            dir: dir.to_owned(),
            split: split.to_owned(),
            corpus,
            queries,
            qrels,
        })
    }

    /// The corpus as documents: id = the BEIR id, source = `beir:<id>`,
    /// text = title and text separated by a blank line (just the text when
    /// the title is empty). `InvalidInput` for an id that is not a valid
    /// [`DocumentId`].
    pub fn documents(&self) -> Result<Vec<Document>> {
        corpus_documents(&self.corpus)
    }
}

/// A BEIR corpus as documents: id = the BEIR id, source = `beir:<id>`, text
/// = title and text separated by a blank line (just the text when the title
/// is empty).
fn corpus_documents(corpus: &[BeirDoc]) -> Result<Vec<Document>> {
    corpus
        .iter()
        .map(|d| {
            let text = if d.title.trim().is_empty() {
                d.text.clone()
            } else {
                format!("{}\n\n{}", d.title, d.text)
            };
            let id = DocumentId::new(d.id.as_str())
                .map_err(|e| Error::invalid_input(format!("corpus document {:?}: {e}", d.id)))?;
            Ok(Document::new(format!("beir:{}", d.id), text).with_id(id))
        })
        .collect()
}

/// The metrics of one query, or their means over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueryMetrics {
    /// nDCG@10 (linear gain, `trec_eval`'s `ndcg_cut_10`).
    pub ndcg_at_10: f64,
    /// Relevant documents in the top 10 / all relevant.
    pub recall_at_10: f64,
    /// Relevant documents in the top 100 / all relevant.
    pub recall_at_100: f64,
    /// 1 / rank of the first relevant document, 0 past rank 10.
    pub mrr_at_10: f64,
    /// Average precision over the whole ranking.
    pub map: f64,
}

/// Mean metrics over the judged queries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Queries averaged over.
    pub queries: usize,
    /// Mean nDCG@10.
    pub ndcg_at_10: f64,
    /// Mean Recall@10.
    pub recall_at_10: f64,
    /// Mean Recall@100.
    pub recall_at_100: f64,
    /// Mean MRR@10.
    pub mrr_at_10: f64,
    /// Mean average precision.
    pub map: f64,
}

/// Scores one ranking (document ids, best first; repeats after the first
/// are ignored) against one query's judgements.
pub fn score_query(ranked: &[String], judged: &BTreeMap<String, i32>) -> QueryMetrics {
    let mut seen = HashSet::with_capacity(ranked.len());
    let ranked: Vec<&str> = ranked
        .iter()
        .map(String::as_str)
        .filter(|d| seen.insert(*d))
        .collect();
    let grade = |d: &str| judged.get(d).copied().unwrap_or(0).max(0);
    let relevant = judged.values().filter(|g| **g > 0).count();
    if relevant == 0 {
        return QueryMetrics::default();
    }
    let discount = |i: usize| 1.0 / ((i + 2) as f64).log2();
    let dcg: f64 = ranked
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, d)| f64::from(grade(d)) * discount(i))
        .sum();
    let mut ideal: Vec<i32> = judged.values().copied().filter(|g| *g > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(10)
        .enumerate()
        .map(|(i, g)| f64::from(*g) * discount(i))
        .sum();
    let hits_in = |k: usize| ranked.iter().take(k).filter(|d| grade(d) > 0).count();
    let mrr_at_10 = ranked
        .iter()
        .take(10)
        .position(|d| grade(d) > 0)
        .map_or(0.0, |i| 1.0 / (i + 1) as f64);
    let mut hits = 0usize;
    let mut precision_sum = 0.0;
    for (i, d) in ranked.iter().enumerate() {
        if grade(d) > 0 {
            hits += 1;
            precision_sum += hits as f64 / (i + 1) as f64;
        }
    }
    QueryMetrics {
        ndcg_at_10: if idcg > 0.0 { dcg / idcg } else { 0.0 },
        recall_at_10: hits_in(10) as f64 / relevant as f64,
        recall_at_100: hits_in(100) as f64 / relevant as f64,
        mrr_at_10,
        map: precision_sum / relevant as f64,
    }
}

/// Scores a run: every judged query (one missing from the run scores 0),
/// per query and averaged.
pub fn score_run(run: &Run, qrels: &Qrels) -> (Metrics, BTreeMap<String, QueryMetrics>) {
    let mut per_query = BTreeMap::new();
    let mut sum = Metrics::default();
    for (q, judged) in qrels {
        if !judged.values().any(|g| *g > 0) {
            continue;
        }
        let ranked: Vec<String> = run
            .get(q)
            .map(|r| r.iter().map(|(d, _)| d.clone()).collect())
            .unwrap_or_default();
        let m = score_query(&ranked, judged);
        sum.queries += 1;
        sum.ndcg_at_10 += m.ndcg_at_10;
        sum.recall_at_10 += m.recall_at_10;
        sum.recall_at_100 += m.recall_at_100;
        sum.mrr_at_10 += m.mrr_at_10;
        sum.map += m.map;
        per_query.insert(q.clone(), m);
    }
    let n = sum.queries.max(1) as f64;
    let mean = Metrics {
        queries: sum.queries,
        ndcg_at_10: sum.ndcg_at_10 / n,
        recall_at_10: sum.recall_at_10 / n,
        recall_at_100: sum.recall_at_100 / n,
        mrr_at_10: sum.mrr_at_10 / n,
        map: sum.map / n,
    };
    (mean, per_query)
}

/// Writes `run` in TREC format (`qid Q0 docid rank score tag`), the input
/// of `trec_eval` and `pytrec_eval`. Scores are written as
/// `count - rank` so that tools which re-sort by score keep this order.
pub fn write_trec_run(run: &Run, tag: &str, out: &mut impl Write) -> std::io::Result<()> {
    for (q, ranked) in run {
        let n = ranked.len();
        for (i, (d, _)) in ranked.iter().enumerate() {
            writeln!(out, "{q} Q0 {d} {} {} {tag}", i + 1, n - i)?;
        }
    }
    Ok(())
}

/// How [`evaluate_pipeline`] runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EvalOptions {
    /// The namespace the corpus is ingested into (and searched); `eval`.
    pub namespace: Namespace,
    /// Documents ranked per query (chunks retrieved per search, before
    /// merging chunks of one document); 100.
    pub depth: usize,
    /// Dense, keyword or hybrid; hybrid.
    pub mode: SearchMode,
    /// How hybrid lists are fused; the pipeline's default ([`Fusion::default`]).
    pub fusion: Fusion,
    /// Candidates each side of a hybrid search contributes to fusion;
    /// `None` for the stores' rule ([`crate::search::hybrid_pool`]).
    pub hybrid_pool: Option<usize>,
    /// Candidates the pipeline's reranker (when it has one) reorders, from
    /// the top of the retrieved list: 20, what [`Ask`] reranks by default.
    /// 0 turns reranking off. The rest keep their retrieval order.
    pub rerank_depth: usize,
    /// How much the reranker decides ([`Ask::rerank_weight`]); the
    /// pipeline's default.
    pub rerank_weight: f32,
    /// Queries in flight at once; 4.
    pub concurrency: usize,
    /// Whether to ingest the corpus first (idempotent: unchanged documents
    /// are skipped); true.
    pub ingest: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            namespace: Namespace::new("eval").expect("a valid namespace"),
            depth: 100,
            mode: SearchMode::Hybrid,
            fusion: Fusion::default(),
            hybrid_pool: None,
            rerank_depth: Ask::new("").top_k,
            rerank_weight: Ask::new("").rerank_weight,
            concurrency: 4,
            ingest: true,
        }
    }
}

impl EvalOptions {
    /// Sets the namespace.
    pub fn with_namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }
    /// Sets the documents ranked per query.
    pub fn with_depth(mut self, depth: usize) -> Self {
        self.depth = depth;
        self
    }
    /// Sets the retrieval mode.
    pub fn with_mode(mut self, mode: SearchMode) -> Self {
        self.mode = mode;
        self
    }
    /// Sets the fusion of hybrid lists.
    pub fn with_fusion(mut self, fusion: Fusion) -> Self {
        self.fusion = fusion;
        self
    }
    /// Sets the candidates each side of a hybrid search contributes.
    pub fn with_hybrid_pool(mut self, n: usize) -> Self {
        self.hybrid_pool = Some(n);
        self
    }
    /// Sets how many candidates the reranker reorders (0: none).
    pub fn with_rerank_depth(mut self, n: usize) -> Self {
        self.rerank_depth = n;
        self
    }
    /// Sets how much the reranker decides.
    pub fn with_rerank_weight(mut self, w: f32) -> Self {
        self.rerank_weight = w;
        self
    }
    /// Sets the queries in flight at once.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// Sets whether the corpus is ingested first.
    pub fn with_ingest(mut self, on: bool) -> Self {
        self.ingest = on;
        self
    }
}

/// One query's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueryResult {
    /// The query id.
    pub query_id: String,
    /// Its metrics.
    pub metrics: QueryMetrics,
    /// The relevant documents (grade above 0).
    pub relevant: Vec<String>,
    /// The ranking: document ids, best first, with their final scores.
    pub ranked: Vec<(String, f64)>,
}

/// What [`evaluate_pipeline`] measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalReport {
    /// The dataset directory.
    pub dataset: PathBuf,
    /// The split.
    pub split: String,
    /// Mean metrics.
    pub metrics: Metrics,
    /// Per query, in query-id order.
    pub per_query: Vec<QueryResult>,
    /// Documents newly written by ingestion (0 when it found them stored).
    pub ingested: usize,
    /// Ingestion time.
    pub ingest_time: Duration,
    /// Wall time of all the queries.
    pub query_time: Duration,
    /// Whether a reranker reordered the top of each ranking.
    pub reranked: bool,
}

impl EvalReport {
    /// The run (rankings per query), for [`write_trec_run`].
    pub fn run(&self) -> Run {
        self.per_query
            .iter()
            .map(|r| (r.query_id.clone(), r.ranked.clone()))
            .collect()
    }

    /// Writes one JSON object per query (a [`QueryResult`]) per line.
    pub fn write_per_query(&self, out: &mut impl Write) -> std::io::Result<()> {
        for r in &self.per_query {
            serde_json::to_writer(&mut *out, r)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// Document ids in the order of their best chunk, with that chunk's score.
fn documents_of(chunks: &[ScoredChunk]) -> Vec<(String, f64)> {
    let mut seen = HashSet::new();
    chunks
        .iter()
        .filter(|c| seen.insert(c.chunk.document_id.as_str()))
        .map(|c| (c.chunk.document_id.as_str().to_owned(), f64::from(c.score)))
        .collect()
}

/// Ingests an evaluation corpus into `namespace`: (documents newly written,
/// time taken). `InvalidInput` naming the first failure when any document
/// fails.
async fn ingest_corpus(
    rag: &Rag,
    documents: Vec<Document>,
    namespace: &Namespace,
) -> Result<(usize, Duration)> {
    let total = documents.len();
    let started = Instant::now();
    let report = rag
        .ingest_stream(
            futures::stream::iter(documents),
            crate::pipeline::IngestOptions::new(namespace.clone()),
        )
        .await;
    if let Some(f) = report.failed.first() {
        return Err(Error::invalid_input(format!(
            "{} of {total} documents failed to ingest; the first, {}: {}",
            report.failed.len(),
            f.source,
            f.error
        )));
    }
    Ok((
        report.added.len() + report.replaced.len(),
        started.elapsed(),
    ))
}

/// Ingests the corpus of `data` through `rag` (unless told not to), runs
/// every judged query (retrieval and reranking as the pipeline does them,
/// no generation), and scores the rankings.
///
/// Errors: `InvalidInput` when a document fails to ingest (the report's
/// first failure) or for bad options; any backend error of a search.
pub async fn evaluate_pipeline(
    rag: &Rag,
    data: &BeirDataset,
    options: &EvalOptions,
) -> Result<EvalReport> {
    use futures::{StreamExt, TryStreamExt};

    if options.depth == 0 || options.concurrency == 0 {
        return Err(Error::invalid_input(
            "EvalOptions: depth and concurrency must be positive",
        ));
    }
    let (ingested, ingest_time) = if options.ingest {
        ingest_corpus(rag, data.documents()?, &options.namespace).await?
    } else {
        (0, Duration::ZERO)
    };
    let reranked = rag.reranker().is_some() && options.rerank_depth > 0;
    let started = Instant::now();
    let results: Vec<(String, Vec<(String, f64)>)> = futures::stream::iter(&data.queries)
        .map(|q| async move {
            let mut ask = Ask::new(q.text.as_str())
                .namespace(options.namespace.clone())
                .top_k(options.depth)
                .mode(options.mode)
                .fusion(options.fusion)
                .rerank(false)
                .rerank_top_n(options.depth)
                .condense(false);
            ask.hybrid_pool = options.hybrid_pool;
            let mut chunks = rag.search(&ask).await?;
            let n = options.rerank_depth.min(chunks.len());
            if reranked && n > 0 {
                let rest = chunks.split_off(n);
                let rerank = ask
                    .rerank(true)
                    .rerank_top_n(n)
                    .rerank_weight(options.rerank_weight);
                let mut top = rag.rerank(&q.text, chunks, &rerank).await?;
                top.extend(rest);
                chunks = top;
            }
            Ok::<_, Error>((q.id.clone(), documents_of(&chunks)))
        })
        .buffered(options.concurrency)
        .try_collect()
        .await?;
    let query_time = started.elapsed();
    let run: Run = results.into_iter().collect();
    let (metrics, per_query) = score_run(&run, &data.qrels);
    let per_query = per_query
        .into_iter()
        .map(|(query_id, metrics)| QueryResult {
            relevant: data.qrels[&query_id]
                .iter()
                .filter(|(_, g)| **g > 0)
                .map(|(d, _)| d.clone())
                .collect(),
            ranked: run.get(&query_id).cloned().unwrap_or_default(),
            query_id,
            metrics,
        })
        .collect();
    Ok(EvalReport {
        dataset: data.dir.clone(),
        split: data.split.clone(),
        metrics,
        per_query,
        ingested,
        ingest_time,
        query_time,
        reranked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judged(pairs: &[(&str, i32)]) -> BTreeMap<String, i32> {
        pairs.iter().map(|(d, g)| ((*d).to_owned(), *g)).collect()
    }

    fn ranked(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_binary_case() {
        // Relevant: a, b, c. Ranking: x a y b (c not retrieved).
        let m = score_query(
            &ranked(&["x", "a", "y", "b"]),
            &judged(&[("a", 1), ("b", 1), ("c", 1)]),
        );
        // DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3) + 1/log2(4).
        let dcg = 1.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let idcg = 1.0 + 1.0 / 3f64.log2() + 0.5;
        assert!(close(m.ndcg_at_10, dcg / idcg), "{m:?}");
        assert!(close(m.recall_at_10, 2.0 / 3.0));
        assert!(close(m.recall_at_100, 2.0 / 3.0));
        assert!(close(m.mrr_at_10, 0.5));
        // AP = (1/2 + 2/4) / 3.
        assert!(close(m.map, (0.5 + 0.5) / 3.0));
    }

    #[test]
    fn graded_gain_is_linear_and_non_positive_grades_are_irrelevant() {
        // Grades: a 2, b 1, n 0, z -1. Ranking b a n z.
        let m = score_query(
            &ranked(&["b", "a", "n", "z"]),
            &judged(&[("a", 2), ("b", 1), ("n", 0), ("z", -1)]),
        );
        let dcg = 1.0 + 2.0 / 3f64.log2();
        let idcg = 2.0 + 1.0 / 3f64.log2();
        assert!(close(m.ndcg_at_10, dcg / idcg), "{m:?}");
        assert!(close(m.recall_at_10, 1.0));
        assert!(close(m.mrr_at_10, 1.0));
        assert!(close(m.map, 1.0));
    }

    #[test]
    fn cut_offs_repeats_and_empty_rankings() {
        // The only relevant document at rank 11: outside nDCG@10, MRR@10
        // and Recall@10, inside Recall@100 and MAP. The repeated "d0"
        // counts once, so "r" is at rank 11, not 12.
        let mut ids: Vec<String> = (0..10).map(|i| format!("d{i}")).collect();
        ids.insert(3, "d0".into());
        ids.push("r".into());
        let m = score_query(&ids, &judged(&[("r", 1)]));
        assert_eq!((m.ndcg_at_10, m.recall_at_10, m.mrr_at_10), (0.0, 0.0, 0.0));
        assert!(close(m.recall_at_100, 1.0));
        assert!(close(m.map, 1.0 / 11.0), "{m:?}");
        assert_eq!(
            score_query(&[], &judged(&[("r", 1)])),
            QueryMetrics::default()
        );
    }

    #[test]
    fn runs_average_over_judged_queries_and_missing_ones_score_zero() {
        let qrels: Qrels = [
            ("q1".to_owned(), judged(&[("a", 1)])),
            ("q2".to_owned(), judged(&[("b", 1)])),
            // No relevant document: not averaged (as trec_eval).
            ("q3".to_owned(), judged(&[("c", 0)])),
        ]
        .into_iter()
        .collect();
        let run: Run = [("q1".to_owned(), vec![("a".to_owned(), 1.0)])]
            .into_iter()
            .collect();
        let (mean, per) = score_run(&run, &qrels);
        assert_eq!(mean.queries, 2);
        assert!(close(mean.ndcg_at_10, 0.5));
        assert_eq!(per["q2"], QueryMetrics::default());
        assert!(!per.contains_key("q3"));
    }

    #[test]
    fn qrels_parse_beir_and_trec_forms_and_name_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("q.tsv");
        std::fs::write(&p, "query-id\tcorpus-id\tscore\n1\td1\t1\n1 0 d2 2\n").unwrap();
        let q = read_qrels(&p).unwrap();
        assert_eq!(q["1"], judged(&[("d1", 1), ("d2", 2)]));
        std::fs::write(&p, "1\td1\t1\n1\td2\tvery\n").unwrap();
        let err = read_qrels(&p).unwrap_err().to_string();
        assert!(err.contains("q.tsv:2") && err.contains("very"), "{err}");
    }

    #[test]
    fn dataset_loads_and_reports_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("qrels")).unwrap();
        std::fs::write(
            d.join("corpus.jsonl"),
            "{\"_id\": \"d1\", \"title\": \"T\", \"text\": \"body one\"}\n{\"_id\": \"d2\", \"text\": \"body two\"}\n",
        )
        .unwrap();
        std::fs::write(
            d.join("queries.jsonl"),
            "{\"_id\": \"1\", \"text\": \"one?\"}\n{\"_id\": \"2\", \"text\": \"two?\"}\n",
        )
        .unwrap();
        std::fs::write(d.join("qrels/test.tsv"), "1\td1\t1\n").unwrap();
        let data = BeirDataset::load(d, "test").unwrap();
        assert_eq!(data.corpus.len(), 2);
        assert_eq!(data.queries.len(), 1, "only judged queries");
        let docs = data.documents().unwrap();
        assert_eq!(docs[0].id().as_str(), "d1");
        assert_eq!(docs[0].text(), "T\n\nbody one");
        assert_eq!(docs[1].text(), "body two");

        std::fs::write(d.join("qrels/test.tsv"), "9\td1\t1\n").unwrap();
        let err = BeirDataset::load(d, "test").unwrap_err().to_string();
        assert!(
            err.contains("\"9\"") && err.contains("queries.jsonl"),
            "{err}"
        );
        std::fs::write(d.join("corpus.jsonl"), "{\"_id\": \"d1\"}\n").unwrap();
        let err = BeirDataset::load(d, "test").unwrap_err().to_string();
        assert!(err.contains("corpus.jsonl:1"), "{err}");
        let err = BeirDataset::load(d, "dev").unwrap_err().to_string();
        assert!(
            err.contains("corpus.jsonl:1") || err.contains("dev.tsv"),
            "{err}"
        );
    }

    /// Ranks candidates by document id, descending: the opposite of what
    /// keyword search gives below.
    #[derive(Debug)]
    struct ById;

    #[async_trait::async_trait]
    impl crate::Reranker for ById {
        async fn rerank(
            &self,
            _query: &str,
            mut candidates: Vec<ScoredChunk>,
            top_n: usize,
        ) -> Result<Vec<ScoredChunk>> {
            candidates.sort_by(|a, b| {
                b.chunk
                    .document_id
                    .as_str()
                    .cmp(a.chunk.document_id.as_str())
            });
            candidates.truncate(top_n);
            for (i, c) in candidates.iter_mut().enumerate() {
                c.rerank_score = Some(100.0 - i as f32);
                c.score = 100.0 - i as f32;
            }
            Ok(candidates)
        }
    }

    fn tiny_dataset() -> (tempfile::TempDir, BeirDataset) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("qrels")).unwrap();
        let corpus = [
            ("a", "Apples are red fruit that grow on trees in orchards."),
            ("b", "Bananas are long yellow fruit from tropical plants."),
            ("c", "Cherries are small red fruit with a hard stone."),
            ("d", "Granite is a hard igneous rock used in buildings."),
        ];
        let lines: Vec<String> = corpus
            .iter()
            .map(|(id, text)| serde_json::json!({"_id": id, "title": "", "text": text}).to_string())
            .collect();
        std::fs::write(d.join("corpus.jsonl"), lines.join("\n")).unwrap();
        std::fs::write(
            d.join("queries.jsonl"),
            "{\"_id\": \"1\", \"text\": \"yellow bananas\"}\n{\"_id\": \"2\", \"text\": \"hard igneous rock\"}\n",
        )
        .unwrap();
        std::fs::write(d.join("qrels/test.tsv"), "1\tb\t1\n2\td\t1\n").unwrap();
        let data = BeirDataset::load(d, "test").unwrap();
        (dir, data)
    }

    #[tokio::test]
    async fn pipeline_eval_ingests_once_ranks_and_reranks_only_the_top() {
        let (_dir, data) = tiny_dataset();
        let rag = Rag::builder()
            .embedder(crate::HashEmbedder::default())
            .build()
            .unwrap();
        let options = EvalOptions::default().with_mode(SearchMode::Keyword);
        let report = evaluate_pipeline(&rag, &data, &options).await.unwrap();
        assert_eq!(report.ingested, 4);
        assert_eq!(report.metrics.queries, 2);
        assert!(
            close(report.metrics.ndcg_at_10, 1.0),
            "{:?}",
            report.metrics
        );
        assert!(!report.reranked);
        assert_eq!(report.per_query[0].relevant, vec!["b".to_owned()]);
        // Idempotent: a second run finds the corpus stored.
        let again = evaluate_pipeline(&rag, &data, &options).await.unwrap();
        assert_eq!(again.ingested, 0);
        assert_eq!(again.metrics, report.metrics);

        // A reranker that orders by id, descending, over the top 1 only:
        // the ranking is unchanged (one candidate). Over the top 4: "d"
        // first, so query 1's "b" drops.
        let rag = Rag::builder()
            .embedder(crate::HashEmbedder::default())
            .reranker(ById)
            .build()
            .unwrap();
        let shallow = options.clone().with_rerank_depth(1);
        let r = evaluate_pipeline(&rag, &data, &shallow).await.unwrap();
        assert!(r.reranked);
        assert!(close(r.metrics.ndcg_at_10, 1.0));
        let deep = options
            .clone()
            .with_rerank_depth(4)
            .with_mode(SearchMode::Dense);
        let r = evaluate_pipeline(&rag, &data, &deep).await.unwrap();
        let q1 = &r.per_query[0];
        assert_eq!(q1.ranked[0].0, "d", "{q1:?}");
        assert!(q1.metrics.ndcg_at_10 < 1.0);
        // And off (depth 0) leaves retrieval's order.
        let off = options.with_rerank_depth(0);
        let r = evaluate_pipeline(&rag, &data, &off).await.unwrap();
        assert!(!r.reranked);
        assert!(close(r.metrics.ndcg_at_10, 1.0));
    }

    #[test]
    fn trec_run_scores_keep_the_order() {
        let run: Run = [(
            "q".to_owned(),
            vec![("a".to_owned(), 0.5), ("b".to_owned(), 0.5)],
        )]
        .into_iter()
        .collect();
        let mut out = Vec::new();
        write_trec_run(&run, "rag", &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "q Q0 a 1 2 rag\nq Q0 b 2 1 rag\n"
        );
    }
}
