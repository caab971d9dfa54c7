//! `rag_server`: the HTTP server of the `rag` workspace, as a library so
//! that the tests bind it to `127.0.0.1:0`. The binary is `server`
//! (`cargo run -p rag-server --bin server`); see `server/README.md`.

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod error;
#[cfg(feature = "fuzz")]
pub mod fuzz;
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
///
/// Connections are served by hyper directly (HTTP/1.1 and HTTP/2) rather
/// than by `axum::serve`, which sets no timer: without one a client that
/// never finishes its request headers holds its connection for ever. Here
/// the headers must arrive within `header_timeout_secs`; a body that
/// trickles in is bounded by the request deadline.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<bool> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt as _;

    let deadline = Duration::from_secs(state.config.shutdown_timeout_secs);
    let header_timeout = Duration::from_secs(state.config.header_timeout_secs);
    // Rate-limit buckets of clients gone quiet are forgotten, so memory
    // follows the clients of the last minute, not every client ever seen.
    let limits = state.limits.clone();
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            limits.sweep();
        }
    });
    let router = app(state);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    // Each connection task holds a clone of `done`; once the listener is
    // closed and every clone dropped, `all_done` resolves.
    let (done, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, as
                    // axum::serve does, instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo::<SocketAddr>(peer));
                req.map(axum::body::Body::new)
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(service);
        let builder = builder.clone();
        let done = done.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            // hyper's timer starts once it knows the protocol: until then a
            // client that sends nothing (or a part of the HTTP/2 preface)
            // is bounded here.
            if tokio::time::timeout(header_timeout, protocol_known(&stream))
                .await
                .map_or(true, |r| r.is_err())
            {
                drop(done);
                return;
            }
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let stopping = async move {
                // The guard `wait_for` returns is not `Send`: drop it here.
                let _ = stop.wait_for(|s| *s).await.map(|_| ());
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopping => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(done);
        });
    }
    drop(listener);
    sweeper.abort();
    tracing::info!(
        deadline_secs = deadline.as_secs(),
        "shutting down: finishing in-flight requests"
    );
    let _ = stop_tx.send(true);
    drop(done);
    if tokio::time::timeout(deadline, all_done.recv())
        .await
        .is_ok()
    {
        Ok(true)
    } else {
        tracing::warn!("shutdown deadline passed with requests still in flight");
        Ok(false)
    }
}

/// Waits until the connection's first bytes tell HTTP/1 from HTTP/2 (whose
/// preface is 24 fixed bytes), without consuming them; an error at EOF.
async fn protocol_known(stream: &tokio::net::TcpStream) -> std::io::Result<()> {
    const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; 24];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if n == buf.len() || buf[..n] != H2_PREFACE[..n] {
            return Ok(());
        }
        // A part of the preface: wait for the rest (peek returns at once
        // while those bytes sit unread).
        tokio::time::sleep(Duration::from_millis(10)).await;
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
