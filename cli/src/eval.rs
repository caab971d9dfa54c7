//! `rag eval`: retrieval quality of a pipeline on a BEIR-format dataset
//! (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`): ingests the
//! corpus, runs every judged query through retrieval and reranking (no
//! generation) and prints nDCG@10, Recall@10/@100, MRR@10 and MAP.
//!
//! `rag eval --answers` — answer quality: runs the whole ask pipeline per
//! question of a question-answering dataset (BEIR-shaped, queries with
//! `"answers"`) for one or more answerers side by side (`answers.rs`).
//!
//! `--grid` ingests once and evaluates a fixed set of configurations side by
//! side (a Markdown table): BM25 alone, dense alone, hybrid with RRF and
//! with weighted fusion, and — with a reranker (`--reranker local`) — the
//! cross-encoder over the top of the hybrids at several blend weights.
//! Cross-encoder scores are computed once per (query, chunk) across the
//! grid.
//!
//! The defaults are the embedded default pipeline (the quickstart's): the
//! local bge-small-en-v1.5 embedder when `scripts/fetch-models` fetched it,
//! chunks of 512 tokens, hybrid retrieval with weighted fusion (dense 0.7),
//! no reranker. The in-memory store by default (`--store lance` for
//! LanceDB in `--data`, default a temporary directory).

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use rag::eval::{BeirDataset, EvalOptions, EvalReport, evaluate_pipeline, write_trec_run};
use rag::lance::{LanceConfig, LanceVectorStore};
use rag::{Embedder, Fusion, HashEmbedder, Rag, Reranker, SearchMode};
use rag_server::state::{LocalLoaded, load_local};
use serde::Deserialize;

use crate::answers;
use crate::{Failure, Outcome};

/// The retrieval evaluation, as parsed.
struct RetrievalArgs {
    dataset: PathBuf,
    split: String,
    embedder: String,
    reranker: String,
    mode: SearchMode,
    fusion: Fusion,
    /// `--hybrid-pool N[,N…]`: candidates each side of a hybrid search
    /// contributes to fusion (default: the stores' rule); several values are
    /// evaluated side by side after one ingest.
    hybrid_pools: Vec<usize>,
    rerank_depth: usize,
    rerank_weight: f32,
    depth: usize,
    store: String,
    /// `--chunk-tokens MAX[:OVERLAP]`: chunks of that many cl100k tokens
    /// instead of the pipeline's default (256, overlap 32).
    chunk: Option<(usize, usize)>,
    /// `--rerank-max-tokens N`: the cross-encoder's pair length (default 192).
    rerank_max_tokens: Option<usize>,
    grid: bool,
    data: Option<PathBuf>,
    per_query: Option<PathBuf>,
    run: Option<PathBuf>,
    json: bool,
    baseline: Option<PathBuf>,
}

/// A recorded score to gate on (`--baseline`).
#[derive(Deserialize)]
struct Baseline {
    /// What was measured, for the message.
    #[serde(default)]
    pipeline: String,
    split: String,
    /// The embedder's model id the value was measured with; a run with
    /// another embedder is refused rather than compared.
    #[serde(default)]
    embedder: Option<String>,
    ndcg_at_10: f64,
    /// How far below the recorded value still passes.
    tolerance: f64,
}

fn parse_fusion(v: &str) -> Result<Fusion, String> {
    let bad = || format!("--fusion {v:?}: expected rrf, rrf:K or weighted:W (W in 0..1)");
    match v.split_once(':') {
        None if v == "rrf" => Ok(Fusion::Rrf { k: 60.0 }),
        Some(("rrf", k)) => Ok(Fusion::Rrf {
            k: k.parse().map_err(|_| bad())?,
        }),
        Some(("weighted", w)) => {
            let w: f32 = w.parse().map_err(|_| bad())?;
            if !(0.0..=1.0).contains(&w) {
                return Err(bad());
            }
            Ok(Fusion::Weighted { dense_weight: w })
        }
        _ => Err(bad()),
    }
}

/// Scores each (query, chunk) pair once: the grid reranks overlapping
/// candidate lists many times.
#[derive(Debug)]
struct MemoReranker {
    inner: Arc<dyn Reranker>,
    scores: std::sync::Mutex<std::collections::HashMap<(String, rag::ChunkId), f32>>,
}

#[rag::async_trait]
impl Reranker for MemoReranker {
    async fn rerank(
        &self,
        query: &str,
        candidates: Vec<rag::ScoredChunk>,
        top_n: usize,
    ) -> rag::Result<Vec<rag::ScoredChunk>> {
        let key = |c: &rag::ScoredChunk| (query.to_owned(), c.chunk.id.clone());
        let missing: Vec<rag::ScoredChunk> = {
            let memo = self.scores.lock().expect("memo");
            candidates
                .iter()
                .filter(|c| !memo.contains_key(&key(c)))
                .cloned()
                .collect()
        };
        if !missing.is_empty() {
            let n = missing.len();
            let scored = self.inner.rerank(query, missing, n).await?;
            let mut memo = self.scores.lock().expect("memo");
            for c in &scored {
                memo.insert(key(c), c.rerank_score.unwrap_or(c.score));
            }
        }
        let memo = self.scores.lock().expect("memo");
        let mut out: Vec<rag::ScoredChunk> = candidates
            .into_iter()
            .map(|mut c| {
                let s = memo.get(&key(&c)).copied().unwrap_or(f32::MIN);
                c.rerank_score = Some(s);
                c.score = s;
                c
            })
            .collect();
        out.sort_by(|x, y| y.score.total_cmp(&x.score));
        out.truncate(top_n);
        Ok(out)
    }
}

/// One configuration of the grid.
struct Config {
    mode: SearchMode,
    fusion: Fusion,
    /// `None`: no reranking; `Some(w)`: the reranker with blend weight `w`.
    rerank: Option<f32>,
}

fn grid(has_reranker: bool) -> Vec<Config> {
    let plain = |mode, fusion| Config {
        mode,
        fusion,
        rerank: None,
    };
    let rrf = Fusion::Rrf { k: 60.0 };
    let mut out = vec![
        plain(SearchMode::Keyword, rrf),
        plain(SearchMode::Dense, rrf),
        plain(SearchMode::Hybrid, rrf),
        plain(SearchMode::Hybrid, Fusion::Rrf { k: 10.0 }),
    ];
    for w in [0.3, 0.5, 0.6, 0.7, 0.8, 0.9] {
        out.push(plain(
            SearchMode::Hybrid,
            Fusion::Weighted { dense_weight: w },
        ));
    }
    if has_reranker {
        let weighted = |w| Fusion::Weighted { dense_weight: w };
        for fusion in [rrf, weighted(0.7), weighted(0.8)] {
            for w in [1.0, 0.7, 0.5, 0.3, 0.2] {
                out.push(Config {
                    mode: SearchMode::Hybrid,
                    fusion,
                    rerank: Some(w),
                });
            }
        }
    }
    out
}

fn describe(
    mode: SearchMode,
    fusion: Fusion,
    embedder: &str,
    rerank: Option<(usize, f32)>,
) -> String {
    let base = match (mode, fusion) {
        (SearchMode::Hybrid, Fusion::Rrf { k }) => format!("hybrid RRF(k={k}), {embedder}"),
        (SearchMode::Hybrid, Fusion::Weighted { dense_weight }) => {
            format!("hybrid weighted(dense {dense_weight}), {embedder}")
        }
        (SearchMode::Dense, _) => format!("dense, {embedder}"),
        (SearchMode::Keyword, _) => "keyword (our BM25)".into(),
    };
    match rerank {
        None => base,
        Some((depth, w)) if w >= 1.0 => format!("{base} + cross-encoder top {depth}"),
        Some((depth, w)) => format!("{base} + cross-encoder top {depth}, blend {w}"),
    }
}

async fn eval(a: RetrievalArgs) -> Result<bool, Box<dyn std::error::Error>> {
    let data = BeirDataset::load(&a.dataset, &a.split)?;
    // With --rerank-max-tokens the cross-encoder is loaded below, once, with
    // that pair length.
    let rr = if a.rerank_max_tokens.is_some() {
        "none".to_owned()
    } else {
        a.reranker.clone()
    };
    let emb = a.embedder.clone();
    let LocalLoaded {
        embedder: local_embedder,
        chunker: local_chunker,
        reranker: local_reranker,
        ..
    } = tokio::task::spawn_blocking(move || load_local(&emb, &rr, "none")).await??;
    let embedder: Arc<dyn Embedder> =
        local_embedder.unwrap_or_else(|| Arc::new(HashEmbedder::default()));
    let mut builder = Rag::builder().embedder_arc(embedder.clone());
    let _tmp;
    if a.store == "lance" {
        let dir = match &a.data {
            Some(d) => d.clone(),
            None => {
                let t = std::env::temp_dir().join(format!("rag-eval-{}", std::process::id()));
                _tmp = TempDir(t.clone());
                t
            }
        };
        let config = LanceConfig::new(dir.to_string_lossy(), embedder.dimensions());
        builder = builder.store(LanceVectorStore::open(config).await?);
    }
    let local_reranker = match a.rerank_max_tokens {
        Some(n) if a.reranker != "none" => Some(
            tokio::task::spawn_blocking(move || {
                let models = rag::local::LocalModels::from_env()?;
                rag::local::CrossEncoderReranker::load(
                    rag::local::CrossEncoderConfig::new(models.reranker_dir()).with_max_length(n),
                )
            })
            .await??,
        ),
        _ => local_reranker,
    };
    if let Some(r) = local_reranker {
        let r: Arc<dyn Reranker> = Arc::new(r);
        builder = builder.reranker_arc(if a.grid {
            Arc::new(MemoReranker {
                inner: r,
                scores: Default::default(),
            })
        } else {
            r
        });
    }
    // The embedded default's chunker (sized to the local embedder) unless
    // --chunk-tokens says otherwise.
    if let Some((max, overlap)) = a.chunk {
        builder = builder.chunker(rag::AutoChunker::new(rag::ChunkSize::Tokens {
            encoding: rag::TokenEncoding::Cl100k,
            max,
            overlap,
        })?);
    } else if let Some(chunker) = local_chunker {
        builder = builder.chunker_arc(chunker);
    }
    let rag = builder.build()?;
    let mut options = EvalOptions::default()
        .with_depth(a.depth)
        .with_mode(a.mode)
        .with_fusion(a.fusion)
        .with_rerank_depth(a.rerank_depth)
        .with_rerank_weight(a.rerank_weight);
    if let [pool] = a.hybrid_pools[..] {
        options = options.with_hybrid_pool(pool);
    }

    // Side by side after one ingest: several pool depths, or the grid.
    let (first_column, rows): (&str, Vec<(String, EvalOptions)>) = if a.hybrid_pools.len() > 1 {
        let rows = a
            .hybrid_pools
            .iter()
            .map(|&pool| (pool.to_string(), options.clone().with_hybrid_pool(pool)))
            .collect();
        ("hybrid pool", rows)
    } else if a.grid {
        let rows = grid(rag.reranker().is_some())
            .into_iter()
            .map(|c| {
                let label = describe(
                    c.mode,
                    c.fusion,
                    embedder.model_id(),
                    c.rerank.map(|w| (a.rerank_depth, w)),
                );
                let o = options
                    .clone()
                    .with_mode(c.mode)
                    .with_fusion(c.fusion)
                    .with_rerank_depth(if c.rerank.is_some() {
                        a.rerank_depth
                    } else {
                        0
                    })
                    .with_rerank_weight(c.rerank.unwrap_or(1.0));
                (label, o)
            })
            .collect();
        ("pipeline", rows)
    } else {
        ("", Vec::new())
    };
    if !rows.is_empty() {
        println!(
            "dataset {} split {}: {} queries, {} documents; {} store",
            data.dir.display(),
            data.split,
            data.queries.len(),
            data.corpus.len(),
            a.store
        );
        if a.hybrid_pools.len() > 1 {
            println!(
                "pipeline: {}",
                describe(a.mode, a.fusion, embedder.model_id(), None)
            );
        }
        println!(
            "\n| {first_column} | nDCG@10 | Recall@10 | Recall@100 | MRR@10 | MAP | ms/query |"
        );
        println!("|---|---|---|---|---|---|---|");
        for (i, (label, o)) in rows.into_iter().enumerate() {
            let r = evaluate_pipeline(&rag, &data, &o.with_ingest(i == 0)).await?;
            if i == 0 {
                eprintln!(
                    "ingested {} documents in {:.1} s",
                    r.ingested,
                    r.ingest_time.as_secs_f64()
                );
            }
            let m = &r.metrics;
            println!(
                "| {label} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.1} |",
                m.ndcg_at_10,
                m.recall_at_10,
                m.recall_at_100,
                m.mrr_at_10,
                m.map,
                r.query_time.as_secs_f64() * 1000.0 / m.queries.max(1) as f64
            );
        }
        return Ok(true);
    }

    let report = evaluate_pipeline(&rag, &data, &options).await?;
    let pipeline = format!(
        "{}, {} store",
        describe(
            a.mode,
            a.fusion,
            embedder.model_id(),
            report.reranked.then_some((a.rerank_depth, a.rerank_weight))
        ),
        a.store
    );

    if let Some(p) = &a.per_query {
        let mut f = std::io::BufWriter::new(std::fs::File::create(p)?);
        report.write_per_query(&mut f)?;
    }
    if let Some(p) = &a.run {
        let mut f = std::io::BufWriter::new(std::fs::File::create(p)?);
        write_trec_run(&report.run(), "rag", &mut f)?;
    }
    if a.json {
        let m = &report.metrics;
        println!(
            "{}",
            serde_json::json!({
                "dataset": report.dataset, "split": report.split, "pipeline": pipeline,
                "queries": m.queries, "ndcg_at_10": m.ndcg_at_10, "recall_at_10": m.recall_at_10,
                "recall_at_100": m.recall_at_100, "mrr_at_10": m.mrr_at_10, "map": m.map,
                "ingest_secs": report.ingest_time.as_secs_f64(),
                "query_secs": report.query_time.as_secs_f64(),
            })
        );
    } else {
        print_report(&report, &pipeline, data.corpus.len());
    }
    match &a.baseline {
        None => Ok(true),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            let b: Baseline =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
            if b.split != a.split {
                return Err(format!(
                    "{}: the baseline is for split {:?}, this run is {:?}",
                    p.display(),
                    b.split,
                    a.split
                )
                .into());
            }
            if let Some(want) = b.embedder.as_deref().filter(|w| *w != embedder.model_id()) {
                return Err(format!(
                    "{}: the baseline was measured with the embedder {want:?}, this run uses {:?}",
                    p.display(),
                    embedder.model_id()
                )
                .into());
            }
            let floor = b.ndcg_at_10 - b.tolerance;
            let got = report.metrics.ndcg_at_10;
            let ok = got >= floor;
            println!(
                "baseline {}: nDCG@10 {got:.4} vs recorded {:.4} ({}), floor {floor:.4}: {}",
                p.display(),
                b.ndcg_at_10,
                b.pipeline,
                if ok { "ok" } else { "BELOW" }
            );
            Ok(ok)
        }
    }
}

fn print_report(r: &EvalReport, pipeline: &str, corpus: usize) {
    let m = &r.metrics;
    println!(
        "dataset {} split {}: {} queries, {} documents",
        r.dataset.display(),
        r.split,
        m.queries,
        corpus
    );
    println!("pipeline: {pipeline}");
    println!(
        "ingest: {} documents written in {:.1} s; queries: {:.1} s ({:.1} ms/query)",
        r.ingested,
        r.ingest_time.as_secs_f64(),
        r.query_time.as_secs_f64(),
        r.query_time.as_secs_f64() * 1000.0 / m.queries.max(1) as f64
    );
    println!("nDCG@10   {:.4}", m.ndcg_at_10);
    println!("Recall@10 {:.4}", m.recall_at_10);
    println!("Recall@100 {:.4}", m.recall_at_100);
    println!("MRR@10    {:.4}", m.mrr_at_10);
    println!("MAP       {:.4}", m.map);
}

/// Removes a temporary store directory on exit.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const RETRIEVAL: &str = "Retrieval (without --answers)";
const ANSWERS: &str = "Answers (with --answers)";

/// `rag eval`'s arguments: the retrieval evaluation, or with `--answers`
/// the answer evaluation.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  rag eval --dataset ../shared/eval/scifact-subset --split test
  rag eval --dataset DIR --split train --grid --embedder bge --reranker local
  rag eval --dataset DIR --hybrid-pool 100,200,400          # side by side after one ingest
  rag eval --dataset DIR --baseline benches/eval/baseline.json   # exit 1 below the floor
  rag eval --answers --dataset ../shared/eval/squad-dev-rag-a --sample 50 --answerers reader,extractive

Answerers (--answerers, comma-separated, measured side by side):
  extractive      sentences quoted from the sources (the built-in answerer); extractive:N at most N
  local           the local chat model on candle (SmolLM2-135M)
  openai          OpenAiChat from the environment (OPENAI_BASE_URL, OPENAI_API_KEY, OPENAI_CHAT_MODEL)
  groq            GroqChat from the environment (GROQ_API_KEY)
  reader          the embedded default: the local reader model on a llama-server child process
  grounded-openai, grounded-local, grounded-groq
                  that model as a reader: it reads the best sentences and answers in a few words,
                  cited and checked, else the best sentence is quoted")]
pub(crate) struct EvalArgs {
    /// Measure answers (the whole ask pipeline against gold answers) instead of retrieval.
    #[arg(long)]
    answers: bool,
    /// The dataset directory (BEIR layout: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv).
    #[arg(long, value_name = "DIR")]
    dataset: PathBuf,
    /// The split whose judged queries are run.
    #[arg(long, default_value = "test")]
    split: String,
    /// The embedder (auto: the local model when fetched, else the hash embedder).
    #[arg(long, default_value = "auto", value_parser = ["auto", "local", "bge", "minilm", "hash"])]
    embedder: String,
    /// Write one JSON line per query to FILE.
    #[arg(long, value_name = "FILE")]
    per_query: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Exit 1 when a measure is more than the recorded tolerance below this recorded baseline.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,

    /// The cross-encoder: auto, local or none.
    #[arg(long, default_value = "none", value_parser = ["auto", "local", "none"], help_heading = RETRIEVAL, conflicts_with = "answers")]
    reranker: String,
    /// Retrieval mode.
    #[arg(long, value_enum, default_value_t = Mode::Hybrid, help_heading = RETRIEVAL, conflicts_with = "answers")]
    mode: Mode,
    /// Fusion of a hybrid search: rrf, rrf:K or weighted:W (W, the dense weight, in 0..1).
    #[arg(long, value_parser = parse_fusion, value_name = "FUSION", help_heading = RETRIEVAL, conflicts_with = "answers")]
    fusion: Option<Fusion>,
    /// Candidates each side of a hybrid search gives to fusion; several are evaluated side by side.
    #[arg(long = "hybrid-pool", value_delimiter = ',', value_name = "N[,N…]", help_heading = RETRIEVAL, conflicts_with = "answers")]
    hybrid_pools: Vec<usize>,
    /// Candidates reranked.
    #[arg(long, default_value_t = EvalOptions::default().rerank_depth, value_name = "N", help_heading = RETRIEVAL, conflicts_with = "answers")]
    rerank_depth: usize,
    /// Blend of the cross-encoder's score with the fused one (1: the cross-encoder alone).
    #[arg(long, default_value_t = EvalOptions::default().rerank_weight, value_parser = parse_unit, value_name = "W", help_heading = RETRIEVAL, conflicts_with = "answers")]
    rerank_weight: f32,
    /// Results retrieved per query.
    #[arg(long, default_value_t = 100, value_name = "N", help_heading = RETRIEVAL, conflicts_with = "answers")]
    depth: usize,
    /// The store evaluated: memory or lance.
    #[arg(long, default_value = "memory", value_parser = ["memory", "lance"], help_heading = RETRIEVAL, conflicts_with = "answers")]
    store: String,
    /// LanceDB's directory (default: a temporary one).
    #[arg(long, value_name = "DIR", help_heading = RETRIEVAL, conflicts_with = "answers")]
    data: Option<PathBuf>,
    /// Chunks of MAX cl100k tokens with OVERLAP instead of the embedder's default.
    #[arg(long, value_parser = parse_chunk, value_name = "MAX[:OVERLAP]", help_heading = RETRIEVAL, conflicts_with = "answers")]
    chunk_tokens: Option<(usize, usize)>,
    /// The cross-encoder's pair length in tokens.
    #[arg(long, value_name = "N", help_heading = RETRIEVAL, conflicts_with = "answers")]
    rerank_max_tokens: Option<usize>,
    /// Evaluate a fixed grid of configurations side by side.
    #[arg(long, help_heading = RETRIEVAL, conflicts_with = "answers")]
    grid: bool,
    /// Write the ranking as a TREC run file.
    #[arg(long, value_name = "FILE", help_heading = RETRIEVAL, conflicts_with = "answers")]
    run: Option<PathBuf>,

    /// A fixed sample of N questions chosen by --seed.
    #[arg(long, value_parser = positive, value_name = "N", help_heading = ANSWERS, requires = "answers")]
    sample: Option<usize>,
    /// The sample's seed.
    #[arg(long, default_value_t = 1, help_heading = ANSWERS, requires = "answers")]
    seed: u64,
    /// Ingest the Markdown files under DIR (sources relative to DIR) instead of the dataset's corpus.
    #[arg(long, value_name = "DIR", help_heading = ANSWERS, requires = "answers")]
    docs: Option<PathBuf>,
    /// The answerers, comma-separated, measured side by side (see below).
    #[arg(long, alias = "answerer", value_delimiter = ',', default_value = "extractive", value_parser = answerer_name, help_heading = ANSWERS, requires = "answers")]
    answerers: Vec<String>,
    /// Sources given per question.
    #[arg(long, value_parser = positive, value_name = "N", help_heading = ANSWERS, requires = "answers")]
    top_k: Option<usize>,
    /// Most tokens of an answer.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), value_name = "N", help_heading = ANSWERS, requires = "answers")]
    answer_tokens: Option<u32>,
    /// The context budget in tokens.
    #[arg(long, value_parser = positive, value_name = "N", help_heading = ANSWERS, requires = "answers")]
    context_tokens: Option<usize>,
    /// Questions answered at once.
    #[arg(long, default_value_t = 1, value_parser = positive, value_name = "N", help_heading = ANSWERS, requires = "answers")]
    concurrency: usize,
    /// How many of the best sentences a reader (reader, grounded-*) reads (default 8).
    #[arg(long, value_parser = positive, value_name = "N", help_heading = ANSWERS, requires = "answers")]
    excerpt_sentences: Option<usize>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Hybrid,
    Dense,
    Keyword,
}

fn positive(v: &str) -> Result<usize, String> {
    v.parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{v:?} is not a positive number"))
}

fn parse_unit(v: &str) -> Result<f32, String> {
    v.parse::<f32>()
        .ok()
        .filter(|w| (0.0..=1.0).contains(w))
        .ok_or_else(|| format!("{v:?}: a number from 0 to 1"))
}

fn parse_chunk(v: &str) -> Result<(usize, usize), String> {
    let bad = || format!("{v:?}: MAX or MAX:OVERLAP");
    match v.split_once(':') {
        Some((m, o)) => Ok((m.parse().map_err(|_| bad())?, o.parse().map_err(|_| bad())?)),
        None => Ok((v.parse().map_err(|_| bad())?, 0)),
    }
}

fn answerer_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    let base = name.strip_prefix("grounded-").unwrap_or(name);
    if matches!(base, "extractive" | "local" | "openai" | "groq" | "reader")
        || name
            .strip_prefix("extractive:")
            .is_some_and(|n| n.parse::<usize>().is_ok_and(|n| n > 0))
    {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "unknown answerer {name:?} (extractive, extractive:N, reader, local, openai, groq, grounded-MODEL)"
        ))
    }
}

/// `rag eval`.
pub(crate) async fn run(a: EvalArgs) -> Outcome {
    let result = if a.answers {
        answers::run(answers::AnswerArgs {
            dataset: a.dataset,
            split: a.split,
            sample: a.sample,
            seed: a.seed,
            docs: a.docs,
            answerers: a.answerers,
            embedder: a.embedder,
            top_k: a.top_k,
            answer_tokens: a.answer_tokens,
            context_tokens: a.context_tokens,
            concurrency: a.concurrency,
            excerpt_sentences: a.excerpt_sentences,
            per_query: a.per_query,
            json: a.json,
            baseline: a.baseline,
        })
        .await
    } else {
        eval(RetrievalArgs {
            dataset: a.dataset,
            split: a.split,
            embedder: a.embedder,
            reranker: a.reranker,
            mode: match a.mode {
                Mode::Hybrid => SearchMode::Hybrid,
                Mode::Dense => SearchMode::Dense,
                Mode::Keyword => SearchMode::Keyword,
            },
            fusion: a.fusion.unwrap_or_default(),
            hybrid_pools: a.hybrid_pools,
            rerank_depth: a.rerank_depth,
            rerank_weight: a.rerank_weight,
            depth: a.depth,
            store: a.store,
            chunk: a.chunk_tokens,
            rerank_max_tokens: a.rerank_max_tokens,
            grid: a.grid,
            data: a.data,
            per_query: a.per_query,
            run: a.run,
            json: a.json,
            baseline: a.baseline,
        })
        .await
    };
    match result {
        Ok(true) => Ok(()),
        // The report says which measure fell below its floor.
        Ok(false) => Err(Failure::Reported),
        Err(e) => Err(Failure::Failed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(line: &str) -> Result<EvalArgs, clap::Error> {
        let args = ["rag", "eval"].into_iter().chain(line.split_whitespace());
        match crate::Cli::try_parse_from(args)?.command {
            crate::Command::Eval(a) => Ok(*a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn parses_answerers_and_refuses_unknown_ones_and_mixed_modes() {
        let a = parse("--answers --dataset d --answerers reader,extractive:1,grounded-openai --excerpt-sentences 3 --sample 50 --seed 7").unwrap();
        assert_eq!(a.answerers, ["reader", "extractive:1", "grounded-openai"]);
        assert_eq!(a.excerpt_sentences, Some(3));
        assert_eq!((a.sample, a.seed), (Some(50), 7));
        let a = parse("--dataset d --hybrid-pool 100,200 --fusion rrf:10 --chunk-tokens 256:32")
            .unwrap();
        assert_eq!(a.hybrid_pools, [100, 200]);
        assert_eq!(a.fusion, Some(Fusion::Rrf { k: 10.0 }));
        assert_eq!(a.chunk_tokens, Some((256, 32)));
        for bad in [
            "--answers --dataset d --answerers extractive:0",
            "--answers --dataset d --answerers grounded-nothing",
            "--answers --dataset d --excerpt-sentences 0",
            // Answer flags need --answers; retrieval flags refuse it.
            "--dataset d --answerers reader",
            "--answers --dataset d --grid",
            "--dataset d --fusion weighted:2",
            "--dataset d --rerank-weight 1.5",
            "--split test",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
