//! The conformance kit against LanceDB on a temporary directory.

use rag_core::Distance;
use rag_core::testkit::vector_store;
use rag_store_lance::{LanceConfig, LanceVectorStore, VectorIndexConfig};

async fn run_kit(cfg: impl FnOnce(String) -> LanceConfig) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_str().expect("utf-8 path").to_owned();
    let store = LanceVectorStore::open(cfg(path)).await.expect("open");
    vector_store::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_kit_cosine() {
    run_kit(|p| LanceConfig::new(p, 16)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_kit_dot_product() {
    run_kit(|p| LanceConfig::new(p, 16).with_distance(Distance::Dot)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_kit_euclidean_eventual_reads() {
    run_kit(|p| {
        LanceConfig::new(p, 24)
            .with_distance(Distance::Euclidean)
            .with_read_consistency_interval(None)
    })
    .await;
}

/// The kit again with an index from the first write on (threshold 0 is
/// raised to Lance's 256-row training minimum, so the kit's small tables
/// stay exact, but the code path that checks is exercised).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_kit_with_index_threshold_zero() {
    run_kit(|p| {
        LanceConfig::new(p, 16)
            .with_vector_index(VectorIndexConfig::default().with_build_threshold(0))
    })
    .await;
}
