//! The configuration every command shares with the server, the flags that
//! override it, and the pipeline built from it.

use std::path::PathBuf;

use clap::Args;
use rag::Namespace;
use rag_server::{AppState, ServerConfig};

use crate::{Failure, Global};

/// Flags that override the configuration's backends for one command.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Backends (override the configuration)")]
pub(crate) struct Backend {
    /// The vector store: lance, memory, pgvector or qdrant (`store.kind`).
    #[arg(long, value_name = "KIND", value_parser = ["lance", "memory", "pgvector", "qdrant"])]
    pub(crate) store: Option<String>,
    /// LanceDB: its directory; memory: the file it is loaded from and saved to (`store.path`).
    #[arg(long, value_name = "PATH")]
    pub(crate) data: Option<PathBuf>,
    /// pgvector: the PostgreSQL URL; qdrant: the gRPC URL (`store.url`).
    #[arg(long, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// pgvector: the prefix of its tables (`store.table_prefix`).
    #[arg(long, value_name = "PREFIX")]
    pub(crate) table_prefix: Option<String>,
    /// The embedder: auto, local, bge, minilm, hash or openai (`embedder.kind`).
    #[arg(long, value_name = "KIND", value_parser = ["auto", "local", "bge", "minilm", "hash", "openai"])]
    pub(crate) embedder: Option<String>,
    /// Who answers: auto, reader, local, extractive, openai or groq (`llm.kind`).
    #[arg(long, value_name = "KIND", value_parser = ["auto", "reader", "local", "extractive", "openai", "groq"])]
    pub(crate) llm: Option<String>,
    /// Sessions in this PostgreSQL database (`sessions.kind = "postgres"`, `sessions.url`).
    #[arg(long, value_name = "URL")]
    pub(crate) sessions_url: Option<String>,
    /// The prefix of the session tables (`sessions.table_prefix`).
    #[arg(long, value_name = "PREFIX")]
    pub(crate) sessions_prefix: Option<String>,
}

/// What a command needs of the pipeline: commands that never generate
/// leave the models that answer and rerank unloaded (no llama-server child
/// for `rag ingest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Needs {
    /// Chunk, embed and store (ingest, docs, export, import).
    Store,
    /// Everything: retrieval, reranking and answering (ask).
    Answers,
    /// Answers, and sessions kept in a file when the configuration keeps
    /// them in memory (chat).
    Chat,
}

/// Where the command line keeps in-memory sessions when the configuration
/// does not say (`sessions.path`): beside the default store.
pub(crate) const DEFAULT_SESSIONS_FILE: &str = "rag-data/sessions.json";

/// The configuration of `--config` (or `RAG_CONFIG`, `RAG_SERVER_CONFIG`),
/// the `RAG_*` variables and the flags, in that order. A file that does not
/// exist or does not parse is bad usage.
pub(crate) fn load_config(global: &Global, b: &Backend) -> Result<ServerConfig, Failure> {
    load(global, b, false)
}

/// [`load_config`]; `keep_sessions` sets the default sessions file even
/// when it does not exist yet (a chat creates it; other commands only read
/// an existing one).
fn load(global: &Global, b: &Backend, keep_sessions: bool) -> Result<ServerConfig, Failure> {
    if let Some(p) = &global.config
        && !p.is_file()
    {
        return Err(Failure::Usage(format!(
            "--config {}: no such file",
            p.display()
        )));
    }
    let mut c = ServerConfig::load(global.config.as_deref())
        .map_err(|e| Failure::Usage(format!("invalid configuration: {e}")))?;
    if let Some(k) = &b.store {
        c.store.kind = k.clone();
    }
    if let Some(p) = &b.data {
        c.store.path = Some(p.clone());
    }
    if let Some(u) = &b.url {
        c.store.url = Some(u.clone());
    }
    if let Some(p) = &b.table_prefix {
        c.store.table_prefix = Some(p.clone());
    }
    if let Some(k) = &b.embedder {
        c.embedder.kind = k.clone();
    }
    if let Some(k) = &b.llm {
        c.llm.kind = k.clone();
    }
    if let Some(u) = &b.sessions_url {
        c.sessions.kind = "postgres".into();
        c.sessions.url = Some(u.clone());
    }
    if let Some(p) = &b.sessions_prefix {
        c.sessions.table_prefix = Some(p.clone());
    }
    if c.sessions.resolved_kind(&c.store) == "memory"
        && c.sessions.path.is_none()
        && (keep_sessions || std::path::Path::new(DEFAULT_SESSIONS_FILE).is_file())
    {
        c.sessions.path = Some(DEFAULT_SESSIONS_FILE.into());
    }
    c.validate()
        .map_err(|e| Failure::Usage(format!("invalid configuration: {e}")))?;
    Ok(c)
}

/// The pipeline of the configuration, with what `needs` asks for.
pub(crate) async fn open(
    global: &Global,
    b: &Backend,
    needs: Needs,
) -> Result<(AppState, ServerConfig), Failure> {
    let mut config = load(global, b, needs == Needs::Chat)?;
    if needs == Needs::Store {
        config.llm.kind = "extractive".into();
        config.reranker.kind = "none".into();
    }
    let shown = config.clone();
    // The server's logs are for the server; here the failure is the message.
    let state = AppState::build(config)
        .await
        .map_err(|e| Failure::Failed(format!("cannot open the pipeline: {e}")))?;
    Ok((state, shown))
}

/// Parses `--namespace`.
pub(crate) fn namespace(s: &str) -> Result<Namespace, String> {
    Namespace::new(s).map_err(|e| e.to_string())
}

/// Where the configured store lives, in words.
fn store_location(c: &ServerConfig) -> String {
    match c.store.kind.as_str() {
        "lance" => match &c.store.path {
            Some(p) => p.display().to_string(),
            None => "rag-data/<embedder>-<dimensions>".into(),
        },
        "memory" => match &c.store.path {
            Some(p) => format!("{} (loaded and saved)", p.display()),
            None => "in memory only: lost when the command ends".into(),
        },
        "pgvector" | "qdrant" => c
            .store
            .url
            .as_deref()
            .map(redact_url)
            .unwrap_or_else(|| "the default URL".into()),
        other => other.into(),
    }
}

/// A URL without its password.
fn redact_url(u: &str) -> String {
    match (u.find("://"), u.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &u[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &u[..scheme + 3], &u[at..])
        }
        _ => u.to_owned(),
    }
}

/// `rag config check`.
pub(crate) async fn check(
    global: &Global,
    b: &Backend,
    connect: bool,
    json: bool,
) -> crate::Outcome {
    let c = load_config(global, b)?;
    let file = global
        .config
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(none: defaults and RAG_* variables)".into());
    let sessions = match c.sessions.resolved_kind(&c.store) {
        "postgres" => format!(
            "postgres ({})",
            c.sessions
                .url
                .as_deref()
                .map(redact_url)
                .unwrap_or_else(|| "the store's database".into())
        ),
        _ => format!(
            "memory, saved to {}",
            c.sessions
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
    };
    let mut connected = None;
    if connect {
        let (state, _) = open(global, b, Needs::Store).await?;
        let rag = &state.rag;
        rag.store()
            .health()
            .await
            .map_err(|e| format!("store: {e}"))?;
        connected = Some(format!(
            "{} ({} dimensions)",
            rag.embedder().model_id(),
            rag.embedder().dimensions()
        ));
    }
    if json {
        let v = serde_json::json!({
            "valid": true,
            "config_file": global.config,
            "store": {"kind": c.store.kind, "location": store_location(&c)},
            "sessions": sessions,
            "embedder": c.embedder.kind,
            "llm": c.llm.kind,
            "reranker": c.reranker.kind,
            "bind": c.bind,
            "api_keys": c.keys.len(),
            "connected_embedder": connected,
        });
        println!("{v:#}");
        return Ok(());
    }
    let rows = [
        ("configuration", file),
        (
            "store",
            format!("{} at {}", c.store.kind, store_location(&c)),
        ),
        ("sessions", sessions),
        ("embedder", c.embedder.kind.clone()),
        ("answers", c.llm.kind.clone()),
        ("reranker", c.reranker.kind.clone()),
        (
            "server",
            format!(
                "{} ({} API keys{})",
                c.bind,
                c.keys.len(),
                if c.keys.is_empty() { ": open" } else { "" }
            ),
        ),
    ];
    for (k, v) in rows {
        println!("{k:<14} {v}");
    }
    if let Some(e) = connected {
        println!("{:<14} {e}; the store answers", "connected");
    }
    crate::output::ok("the configuration is valid");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://rag:s3cret@db:5432/rag"),
            "postgres://rag:***@db:5432/rag"
        );
        assert_eq!(redact_url("http://127.0.0.1:6334"), "http://127.0.0.1:6334");
    }
}
