//! Shared by the Qdrant integration tests: the server URL and stores on
//! fresh collections.

#![allow(dead_code, unreachable_pub)]

use rag_store_qdrant::{QdrantConfig, QdrantStore, Tenancy};

/// `RAG_TEST_QDRANT_URL` (the gRPC URL), or `None` (with a notice) outside
/// CI. Under CI a test that runs without it fails; `scripts/test` does not
/// run these tests at all when it has no Qdrant server, and says so by name.
pub fn qdrant_url(test: &str) -> Option<String> {
    rag_core::testkit::service_url(
        "RAG_TEST_QDRANT_URL",
        test,
        "scripts/test starts one when a qdrant binary is on PATH or in QDRANT_BIN; \
         or scripts/services/qdrant start DIR",
    )
}

/// A fresh collection name, so parallel tests never share collections.
pub fn fresh_collection(test: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t_{test}_{}", &id[..10])
}

/// A store on a fresh collection (or collection prefix).
pub async fn store(
    url: &str,
    test: &str,
    cfg: impl FnOnce(QdrantConfig) -> QdrantConfig,
) -> QdrantStore {
    let base = QdrantConfig::new(url, 16).with_collection(fresh_collection(test));
    QdrantStore::connect(cfg(base))
        .await
        .expect("connect to RAG_TEST_QDRANT_URL")
}

/// Drops the store's collections (best effort).
pub async fn drop_collections(store: &QdrantStore) {
    let prefix = store.config().collection.clone();
    let Ok(list) = store.client().list_collections().await else {
        return;
    };
    for c in list.collections {
        let own = match store.config().tenancy {
            Tenancy::Collection => c.name.starts_with(&format!("{prefix}_")),
            _ => c.name == prefix,
        };
        if own {
            let _ = store.client().delete_collection(c.name).await;
        }
    }
}
