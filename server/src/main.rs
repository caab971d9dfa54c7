//! The `rag` HTTP server.
//!
//! ```text
//! cargo run -p rag-server --bin server                       # embedded default, offline
//! cargo run -p rag-server --bin server -- --config server.toml
//! cargo run -p rag-server --bin server -- hash-key MY-SECRET  # prints sha256:<hex> for [[keys]]
//! echo MY-SECRET | cargo run -p rag-server --bin server -- hash-key -   # the same, from stdin
//! cargo run -p rag-server --bin server -- check-config --config server.toml
//! ```
//!
//! Configuration: an optional TOML file (`--config` or `RAG_SERVER_CONFIG`),
//! then `RAG_*` environment variables; see `server/README.md`.

#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use rag_server::{AppState, ServerConfig};
use tracing_subscriber::EnvFilter;

const USAGE: &str =
    "usage: server [--config FILE] | server check-config [--config FILE] | server hash-key KEY|-";

fn init_logs(format: &str) {
    let filter = EnvFilter::try_from_env("RAG_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if format == "pretty" {
        builder.init();
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config_path = std::env::var_os("RAG_SERVER_CONFIG").map(PathBuf::from);
    let mut command = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => match args.next() {
                Some(p) => config_path = Some(p.into()),
                None => {
                    eprintln!("--config needs a file\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "hash-key" => {
                let Some(mut key) = args.next() else {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                };
                // `-` reads the key from standard input, keeping it out of
                // the shell history and the process list.
                if key == "-" {
                    key.clear();
                    if std::io::stdin().read_line(&mut key).is_err() {
                        eprintln!("cannot read the key from standard input");
                        return ExitCode::from(2);
                    }
                    key = key.trim_end_matches(['\r', '\n']).to_owned();
                }
                println!("{}", rag_server::auth::hash_key(&key));
                return ExitCode::SUCCESS;
            }
            "check-config" => command = Some("check-config"),
            "--help" | "-h" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }

    let config = match ServerConfig::load(config_path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(78);
        }
    };
    if command == Some("check-config") {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    init_logs(&config.log_format);
    let bind = config.bind.clone();
    let state = match AppState::build(config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("cannot start: {e}");
            return ExitCode::from(78);
        }
    };
    if state.keys.is_empty() {
        tracing::warn!(
            "no API keys configured: every request is allowed (set [[keys]] or RAG_API_KEYS)"
        );
    }
    let listener = match tokio::net::TcpListener::bind(&bind).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {bind}: {e}");
            return ExitCode::from(78);
        }
    };
    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or(bind),
        store = %state.config.store.kind,
        embedder = %state.config.embedder.kind,
        llm = %state.llm_kind,
        "listening"
    );
    let persisted = state.clone();
    let finished = match rag_server::serve(listener, state, shutdown_signal()).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = persisted.persist() {
        tracing::error!(error = %e, "could not persist the store");
        return ExitCode::FAILURE;
    }
    tracing::info!(clean = finished, "stopped");
    ExitCode::SUCCESS
}
