//! `rag`: the command line of the workspace.
//!
//! `rag export` / `rag import` — a namespace of a LanceDB, in-memory or
//! pgvector store to a backup file and back (`rag export --help`).
//!
//! `rag eval --answers` — answer quality: runs the whole ask pipeline per
//! question of a question-answering dataset (BEIR-shaped, queries with
//! `"answers"`) and reports gold answer contained, exact match, token F1,
//! gold document among the sources and the citations, answers citing
//! nothing, abstentions, groundedness, answer length and latency, for one or
//! more answerers side by side (`rag eval --answers --help`).
//!
//! `rag eval` — retrieval quality of a pipeline on a BEIR-format dataset
//! (`corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`): ingests the
//! corpus, runs every judged query through retrieval and reranking (no
//! generation) and prints nDCG@10, Recall@10/@100, MRR@10 and MAP.
//!
//! ```text
//! cargo run -p rag-examples --bin rag -- eval --dataset ../shared/eval/scifact-subset --split test
//! rag eval --dataset DIR [--split test] [--embedder auto|local|bge|minilm|hash] [--reranker auto|local|none]
//!          [--mode hybrid|dense|keyword] [--fusion rrf[:K]|weighted:W] [--rerank-depth N]
//!          [--depth N] [--store memory|lance] [--data DIR] [--chunk-tokens MAX[:OVERLAP]] [--rerank-max-tokens N]
//!          [--rerank-weight W] [--per-query FILE.jsonl] [--run FILE.trec] [--json]
//!          [--baseline FILE.json]   # exit 1 when nDCG@10 < baseline - tolerance
//! rag eval --dataset DIR --split train --grid   # one table: keyword, dense, hybrids, reranked
//! ```
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

#![allow(clippy::print_stdout)]

#[path = "cli/answers.rs"]
mod answers;
#[path = "cli/backup.rs"]
mod backup;

use std::path::PathBuf;
use std::sync::Arc;

use rag::eval::{BeirDataset, EvalOptions, EvalReport, evaluate_pipeline, write_trec_run};
use rag::lance::{LanceConfig, LanceVectorStore};
use rag::{Embedder, Fusion, HashEmbedder, Rag, Reranker, SearchMode};
use rag_server::state::{LocalLoaded, load_local};
use serde::Deserialize;

const USAGE: &str = "usage: rag eval --dataset DIR [--split test] [--embedder auto|local|bge|minilm|hash] \
[--reranker auto|local|none] [--mode hybrid|dense|keyword] [--fusion rrf[:K]|weighted:W] \
[--rerank-depth N] [--depth N] [--store memory|lance] [--data DIR] [--chunk-tokens MAX[:OVERLAP]] [--rerank-max-tokens N] [--per-query FILE] \
[--rerank-weight W] [--hybrid-pool N[,N…]] [--run FILE] [--json] [--baseline FILE] [--grid]";

struct EvalArgs {
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

fn parse_eval(mut it: impl Iterator<Item = String>) -> Result<EvalArgs, String> {
    let mut a = EvalArgs {
        dataset: PathBuf::new(),
        split: "test".into(),
        embedder: "auto".into(),
        reranker: "none".into(),
        mode: SearchMode::Hybrid,
        fusion: Fusion::default(),
        hybrid_pools: Vec::new(),
        rerank_depth: EvalOptions::default().rerank_depth,
        rerank_weight: EvalOptions::default().rerank_weight,
        depth: 100,
        store: "memory".into(),
        chunk: None,
        rerank_max_tokens: None,
        grid: false,
        data: None,
        per_query: None,
        run: None,
        json: false,
        baseline: None,
    };
    let mut dataset = None;
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| -> Result<usize, String> {
            v.parse()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        match flag.as_str() {
            "--dataset" => dataset = Some(PathBuf::from(value()?)),
            "--split" => a.split = value()?,
            "--embedder" => a.embedder = value()?,
            "--reranker" => a.reranker = value()?,
            "--mode" => {
                a.mode = match value()?.as_str() {
                    "hybrid" => SearchMode::Hybrid,
                    "dense" => SearchMode::Dense,
                    "keyword" => SearchMode::Keyword,
                    m => return Err(format!("--mode {m:?}: hybrid, dense or keyword")),
                }
            }
            "--fusion" => a.fusion = parse_fusion(&value()?)?,
            "--hybrid-pool" => {
                a.hybrid_pools = value()?
                    .split(',')
                    .map(|n| num(n.trim().to_owned()))
                    .collect::<Result<_, _>>()?;
            }
            "--rerank-depth" => a.rerank_depth = num(value()?)?,
            "--depth" => a.depth = num(value()?)?,
            "--rerank-weight" => {
                let v = value()?;
                a.rerank_weight = v
                    .parse::<f32>()
                    .ok()
                    .filter(|w| (0.0..=1.0).contains(w))
                    .ok_or_else(|| format!("--rerank-weight {v:?}: a number from 0 to 1"))?;
            }
            "--grid" => a.grid = true,
            "--rerank-max-tokens" => a.rerank_max_tokens = Some(num(value()?)?),
            "--chunk-tokens" => {
                let v = value()?;
                let bad = || format!("--chunk-tokens {v:?}: MAX or MAX:OVERLAP");
                let (max, overlap) = match v.split_once(':') {
                    Some((m, o)) => (m.parse().map_err(|_| bad())?, o.parse().map_err(|_| bad())?),
                    None => (v.parse().map_err(|_| bad())?, 0),
                };
                a.chunk = Some((max, overlap));
            }
            "--store" => a.store = value()?,
            "--data" => a.data = Some(PathBuf::from(value()?)),
            "--per-query" => a.per_query = Some(PathBuf::from(value()?)),
            "--run" => a.run = Some(PathBuf::from(value()?)),
            "--json" => a.json = true,
            "--baseline" => a.baseline = Some(PathBuf::from(value()?)),
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    a.dataset = dataset.ok_or_else(|| format!("--dataset is required\n{USAGE}"))?;
    if !matches!(
        a.embedder.as_str(),
        "auto" | "local" | "bge" | "minilm" | "hash"
    ) {
        return Err(format!(
            "--embedder {:?}: auto, local, bge, minilm or hash",
            a.embedder
        ));
    }
    if !matches!(a.reranker.as_str(), "auto" | "local" | "none") {
        return Err(format!("--reranker {:?}: auto, local or none", a.reranker));
    }
    if !matches!(a.store.as_str(), "memory" | "lance") {
        return Err(format!("--store {:?}: memory or lance", a.store));
    }
    Ok(a)
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

async fn eval(a: EvalArgs) -> Result<bool, Box<dyn std::error::Error>> {
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

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let result = match args.next().as_deref() {
        Some("eval") => {
            let args: Vec<String> = args.collect();
            if args.iter().any(|a| a == "--answers") {
                match answers::parse(args.into_iter()) {
                    Ok(a) => answers::run(a).await,
                    Err(msg) => {
                        eprintln!("{msg}");
                        std::process::exit(2);
                    }
                }
            } else {
                match parse_eval(args.into_iter()) {
                    Ok(a) => eval(a).await,
                    Err(msg) => {
                        eprintln!("{msg}");
                        std::process::exit(2);
                    }
                }
            }
        }
        Some(cmd @ ("export" | "import")) => match backup::parse(cmd == "import", args) {
            Ok(a) => backup::run(a).await,
            Err(msg) => {
                eprintln!("{msg}");
                std::process::exit(2);
            }
        },
        _ => {
            eprintln!("{USAGE}\n{}\n{}", answers::USAGE, backup::USAGE);
            std::process::exit(2);
        }
    };
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("rag: {e}");
            std::process::exit(1);
        }
    }
}
