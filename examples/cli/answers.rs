//! `rag eval --answers`: answer quality of one or more answerers on a
//! question-answering dataset, side by side (one ingest, the same retrieval).

use std::path::PathBuf;
use std::sync::Arc;

use rag::eval::answers::{AnswerMetrics, AnswerOptions, AnswerReport, QaDataset, evaluate_answers};
use rag::{Embedder, ExtractiveAnswerer, HashEmbedder, LlmClient, LoadOptions, Rag, load_path};
use rag_server::state::{LocalLoaded, load_local};
use serde::Deserialize;

pub(crate) const USAGE: &str = "usage: rag eval --answers --dataset DIR [--split test] [--sample N] [--seed S] \
[--docs DIR] [--answerers LIST] [--embedder auto|local|bge|minilm|hash] [--top-k N] [--answer-tokens N] \
[--context-tokens N] [--concurrency N] [--excerpt-sentences N] [--per-query FILE] [--json] [--baseline FILE]

  --answerers LIST   comma-separated, measured side by side (default: extractive):
                     extractive      sentences quoted from the sources (the built-in answerer)
                     extractive:N    at most N sentences
                     local           the local chat model on candle (SmolLM2-135M)
                     openai          OpenAiChat from the environment (OPENAI_BASE_URL, OPENAI_API_KEY,
                                     OPENAI_CHAT_MODEL): OpenAI, llama.cpp's llama-server, vLLM, Ollama
                     groq            GroqChat from the environment (GROQ_API_KEY)
                     reader          the embedded default: the local reader model (Qwen2.5-Coder-0.5B)
                                     on a llama-server child process, as grounded-openai below
                     grounded-openai, grounded-local, grounded-groq
                                     that model as a reader: it reads the best sentences and answers in
                                     a few words, cited and checked, else the best sentence is quoted
  --excerpt-sentences N
                     how many of the best sentences a reader (reader, grounded-*) reads (default 8)
  --docs DIR         ingest the Markdown files under DIR (sources relative to DIR) instead of
                     the dataset's corpus.jsonl (for a set about a directory of documents)
  --sample N         a fixed sample of N questions chosen by --seed (default 1)
  --baseline FILE    exit 1 when a measure falls below its recorded value minus the tolerance";

pub(crate) struct AnswerArgs {
    dataset: PathBuf,
    split: String,
    sample: Option<usize>,
    seed: u64,
    docs: Option<PathBuf>,
    answerers: Vec<String>,
    embedder: String,
    top_k: Option<usize>,
    answer_tokens: Option<u32>,
    context_tokens: Option<usize>,
    concurrency: usize,
    excerpt_sentences: Option<usize>,
    per_query: Option<PathBuf>,
    json: bool,
    baseline: Option<PathBuf>,
}

pub(crate) fn parse(mut it: impl Iterator<Item = String>) -> Result<AnswerArgs, String> {
    let mut a = AnswerArgs {
        dataset: PathBuf::new(),
        split: "test".into(),
        sample: None,
        seed: 1,
        docs: None,
        answerers: vec!["extractive".into()],
        embedder: "auto".into(),
        top_k: None,
        answer_tokens: None,
        context_tokens: None,
        concurrency: 1,
        excerpt_sentences: None,
        per_query: None,
        json: false,
        baseline: None,
    };
    let mut dataset = None;
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| -> Result<usize, String> {
            v.parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag}: {v:?} is not a positive number"))
        };
        match flag.as_str() {
            "--answers" => {}
            "--dataset" => dataset = Some(PathBuf::from(value()?)),
            "--split" => a.split = value()?,
            "--sample" => a.sample = Some(num(value()?)?),
            "--seed" => {
                let v = value()?;
                a.seed = v
                    .parse()
                    .map_err(|_| format!("--seed {v:?} is not a number"))?;
            }
            "--docs" => a.docs = Some(PathBuf::from(value()?)),
            "--answerers" | "--answerer" => {
                a.answerers = value()?.split(',').map(|s| s.trim().to_owned()).collect();
            }
            "--embedder" => a.embedder = value()?,
            "--top-k" => a.top_k = Some(num(value()?)?),
            "--answer-tokens" => {
                a.answer_tokens =
                    Some(u32::try_from(num(value()?)?).map_err(|_| "--answer-tokens: too large")?);
            }
            "--context-tokens" => a.context_tokens = Some(num(value()?)?),
            "--concurrency" => a.concurrency = num(value()?)?,
            "--excerpt-sentences" => a.excerpt_sentences = Some(num(value()?)?),
            "--per-query" => a.per_query = Some(PathBuf::from(value()?)),
            "--json" => a.json = true,
            "--baseline" => a.baseline = Some(PathBuf::from(value()?)),
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    a.dataset = dataset.ok_or_else(|| format!("--dataset is required\n{USAGE}"))?;
    for name in &a.answerers {
        let base = name.strip_prefix("grounded-").unwrap_or(name);
        if !(matches!(base, "extractive" | "local" | "openai" | "groq" | "reader")
            || name
                .strip_prefix("extractive:")
                .is_some_and(|n| n.parse::<usize>().is_ok_and(|n| n > 0)))
        {
            return Err(format!(
                "--answerers: unknown answerer {name:?} (extractive, extractive:N, reader, local, openai, groq, grounded-MODEL)"
            ));
        }
    }
    if !matches!(
        a.embedder.as_str(),
        "auto" | "local" | "bge" | "minilm" | "hash"
    ) {
        return Err(format!(
            "--embedder {:?}: auto, local, bge, minilm or hash",
            a.embedder
        ));
    }
    Ok(a)
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

    fn args(line: &str) -> Result<AnswerArgs, String> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn parses_answerers_and_refuses_unknown_ones() {
        let a = args("--answers --dataset d --answerers reader,extractive:1,grounded-openai --excerpt-sentences 3 --sample 50 --seed 7").unwrap();
        assert_eq!(a.answerers, ["reader", "extractive:1", "grounded-openai"]);
        assert_eq!(a.excerpt_sentences, Some(3));
        assert_eq!((a.sample, a.seed), (Some(50), 7));
        for bad in [
            "--dataset d --answerers extractive:0",
            "--dataset d --answerers grounded-nothing",
            "--dataset d --excerpt-sentences 0",
            "--answerers reader",
        ] {
            assert!(args(bad).is_err(), "{bad}");
        }
    }

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
