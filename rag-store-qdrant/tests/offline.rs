//! Behaviour that needs no server.

use std::time::Duration;

use rag_core::Error;
use rag_store_qdrant::{QdrantConfig, QdrantStore};

/// An unreachable server is a retryable backend error, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_a_retryable_error() {
    // Port 1 on loopback: nothing listens there.
    let cfg = QdrantConfig::new("http://127.0.0.1:1", 4)
        .with_api_key("sk-never-printed")
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(2));
    let e = QdrantStore::connect(cfg)
        .await
        .expect_err("nothing listens");
    assert!(e.is_retryable(), "{e:?}");
    assert!(matches!(e, Error::Backend { .. }), "{e:?}");
    assert!(!format!("{e:?} {e}").contains("never-printed"));
}

/// A bad configuration is `InvalidInput` before any connection.
#[tokio::test]
async fn invalid_config_is_invalid_input() {
    let e = QdrantStore::connect(QdrantConfig::new("http://127.0.0.1:1", 0))
        .await
        .expect_err("zero dimensions");
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
}
