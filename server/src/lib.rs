//! `rag_server`: the HTTP server of the `rag` workspace, as a library so
//! that the tests bind it to `127.0.0.1:0`. The binary is `server`
//! (`cargo run -p rag-server --bin server`); see `server/README.md`.

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod error;
pub mod llama;
pub mod openai_compat;
pub mod routes;
pub mod schema;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

pub use config::ServerConfig;
pub use routes::app;
pub use state::AppState;

/// Serves `state` on `listener` until `shutdown` resolves, then lets
/// in-flight requests and streams finish for up to the configured shutdown
/// deadline. Returns whether they all finished in time.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<bool> {
    let deadline = Duration::from_secs(state.config.shutdown_timeout_secs);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = app(state);
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = tx.send(());
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        r = &mut server => { r?; return Ok(true); }
        _ = rx => {}
    }
    tracing::info!(
        deadline_secs = deadline.as_secs(),
        "shutting down: finishing in-flight requests"
    );
    match tokio::time::timeout(deadline, server).await {
        Ok(r) => r.map(|()| true),
        Err(_) => {
            tracing::warn!("shutdown deadline passed with requests still in flight");
            Ok(false)
        }
    }
}

/// Installs the server's log output on standard output:
/// JSON lines (`format` `json`) or readable lines (`pretty`), filtered by
/// `RAG_LOG` (default `info`).
pub fn init_logs(format: &str) {
    use tracing_subscriber::EnvFilter;
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

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
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

/// The whole server process after its configuration is read: builds the
/// pipeline, listens on `config.bind`, serves until Ctrl-C or SIGTERM,
/// finishes in-flight requests and saves in-memory data configured to be
/// saved. Exit codes: 0 after a clean stop, 78 when it cannot start (a
/// backend, a model or the address), 1 when serving or saving failed. Used
/// by the `server` binary and by `rag serve`; returns the exit code.
pub async fn run(config: ServerConfig) -> u8 {
    let bind = config.bind.clone();
    let state = match AppState::build(config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("cannot start: {e}");
            return 78;
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
            return 78;
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
    let finished = match serve(listener, state, shutdown_signal()).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            return 1;
        }
    };
    if let Err(e) = persisted.persist() {
        tracing::error!(error = %e, "could not persist the store");
        return 1;
    }
    tracing::info!(clean = finished, "stopped");
    0
}
