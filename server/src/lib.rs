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
