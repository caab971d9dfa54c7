//! Quickstart: answer a question over this workspace's own docs, offline.
//!
//! Runs on the embedded defaults (a LanceDB store on local disk in
//! `./rag-data`, `HashEmbedder`, `ExtractiveAnswerer`): no network, no API
//! key, no server. Ingestion is idempotent: a second run finds the documents
//! already stored and skips them. When
//! `GROQ_API_KEY` is set it generates answers with `GroqChat`; when
//! `OPENAI_API_KEY` or `OPENAI_BASE_URL` is set (any OpenAI-compatible server:
//! OpenAI, Ollama, vLLM, llama.cpp, with `OPENAI_CHAT_MODEL`), with
//! `OpenAiChat`. Retrieval stays on the embedded defaults either way.
//!
//! ```text
//! cargo run -p rag-examples --bin quickstart
//! cargo run -p rag-examples --bin quickstart -- --question "How are chunk ids derived?"
//! cargo run -p rag-examples --bin quickstart -- --docs path/to/docs
//! cargo run -p rag-examples --bin quickstart -- --data /tmp/rag-data   # another store directory
//! cargo run -p rag-examples --bin quickstart -- --memory               # in-memory store
//! ```
//!
//! It reads the Markdown files (the READMEs of the workspace and its crates)
//! under the workspace root, or under `--docs`.

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use rag::groq::GroqChat;
use rag::lance::{LanceConfig, LanceVectorStore};
use rag::openai::OpenAiChat;
use rag::{Ask, Embedder, HashEmbedder, LlmClient, LoadOptions, Rag, load_path};

/// The chat model chosen from the environment, if any.
fn llm_from_env() -> Result<Option<Arc<dyn LlmClient>>, rag::Error> {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
    if set("GROQ_API_KEY") {
        return Ok(Some(Arc::new(GroqChat::from_env()?)));
    }
    if set("OPENAI_API_KEY") || set("OPENAI_BASE_URL") {
        return Ok(Some(Arc::new(OpenAiChat::from_env()?)));
    }
    Ok(None)
}

struct Args {
    docs: PathBuf,
    question: String,
    /// The LanceDB directory; `None` for the in-memory store.
    data: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        docs: Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
        question: "How do I run the test suite?".to_owned(),
        data: Some(PathBuf::from("rag-data")),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--docs" => args.docs = PathBuf::from(value()?),
            "--question" | "-q" => args.question = value()?,
            "--data" => args.data = Some(PathBuf::from(value()?)),
            "--memory" => args.data = None,
            "--help" | "-h" => {
                return Err(
                    "usage: quickstart [--docs PATH] [--question TEXT] [--data DIR | --memory]"
                        .to_owned(),
                );
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The first `n` characters of `text`, on one line.
fn snippet(text: &str, n: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &one_line[..i]),
        None => one_line,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };

    // 1. Load the docs.
    let t = Instant::now();
    let options = LoadOptions::default().with_extensions(["md", "markdown"]);
    let loaded = load_path(&args.docs, &options)?;
    let load_time = t.elapsed();
    for f in &loaded.failed {
        eprintln!("could not read {}: {}", f.path.display(), f.error);
    }
    println!(
        "loaded {} files from {} ({} skipped) in {}",
        loaded.documents.len(),
        args.docs.display(),
        loaded.skipped.len(),
        ms(load_time)
    );

    // 2. Ingest them into the embedded default pipeline.
    let mut builder = Rag::builder();
    if let Some(dir) = &args.data {
        let embedder = HashEmbedder::default();
        let config = LanceConfig::new(dir.to_string_lossy(), embedder.dimensions());
        let store = LanceVectorStore::open(config).await?;
        println!("store: LanceDB in {}", dir.display());
        builder = builder.embedder(embedder).store(store);
    } else {
        println!("store: in memory");
    }
    match llm_from_env()? {
        Some(llm) => {
            println!("answering with {} (from the environment)", llm.model_id());
            builder = builder.llm_arc(llm);
        }
        None => println!(
            "answering extractively (set OPENAI_API_KEY, OPENAI_BASE_URL or GROQ_API_KEY for a model)"
        ),
    }
    let rag = builder.build()?;
    let report = rag.ingest_many(loaded.documents).await;
    println!(
        "ingested {} documents ({} unchanged, skipped), {} chunks in {} ({} failed)",
        report.added.len() + report.replaced.len(),
        report.unchanged.len(),
        report.chunks_written,
        ms(report.elapsed),
        report.failed.len()
    );
    for f in &report.failed {
        eprintln!("  {}: {}", f.source, f.error);
    }

    // 3. Ask.
    let answer = rag.ask(Ask::new(args.question.as_str())).await?;
    println!("\nQ: {}", args.question);
    let label = if answer.extractive {
        " (extractive: sentences quoted from the sources, no language model)"
    } else {
        ""
    };
    println!("A{label}:\n{}\n", answer.text);
    println!("Citations:");
    for c in &answer.citations {
        let text = answer
            .sources
            .iter()
            .find(|s| s.number == c.number)
            .map(|s| snippet(&s.text, 100))
            .unwrap_or_default();
        println!(
            "  [{}] {} bytes {}..{}: {}",
            c.number, c.source, c.byte_range.start, c.byte_range.end, text
        );
    }
    let t = &answer.trace;
    println!(
        "\nRetrieval: {:?} ({} dense + {} keyword candidates, {} sources packed, ~{} prompt tokens)",
        t.mode_used, t.dense_candidates, t.keyword_candidates, t.packed_sources, t.prompt_tokens
    );
    let s = &t.timings;
    println!(
        "Timings: load {} | ingest {} | condense {} | embed {} | retrieve {} | rerank {} | pack {} | generate {} | ask total {}",
        ms(load_time),
        ms(report.elapsed),
        ms(s.condense),
        ms(s.embed),
        ms(s.retrieve),
        ms(s.rerank),
        ms(s.pack),
        ms(s.generate),
        ms(s.total)
    );
    Ok(())
}
