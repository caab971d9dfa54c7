//! The embedded reader: llama.cpp's `llama-server` run as a child process on
//! a loopback port, serving the local reader model (Qwen2.5-Coder-0.5B-Instruct,
//! GGUF) to a [`rag::GroundedAnswerer`] through the OpenAI-compatible client.
//!
//! llama.cpp is the engine the field uses for GGUF models on CPUs: on these
//! 2-core machines it reads prompts several times faster than candle, which
//! is what lets a 0.5B model answer in a second or two. Nothing here needs a
//! network: the binary is built by `scripts/services/llama-server` from the
//! `llama-cpp-python` source distribution, the model is fetched by
//! `scripts/fetch-models`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rag::LlmClient;
use rag::openai::{OpenAiChat, OpenAiConfig};

/// The reader model's file under the models directory.
pub const READER_MODEL: &str = "Qwen2.5-Coder-0.5B-Instruct/qwen2.5-coder-0.5b-instruct.gguf";
/// The name the child serves it under.
pub const READER_ALIAS: &str = "qwen2.5-coder-0.5b-instruct";

/// The `llama-server` binary: `RAG_LLAMA_SERVER`, else `llama-server` on
/// `PATH`, else the one `scripts/services/llama-server` builds under
/// `${RAG_CACHE_DIR:-~/.cache/rag}/llama-server/build-*/bin/`.
pub fn find_llama_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RAG_LLAMA_SERVER").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("llama-server");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let cache = std::env::var_os("RAG_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/rag")))?;
    let mut builds: Vec<PathBuf> = std::fs::read_dir(cache.join("llama-server"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin/llama-server"))
        .filter(|p| p.is_file())
        .collect();
    builds.sort();
    builds.pop()
}

/// A `llama-server` child process; killed when dropped.
#[derive(Debug)]
pub struct LlamaServer {
    child: tokio::process::Child,
    base_url: String,
    alias: String,
}

impl LlamaServer {
    /// Starts `bin` serving `model` as `alias` on a free loopback port with
    /// `threads` threads and a context of `context` tokens, and waits (up to
    /// 60 s) until it reports healthy. Its output goes to a log file in the
    /// temporary directory, named in errors.
    pub async fn start(
        bin: &Path,
        model: &Path,
        alias: &str,
        threads: usize,
        context: usize,
    ) -> Result<Self, String> {
        if !model.is_file() {
            return Err(format!("no model file at {}", model.display()));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let log_path = std::env::temp_dir().join(format!("rag-llama-server-{port}.log"));
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
        let err_log = log
            .try_clone()
            .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
        let child = tokio::process::Command::new(bin)
            .arg("-m")
            .arg(model)
            .args(["--alias", alias, "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .args(["-c", &context.to_string(), "-t", &threads.to_string()])
            // One request at a time: the whole context for it, no slot
            // juggling on two cores.
            .args(["--parallel", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut server = Self {
            child,
            base_url: format!("http://127.0.0.1:{port}/v1"),
            alias: alias.to_owned(),
        };
        let health = format!("http://127.0.0.1:{port}/health");
        // reqwest is built without a default TLS crypto provider.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!(
                    "{} exited during startup ({status}); see {}",
                    bin.display(),
                    log_path.display()
                ));
            }
            if client
                .get(&health)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = server.child.start_kill();
        Err(format!(
            "{} did not become healthy within 60 s; see {}",
            bin.display(),
            log_path.display()
        ))
    }

    /// The OpenAI-compatible base URL (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// A chat client for it, with `context` tokens of window.
    pub fn chat(&self, context: usize) -> rag::Result<Arc<dyn LlmClient>> {
        let config = OpenAiConfig::new()
            .with_base_url(&self.base_url)
            .with_chat_model(&self.alias)
            .with_context_window(context);
        Ok(Arc::new(OpenAiChat::new(config)?))
    }
}

/// The embedded reader when its binary and model are both there: the
/// server started on the reader model, and a [`rag::GroundedAnswerer`]
/// over it. `Ok(None)` (with the reason) when either is missing; `Err` when
/// they are there but the server does not start.
pub async fn start_reader(
    models_dir: &Path,
) -> Result<Result<(LlamaServer, Arc<dyn LlmClient>), String>, String> {
    Ok(start_reader_model(models_dir).await?.map(|(server, chat)| {
        (
            server,
            Arc::new(rag::GroundedAnswerer::new(chat)) as Arc<dyn LlmClient>,
        )
    }))
}

/// [`start_reader`] without the grounded answerer: the server and a plain
/// chat client for the reader model (to wrap in a configured
/// [`rag::GroundedAnswerer`] of your own).
pub async fn start_reader_model(
    models_dir: &Path,
) -> Result<Result<(LlamaServer, Arc<dyn LlmClient>), String>, String> {
    let Some(bin) = find_llama_server() else {
        return Ok(Err(
            "no llama-server binary (scripts/services/llama-server builds one; or set RAG_LLAMA_SERVER)"
                .into(),
        ));
    };
    let model = models_dir.join(READER_MODEL);
    if !model.is_file() {
        return Ok(Err(format!(
            "no reader model at {} (run scripts/fetch-models)",
            model.display()
        )));
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server = LlamaServer::start(&bin, &model, READER_ALIAS, threads, 2048).await?;
    let chat = server.chat(2048).map_err(|e| e.to_string())?;
    Ok(Ok((server, chat)))
}
