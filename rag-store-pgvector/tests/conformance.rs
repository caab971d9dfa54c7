//! The conformance kit against a real PostgreSQL with pgvector.

mod common;

use rag_core::Distance;
use rag_core::testkit::{session_store, vector_store};
use rag_store_pgvector::{PgSessionConfig, PgSessionStore, PgVectorConfig, VectorType};

async fn run_kit(test: &str, cfg: PgVectorConfig) {
    let Some(url) = common::pg_url(test) else {
        return;
    };
    let store = common::store(&url, test, cfg).await;
    vector_store::run_all(&store).await;
    let prefix = store.config().table_prefix.clone();
    common::drop_tables(store.pool(), &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_kit_cosine() {
    run_kit("kit_cosine", PgVectorConfig::default().with_dimensions(16)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_kit_dot_product() {
    run_kit(
        "kit_dot",
        PgVectorConfig::default()
            .with_dimensions(16)
            .with_distance(Distance::Dot),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_kit_halfvec_euclidean() {
    run_kit(
        "kit_half_l2",
        PgVectorConfig::default()
            .with_dimensions(24)
            .with_distance(Distance::Euclidean)
            .with_vector_type(VectorType::HalfVec),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_kit() {
    let Some(url) = common::pg_url("session_kit") else {
        return;
    };
    let prefix = common::fresh_prefix("sessions");
    let store = PgSessionStore::connect(
        &url,
        PgSessionConfig::default().with_table_prefix(prefix.clone()),
    )
    .await
    .expect("connect");
    session_store::run_all(&store).await;
    common::drop_tables(store.pool(), &prefix).await;
}
