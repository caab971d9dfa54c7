//! Quickstart: answer a question over this workspace's own docs, offline.
//!
//! Runs on the embedded defaults: a LanceDB store on local disk under
//! `./rag-data`, and the local models of `rag-local` when
//! `scripts/fetch-models` has put them in the models directory
//! (`RAG_MODELS_DIR`, else `~/.cache/rag/models`): the bge-small-en-v1.5
//! embedder (chunks of 512 tokens, hybrid retrieval with weighted fusion:
//! the configuration that measured best on SciFact) and the embedded reader
//! answering (Qwen2.5-Coder-0.5B-Instruct on a `llama-server` child process,
//! when `scripts/services/llama-server` has built it; else extractive
//! answers); `--rerank` adds the ms-marco cross-encoder. Without the models
//! it falls back to `HashEmbedder` and extractive answers, with a one-line
//! notice. No network, no API key, no server.
//! Ingestion is idempotent: a second run finds the documents already stored
//! and skips them. When `GROQ_API_KEY` is set it generates answers with
//! `GroqChat`; when `OPENAI_API_KEY` or `OPENAI_BASE_URL` is set (any
//! OpenAI-compatible server: OpenAI, Ollama, vLLM, llama.cpp, with
//! `OPENAI_CHAT_MODEL`), with `OpenAiChat`. Retrieval stays local either way.
//!
//! ```text
//! scripts/quickstart                                                 # fetches the models, then runs this
//! cargo run -p rag-examples --bin quickstart
//! cargo run -p rag-examples --bin quickstart -- --question "How are chunk ids derived?"
//! cargo run -p rag-examples --bin quickstart -- --docs path/to/docs
//! cargo run -p rag-examples --bin quickstart -- --data /tmp/rag-data   # another store directory
//! cargo run -p rag-examples --bin quickstart -- --memory               # in-memory store
//! cargo run -p rag-examples --bin quickstart -- --no-local-models      # HashEmbedder + extractive
//! cargo run -p rag-examples --bin quickstart -- --rerank               # + the cross-encoder
//! ```
//!
//! It reads the Markdown files (the READMEs, `docs/` and the crate READMEs)
//! under the workspace root, or under `--docs`. Each embedder gets its own
//! store directory under `--data` (`rag-data/bge-small-en-v1-5-384`, say), so
//! fetching the models later does not meet vectors of another dimension.

#![allow(clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use rag::groq::GroqChat;
use rag::lance::{LanceConfig, LanceVectorStore};
use rag::local::LocalModels;
use rag::openai::OpenAiChat;
use rag::{Ask, Chunker, Embedder, HashEmbedder, LlmClient, LoadOptions, Rag, Reranker, load_path};
use rag_server::state::{load_local, store_dir_name};

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

/// The models the quickstart runs on.
struct Models {
    embedder: Arc<dyn Embedder>,
    /// Chunks sized to the local embedder's window; `None`: the default.
    chunker: Option<Arc<dyn Chunker>>,
    /// The reranker and its model id.
    reranker: Option<(String, Arc<dyn Reranker>)>,
    /// The local chat model; `None` answers extractively.
    chat: Option<Arc<dyn LlmClient>>,
}

/// The local models when `scripts/fetch-models` has fetched them, else
/// `HashEmbedder` and extractive answers with a one-line notice. A model
/// that is there but cannot be loaded (a damaged file) is an error, not a
/// silent fallback.
async fn local_models(
    use_local: bool,
    rerank: bool,
    answerer: Answerer,
) -> Result<Models, Box<dyn std::error::Error>> {
    let fallback = Models {
        embedder: Arc::new(HashEmbedder::default()),
        chunker: None,
        reranker: None,
        chat: None,
    };
    if !use_local {
        println!("models: HashEmbedder, extractive answers (--no-local-models)");
        return Ok(fallback);
    }
    if let Err(e) = LocalModels::from_env() {
        println!("notice: no local models, using HashEmbedder and extractive answers ({e})");
        return Ok(fallback);
    }
    // The server's loader: `auto` takes each model that is there (a damaged
    // one is an error). Loading reads a few hundred MB: off the async threads.
    // No cross-encoder unless asked (`--rerank`): it did not improve the
    // default retrieval on SciFact (README, "Retrieval quality").
    let reranker = if rerank { "auto" } else { "none" };
    let chat = if answerer == Answerer::Local {
        "local"
    } else {
        "none"
    };
    let loaded = tokio::task::spawn_blocking(move || load_local("auto", reranker, chat)).await??;
    Ok(Models {
        embedder: loaded.embedder.unwrap_or(fallback.embedder),
        chunker: loaded.chunker,
        reranker: loaded
            .reranker
            .map(|r| (r.model_id().to_owned(), Arc::new(r) as Arc<dyn Reranker>)),
        chat: loaded.chat.map(|c| Arc::new(c) as Arc<dyn LlmClient>),
    })
}

/// Who writes the answer (`--answerer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answerer {
    /// The reader when its binary and model are there, else extractive.
    Auto,
    /// The local reader model on llama-server, checked by the grounded answerer.
    Reader,
    /// The best sentences, quoted.
    Extractive,
    /// SmolLM2-135M on candle, writing freely.
    Local,
}

struct Args {
    answerer: Answerer,
    docs: PathBuf,
    question: String,
    /// The LanceDB directory; `None` for the in-memory store.
    data: Option<PathBuf>,
    /// Whether to use the local models when they are there.
    local_models: bool,
    /// Whether to rerank with the local cross-encoder.
    rerank: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        answerer: Answerer::Auto,
        docs: Path::new(env!("CARGO_MANIFEST_DIR")).join(".."),
        question: "How do I run the test suite?".to_owned(),
        data: Some(PathBuf::from("rag-data")),
        local_models: true,
        rerank: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--docs" => args.docs = PathBuf::from(value()?),
            "--question" | "-q" => args.question = value()?,
            "--data" => args.data = Some(PathBuf::from(value()?)),
            "--memory" => args.data = None,
            "--no-local-models" => args.local_models = false,
            "--rerank" => args.rerank = true,
            "--answerer" => {
                args.answerer = match value()?.as_str() {
                    "auto" => Answerer::Auto,
                    "reader" => Answerer::Reader,
                    "extractive" => Answerer::Extractive,
                    "local" => Answerer::Local,
                    other => {
                        return Err(format!(
                            "--answerer {other:?}: auto, reader, extractive or local"
                        ));
                    }
                }
            }
            "--help" | "-h" => {
                return Err("usage: quickstart [--docs PATH] [--question TEXT] \
                     [--data DIR | --memory] [--no-local-models] [--rerank] \
                     [--answerer auto|reader|extractive|local]"
                    .to_owned());
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
    let t = Instant::now();
    let models = local_models(args.local_models, args.rerank, args.answerer).await?;
    let mut builder = Rag::builder().embedder_arc(models.embedder.clone());
    if let Some(chunker) = &models.chunker {
        builder = builder.chunker_arc(chunker.clone());
    }
    if let Some(dir) = &args.data {
        let dir = dir.join(store_dir_name(models.embedder.as_ref()));
        let config = LanceConfig::new(dir.to_string_lossy(), models.embedder.dimensions());
        let store = LanceVectorStore::open(config).await?;
        println!("store: LanceDB in {}", dir.display());
        builder = builder.store(store);
    } else {
        println!("store: in memory");
    }
    println!("embedder: {}", models.embedder.model_id());
    match models.reranker {
        Some((id, reranker)) => {
            println!("reranker: {id}");
            builder = builder.reranker_arc(reranker);
        }
        None => println!("reranker: none"),
    }
    let mut answer_tokens = 512;
    // Kept alive until the answer is printed: the reader's llama-server.
    let mut _reader = None;
    match (llm_from_env()?, models.chat) {
        (Some(llm), _) => {
            println!("answerer: {} (from the environment)", llm.model_id());
            builder = builder.llm_arc(llm);
        }
        (None, Some(chat)) => {
            println!("answerer: {} (local, candle)", chat.model_id());
            // A 135M-parameter model says what it can in a few sentences.
            answer_tokens = 200;
            builder = builder.llm_arc(chat);
        }
        (None, None) if args.answerer == Answerer::Extractive || !args.local_models => {
            println!("answerer: extractive (the best sentences, quoted)");
        }
        (None, None) => {
            let dir = rag::local::LocalModels::from_env().map(|m| m.dir().to_owned());
            let started = match &dir {
                Ok(dir) => rag_server::llama::start_reader(dir).await?,
                Err(e) => Err(e.to_string()),
            };
            match started {
                Ok((server, llm)) => {
                    println!(
                        "answerer: {} (the local reader on llama-server, {})",
                        llm.model_id(),
                        server.base_url()
                    );
                    builder = builder.llm_arc(llm);
                    _reader = Some(server);
                }
                Err(why) if args.answerer == Answerer::Reader => {
                    return Err(format!("--answerer reader: {why}").into());
                }
                Err(why) => println!(
                    "answerer: extractive (the best sentences, quoted): no local reader: {why}"
                ),
            }
        }
    }
    println!("models loaded in {}", ms(t.elapsed()));
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
    let answer = rag
        .ask(Ask::new(args.question.as_str()).answer_tokens(answer_tokens))
        .await?;
    println!("\nQ: {}", args.question);
    println!("A: {}\n", answer.text);
    if answer.extractive {
        println!(
            "answered by: {} (sentences quoted from the sources)",
            answer.model
        );
    } else {
        println!("answered by: {}", answer.model);
    }
    println!("Citations:");
    if answer.citations.is_empty() {
        println!("  (the answer cites no source)");
    }
    for c in &answer.citations {
        println!(
            "  [{}] {} bytes {}..{}",
            c.number, c.source, c.byte_range.start, c.byte_range.end
        );
    }
    println!("Sources given to the model:");
    for s in &answer.sources {
        println!("  [{}] {}: {}", s.number, s.source, snippet(&s.text, 100));
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
