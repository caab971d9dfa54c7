//! The conformance kit against a real Qdrant server.

mod common;

use rag_core::Distance;
use rag_core::testkit::vector_store;
use rag_store_qdrant::{FieldIndex, HnswConfig, QdrantConfig, Tenancy};

async fn run_kit(test: &str, cfg: impl FnOnce(QdrantConfig) -> QdrantConfig) {
    let Some(url) = common::qdrant_url(test) else {
        return;
    };
    let store = common::store(&url, test, cfg).await;
    vector_store::run_all(&store).await;
    common::drop_collections(&store).await;
}

/// One collection, namespaces as an `is_tenant` payload field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_kit_payload_tenancy_cosine() {
    run_kit("kit_payload", |c| c).await;
}

/// A collection per namespace, dot product.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_kit_collection_tenancy_dot() {
    run_kit("kit_collection", |c| {
        c.with_tenancy(Tenancy::Collection)
            .with_distance(Distance::Dot)
    })
    .await;
}

/// Euclidean, upserts split into many requests (batch size 1), and no
/// global HNSW graph (`m = 0`, per-tenant graphs only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_kit_euclidean_small_batches() {
    run_kit("kit_l2", |c| {
        c.with_distance(Distance::Euclidean)
            .with_batch_size(1)
            .with_hnsw(HnswConfig::default().with_m(0))
    })
    .await;
}

/// Every filter again with payload indexes on the filtered fields: Qdrant
/// then answers conditions from its indexes, which must agree with the
/// reference evaluator too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_kit_with_payload_indexes() {
    run_kit("kit_indexed", |c| {
        c.with_indexed_field("team", FieldIndex::Keyword)
            .with_indexed_field("year", FieldIndex::Float)
            .with_indexed_field("tags", FieldIndex::Keyword)
            .with_indexed_field("draft", FieldIndex::Bool)
            .with_indexed_field("score", FieldIndex::Float)
            .with_indexed_field("城市", FieldIndex::Keyword)
    })
    .await;
}
