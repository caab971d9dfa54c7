//! `rag eval --answers`: answer quality of one or more answerers on a
//! question-answering dataset, side by side (one ingest, the same retrieval).

use std::path::PathBuf;
use std::sync::Arc;

use rag::eval::answers::{AnswerMetrics, AnswerOptions, AnswerReport, QaDataset, evaluate_answers};
use rag::{Embedder, ExtractiveAnswerer, HashEmbedder, LlmClient, LoadOptions, Rag, load_path};
use rag_server::state::{LocalLoaded, load_local};
use serde::Deserialize;

/// The answer evaluation, as parsed (`rag eval --answers`).
pub(crate) struct AnswerArgs {
    pub(crate) dataset: PathBuf,
    pub(crate) split: String,
    pub(crate) sample: Option<usize>,
    pub(crate) seed: u64,
    pub(crate) docs: Option<PathBuf>,
    pub(crate) answerers: Vec<String>,
    pub(crate) embedder: String,
    pub(crate) top_k: Option<usize>,
    pub(crate) answer_tokens: Option<u32>,
    pub(crate) context_tokens: Option<usize>,
    pub(crate) concurrency: usize,
    pub(crate) excerpt_sentences: Option<usize>,
    pub(crate) per_query: Option<PathBuf>,
    pub(crate) json: bool,
    pub(crate) baseline: Option<PathBuf>,
}

/// The answerer a name stands for (`reader` is started by the caller).
fn answerer(
    name: &str,
    local: &mut Option<rag::local::LocalChat>,
    excerpts: Option<usize>,
) -> rag::Result<Arc<dyn LlmClient>> {
    if let Some(model) = name.strip_prefix("grounded-") {
        let model = answerer(model, local, excerpts)?;
        return Ok(grounded(model, excerpts));
    }
    Ok(match name {
        "extractive" => Arc::new(ExtractiveAnswerer::default()),
        "openai" => Arc::new(rag::openai::OpenAiChat::from_env()?),
        "groq" => Arc::new(rag::groq::GroqChat::from_env()?),
        "local" => match local.take() {
            Some(chat) => Arc::new(chat),
            None => Arc::new(rag::local::LocalModels::from_env()?.chat()?),
        },
        other => {
            let n = other
                .strip_prefix("extractive:")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            Arc::new(ExtractiveAnswerer::default().with_max_sentences(n))
        }
    })
}

/// `model` as a reader, reading `excerpts` sentences (else the default).
fn grounded(model: Arc<dyn LlmClient>, excerpts: Option<usize>) -> Arc<dyn LlmClient> {
    let mut reader = rag::GroundedAnswerer::new(model);
    if let Some(n) = excerpts {
        reader = reader.with_excerpt_sentences(n);
    }
    Arc::new(reader)
}

/// Recorded answer measures to gate on (`--baseline`): each present measure
/// must be at least its value minus `tolerance`.
#[derive(Deserialize)]
struct Baseline {
    /// What was measured, for the message.
    #[serde(default)]
    pipeline: String,
    /// The answerer the values were measured with.
    answerer: String,
    /// The sample size and seed they were measured on.
    sample: Option<usize>,
    #[serde(default = "one")]
    seed: u64,
    #[serde(default)]
    contained: Option<f64>,
    #[serde(default)]
    f1: Option<f64>,
    #[serde(default)]
    gold_cited: Option<f64>,
    #[serde(default)]
    facts: Option<f64>,
    #[serde(default)]
    groundedness: Option<f64>,
    tolerance: f64,
}

fn one() -> u64 {
    1
}

fn row(name: &str, r: &AnswerReport) -> String {
    let m = &r.metrics;
    let facts = m.facts.map_or("—".to_owned(), |f| format!("{f:.3}"));
    // Extractive answers generate no tokens.
    let tokens_per_second = if m.tokens_per_second > 0.0 {
        format!("{:.1}", m.tokens_per_second)
    } else {
        "—".to_owned()
    };
    format!(
        "| {name} | {} | {:.3} | {:.3} | {:.3} | {facts} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} | {:.2} / {:.2} | {:.3} / {:.3} | {:.2} / {:.2} | {tokens_per_second} |",
        m.questions,
        m.contained,
        m.exact_match,
        m.f1,
        m.gold_in_sources,
        m.gold_cited,
        m.cites_nothing,
        m.abstained,
        m.groundedness,
        m.median_words,
        m.latency_p50.as_secs_f64(),
        m.latency_p95.as_secs_f64(),
        m.retrieval_p50.as_secs_f64(),
        m.retrieval_p95.as_secs_f64(),
        m.generation_p50.as_secs_f64(),
        m.generation_p95.as_secs_f64(),
    )
}

const HEADER: &str = "| answerer | questions | contained | EM | F1 | facts | gold in sources | gold cited | cites nothing | abstained | grounded | median words | latency p50 / p95 s | retrieval p50 / p95 s | generation p50 / p95 s | tokens/s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

fn check_baseline(
    path: &std::path::Path,
    a: &AnswerArgs,
    reports: &[(String, AnswerReport)],
) -> Result<bool, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let b: Baseline =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    if b.sample != a.sample || b.seed != a.seed {
        return Err(format!(
            "{}: the baseline was measured on sample {:?} seed {}, this run is sample {:?} seed {}",
            path.display(),
            b.sample,
            b.seed,
            a.sample,
            a.seed
        )
        .into());
    }
    let (_, report) = reports
        .iter()
        .find(|(n, _)| *n == b.answerer)
        .ok_or_else(|| {
            format!(
                "{}: the baseline is for the answerer {:?}, which this run did not measure",
                path.display(),
                b.answerer
            )
        })?;
    let m: &AnswerMetrics = &report.metrics;
    let mut ok = true;
    let checks = [
        ("contained", b.contained, m.contained),
        ("f1", b.f1, m.f1),
        ("gold_cited", b.gold_cited, m.gold_cited),
        ("facts", b.facts, m.facts.unwrap_or(0.0)),
        ("groundedness", b.groundedness, m.groundedness),
    ];
    for (name, want, got) in checks {
        let Some(want) = want else { continue };
        let floor = want - b.tolerance;
        let pass = got >= floor;
        ok &= pass;
        println!(
            "baseline {} ({}): {name} {got:.4} vs recorded {want:.4}, floor {floor:.4}: {}",
            path.display(),
            b.pipeline,
            if pass { "ok" } else { "BELOW" }
        );
    }
    Ok(ok)
}

pub(crate) async fn run(a: AnswerArgs) -> Result<bool, Box<dyn std::error::Error>> {
    let mut data = QaDataset::load(&a.dataset, &a.split)?;
    if let Some(n) = a.sample {
        data = data.sample(n, a.seed);
    }
    let emb = a.embedder.clone();
    let want_chat = if a.answerers.iter().any(|n| n.ends_with("local")) {
        "local"
    } else {
        "none"
    };
    let LocalLoaded {
        embedder,
        chunker,
        chat,
        ..
    } = tokio::task::spawn_blocking(move || load_local(&emb, "none", want_chat)).await??;
    let embedder: Arc<dyn Embedder> = embedder.unwrap_or_else(|| Arc::new(HashEmbedder::default()));
    let store: Arc<dyn rag::VectorStore> = Arc::new(rag::MemoryVectorStore::default());
    let mut local_chat = chat;

    // Ingest once, into the store every answerer's pipeline shares.
    let mut builder = Rag::builder()
        .embedder_arc(embedder.clone())
        .store_arc(store.clone());
    if let Some(c) = &chunker {
        builder = builder.chunker_arc(c.clone());
    }
    let base = builder.build()?;
    let options = AnswerOptions::default().with_concurrency(a.concurrency);
    let started = std::time::Instant::now();
    let documents = match &a.docs {
        Some(dir) => {
            let options = LoadOptions::default().with_extensions(["md", "markdown"]);
            load_path(dir, &options)?.documents
        }
        None => data.documents()?,
    };
    let corpus_size = documents.len();
    let report = base
        .ingest_stream(
            futures::stream::iter(documents),
            rag::IngestOptions::new(options.namespace.clone()),
        )
        .await;
    if let Some(f) = report.failed.first() {
        return Err(format!("{} failed to ingest: {}", f.source, f.error).into());
    }
    eprintln!(
        "ingested {corpus_size} documents in {:.1} s with {}",
        started.elapsed().as_secs_f64(),
        embedder.model_id()
    );

    let mut options = options.with_ingest(false);
    if let Some(k) = a.top_k {
        options = options.with_top_k(k);
    }
    if let Some(n) = a.answer_tokens {
        options = options.with_answer_tokens(n);
    }
    if let Some(n) = a.context_tokens {
        options = options.with_context_tokens(n);
    }
    let mut reports = Vec::new();
    let mut servers = Vec::new();
    for name in &a.answerers {
        let llm = if name == "reader" {
            let dir = rag::local::LocalModels::from_env()?.dir().to_owned();
            let (server, chat) = rag_server::llama::start_reader_model(&dir).await??;
            servers.push(server);
            grounded(chat, a.excerpt_sentences)
        } else {
            answerer(name, &mut local_chat, a.excerpt_sentences)?
        };
        let mut builder = Rag::builder()
            .embedder_arc(embedder.clone())
            .store_arc(store.clone())
            .llm_arc(llm);
        if let Some(c) = &chunker {
            builder = builder.chunker_arc(c.clone());
        }
        let rag = builder.build()?;
        let report = evaluate_answers(&rag, &data, &options).await?;
        eprintln!(
            "{name}: {} questions in {:.1} s",
            report.metrics.questions,
            report.query_time.as_secs_f64()
        );
        reports.push((name.clone(), report));
    }

    if let Some(p) = &a.per_query {
        let mut f = std::io::BufWriter::new(std::fs::File::create(p)?);
        for (name, r) in &reports {
            for q in &r.per_query {
                let mut v = serde_json::to_value(q)?;
                v["answerer"] = serde_json::Value::String(name.clone());
                serde_json::to_writer(&mut f, &v)?;
                std::io::Write::write_all(&mut f, b"\n")?;
            }
        }
    }
    let sample = match a.sample {
        Some(n) => format!("sample {n}, seed {}", a.seed),
        None => "all questions".to_owned(),
    };
    if a.json {
        let rows: Vec<serde_json::Value> = reports
            .iter()
            .map(|(name, r)| {
                serde_json::json!({"answerer": name, "models": r.models, "metrics": r.metrics})
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "dataset": data.dir, "split": data.split, "sample": a.sample, "seed": a.seed,
                "embedder": embedder.model_id(), "documents": corpus_size, "answerers": rows,
            })
        );
    } else {
        println!(
            "dataset {} split {} ({sample}): {} questions, {corpus_size} documents, embedder {}",
            data.dir.display(),
            data.split,
            data.queries.len(),
            embedder.model_id()
        );
        println!("\n{HEADER}");
        for (name, r) in &reports {
            println!("{}", row(name, r));
        }
    }
    match &a.baseline {
        None => Ok(true),
        Some(p) => check_baseline(p, &a, &reports),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grounded_names_wrap_their_model_in_a_reader() {
        let mut local = None;
        let reader = answerer("grounded-extractive", &mut local, Some(2)).unwrap();
        assert!(
            reader.model_id().starts_with("grounded/extractive"),
            "{}",
            reader.model_id()
        );
        let plain = answerer("extractive:2", &mut local, None).unwrap();
        assert!(plain.model_id().starts_with("extractive"));
    }
}
