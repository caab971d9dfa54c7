//! Shared by the pgvector integration tests: the server URL, and stores on
//! fresh tables.

#![allow(dead_code, unreachable_pub)]

use rag_store_pgvector::{PgPool, PgVectorConfig, PgVectorStore};

/// `RAG_TEST_PG_URL`, or `None` (with a notice) outside CI. Under CI a
/// missing server is a failure, not a skip.
pub fn pg_url(test: &str) -> Option<String> {
    rag_core::testkit::service_url(
        "RAG_TEST_PG_URL",
        test,
        "scripts/test starts a server; or scripts/services/postgres start DIR",
    )
}

/// A fresh table prefix, so parallel tests and test binaries never share
/// tables.
pub fn fresh_prefix(test: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t_{test}_{}", &id[..10])
}

/// A store on fresh tables.
pub async fn store(url: &str, test: &str, cfg: PgVectorConfig) -> PgVectorStore {
    PgVectorStore::connect(url, cfg.with_table_prefix(fresh_prefix(test)))
        .await
        .expect("connect to RAG_TEST_PG_URL")
}

/// Drops a prefix's tables (best effort), so runs against a long-lived
/// server leave nothing behind.
pub async fn drop_tables(pool: &PgPool, prefix: &str) {
    for t in ["chunks", "messages", "sessions", "migrations"] {
        let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {prefix}_{t} CASCADE"))
            .execute(pool)
            .await;
    }
    let _ = sqlx::query(&format!("DROP SEQUENCE IF EXISTS {prefix}_session_seq"))
        .execute(pool)
        .await;
}
