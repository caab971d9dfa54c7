//! Concurrency, faults, HNSW behaviour and migrations against a real server.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use rag_core::testkit::fresh_namespace;
use rag_core::testkit::vector_store::{doc_chunks, random_unit, unit};
use rag_core::{Chunk, DocumentId, EmbeddedChunk, Error, Filter, SearchRequest, VectorStore};
use rag_store_pgvector::{HnswConfig, IterativeScan, PgVectorConfig, PgVectorStore};
use serde_json::json;
use sqlx::Executor as _;
use sqlx::postgres::PgPoolOptions;

/// `n` one-chunk documents `{prefix}{i}` with random vectors.
fn docs(
    prefix: &str,
    range: std::ops::Range<usize>,
    d: usize,
    meta: impl Fn(usize) -> serde_json::Value,
) -> Vec<EmbeddedChunk> {
    range
        .flat_map(|i| {
            let text = format!("document {i} body");
            let mut c = doc_chunks(&format!("{prefix}{i}"), &[text.as_str()], meta(i), d, 0);
            c[0].vector = random_unit(i as u64 + 1, d);
            c
        })
        .collect()
}

/// A pool whose sessions avoid plans other than the HNSW index scan, so a
/// test exercises the index (a small table would otherwise be scanned
/// exactly).
async fn index_only_pool(url: &str) -> sqlx::PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute(
                    "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off",
                )
                .await?;
                Ok(())
            })
        })
        .connect(url)
        .await
        .expect("pool")
}

async fn cleanup(store: &PgVectorStore) {
    let prefix = store.config().table_prefix.clone();
    common::drop_tables(store.pool(), &prefix).await;
}

/// 10 000 chunks upserted in batches while another task searches: no
/// errors on either side, and the final count is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_chunks_while_searching() {
    let Some(url) = common::pg_url("ten_thousand_chunks_while_searching") else {
        return;
    };
    const D: usize = 32;
    let store =
        Arc::new(common::store(&url, "tenk", PgVectorConfig::default().with_dimensions(D)).await);
    let ns = fresh_namespace("tenk");
    let done = Arc::new(AtomicBool::new(false));
    let searches = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (store, ns, done, searches) =
            (store.clone(), ns.clone(), done.clone(), searches.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !done.load(Ordering::Relaxed) {
                let mut req = SearchRequest::dense(random_unit(i, D), 10);
                if i.is_multiple_of(2) {
                    req = req.with_filter(Filter::eq("bucket", (i % 7) as i64));
                }
                let hits = store.search(&ns, req).await.expect("search during upserts");
                assert!(hits.len() <= 10);
                if i.is_multiple_of(5) {
                    store
                        .search(&ns, SearchRequest::keyword("document body", 5))
                        .await
                        .expect("keyword search during upserts");
                }
                searches.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    for b in 0..20 {
        let batch = docs(
            "doc",
            b * 500..(b + 1) * 500,
            D,
            |i| json!({"bucket": i % 7}),
        );
        store.upsert(&ns, &batch).await.expect("batch upsert");
    }
    done.store(true, Ordering::Relaxed);
    reader.await.expect("reader task");
    assert_eq!(
        store.count(&ns).await.expect("count"),
        10_000,
        "every chunk landed exactly once"
    );
    assert!(searches.load(Ordering::Relaxed) > 0, "the reader ran");
    let listed = store.list_documents(&ns, None, 20_000).await.expect("list");
    assert_eq!(listed.len(), 10_000);
    cleanup(&store).await;
}

/// A reader never sees a half-replaced document: while a writer replaces a
/// 40-chunk document back and forth between two versions, every read of it
/// returns 40 chunks of one version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_half_a_document() {
    let Some(url) = common::pg_url("readers_never_see_half_a_document") else {
        return;
    };
    const D: usize = 8;
    let store =
        Arc::new(common::store(&url, "atomic", PgVectorConfig::default().with_dimensions(D)).await);
    let ns = fresh_namespace("atomic");
    let version = |v: u32| {
        let parts: Vec<String> = (0..40).map(|i| format!("v{v} part {i}")).collect();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        doc_chunks("doc", &refs, json!({"v": v}), D, 0)
    };
    store.upsert(&ns, &version(0)).await.expect("v0");
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, ns, done) = (store.clone(), ns.clone(), done.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) {
                let hits = store
                    .search(
                        &ns,
                        SearchRequest::dense(unit(D, 0, 0.0), 100)
                            .with_filter(Filter::eq(rag_core::Field::DocumentId, "doc")),
                    )
                    .await
                    .expect("search");
                assert_eq!(hits.len(), 40, "a whole document, never half");
                let v = hits[0].chunk.metadata["v"].clone();
                assert!(
                    hits.iter().all(|h| h.chunk.metadata["v"] == v),
                    "one version only"
                );
                reads += 1;
            }
            reads
        })
    };
    for v in 1..=30 {
        store.upsert(&ns, &version(v)).await.expect("replace");
    }
    done.store(true, Ordering::Relaxed);
    assert!(reader.await.expect("reader") > 0);
    cleanup(&store).await;
}

/// Killing the connection of an upsert in flight: the error is retryable,
/// and the previous version of the document is intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connection_mid_batch_rolls_back() {
    let Some(url) = common::pg_url("killed_connection_mid_batch_rolls_back") else {
        return;
    };
    const D: usize = 64;
    let store = Arc::new(
        common::store(
            &url,
            "kill",
            PgVectorConfig::default()
                .with_dimensions(D)
                .with_batch_size(50),
        )
        .await,
    );
    let ns = fresh_namespace("kill");
    let old: Vec<EmbeddedChunk> = {
        let parts: Vec<String> = (0..20).map(|i| format!("old part {i}")).collect();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        doc_chunks("big", &refs, json!({"v": 1}), D, 0)
    };
    let old_ids: Vec<_> = old.iter().map(|c| c.chunk.id.clone()).collect();
    store.upsert(&ns, &old).await.expect("old version");

    // A new version big enough to take a while (hundreds of statements).
    let new: Vec<EmbeddedChunk> = {
        let parts: Vec<String> = (0..20_000).map(|i| format!("new part {i}")).collect();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let mut c = doc_chunks("big", &refs, json!({"v": 2}), D, 0);
        for (i, e) in c.iter_mut().enumerate() {
            e.vector = random_unit(i as u64, D);
        }
        c
    };
    let writer = {
        let (store, ns) = (store.clone(), ns.clone());
        tokio::spawn(async move { store.upsert(&ns, &new).await })
    };
    // From another connection: find the backend inserting into our table,
    // then terminate it.
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("admin");
    let table = store.table().to_owned();
    let mut killed = false;
    for _ in 0..2_000 {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() \
             AND state <> 'idle' AND query LIKE 'INSERT INTO ' || $1 || ' %'",
        )
        .bind(&table)
        .fetch_optional(&admin)
        .await
        .expect("pg_stat_activity");
        if let Some(pid) = pid {
            let ok: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .fetch_one(&admin)
                .await
                .expect("terminate");
            killed = ok;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(killed, "the upsert's backend was found and terminated");
    let res = writer.await.expect("writer task");
    let err = res.expect_err("an upsert whose connection was killed must fail");
    assert!(
        err.is_retryable(),
        "a lost connection is retryable: {err:?}"
    );
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");

    // The previous version is intact, and the store still works.
    assert_eq!(
        store.count(&ns).await.expect("count after kill"),
        20,
        "old version intact"
    );
    let got: Vec<Chunk> = store.get_chunks(&ns, &old_ids).await.expect("get");
    assert_eq!(got.len(), 20);
    assert!(
        got.iter()
            .all(|c| c.metadata["v"] == json!(1) && c.text.starts_with("old part"))
    );
    let hashes = store
        .document_hashes(&ns, &[DocumentId::new("big").expect("id")])
        .await
        .expect("hashes");
    assert_eq!(hashes.len(), 1);
    cleanup(&store).await;
}

/// The server unreachable: connect fails with a retryable error that does
/// not reveal the password.
#[tokio::test]
async fn unreachable_server_is_retryable_and_redacted() {
    let cfg = PgVectorConfig::default().with_pool(
        rag_store_pgvector::PoolConfig::default().with_acquire_timeout(Duration::from_secs(2)),
    );
    // Port 1 on localhost: connection refused.
    let err = PgVectorStore::connect("postgres://u:hunter2@127.0.0.1:1/db", cfg)
        .await
        .expect_err("nothing listens on port 1");
    assert!(err.is_retryable(), "{err:?}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    assert!(!err.to_string().contains("hunter2"));
}

/// Recall@10 against exact search rises with `ef_search`: a tiny
/// `ef_search` with iterative scans off misses neighbours that a large one
/// finds, so the setting reaches the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ef_search_is_honoured() {
    let Some(url) = common::pg_url("ef_search_is_honoured") else {
        return;
    };
    const D: usize = 48;
    const N: usize = 4_000;
    let cfg = PgVectorConfig::default().with_dimensions(D).with_hnsw(
        HnswConfig::default()
            .with_build(8, 16)
            .with_iterative_scan(IterativeScan::Off),
    );
    let pool = index_only_pool(&url).await;
    let store = PgVectorStore::from_pool(pool, cfg.with_table_prefix(common::fresh_prefix("efs")))
        .await
        .expect("store");
    let ns = fresh_namespace("efs");
    store
        .upsert(&ns, &docs("d", 0..N, D, |_| json!({})))
        .await
        .expect("upsert");
    let vectors: Vec<Vec<f32>> = (0..N).map(|i| random_unit(i as u64 + 1, D)).collect();
    let (mut low, mut high) = (0usize, 0usize);
    let queries = 30;
    for q in 0..queries {
        let query = random_unit(1_000_000 + q, D);
        let mut exact: Vec<(f32, usize)> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (v.iter().zip(&query).map(|(a, b)| a * b).sum::<f32>(), i))
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let truth: std::collections::HashSet<String> =
            exact[..10].iter().map(|(_, i)| format!("d{i}")).collect();
        let recall = |hits: Vec<rag_core::ScoredChunk>| {
            hits.iter()
                .filter(|h| truth.contains(h.chunk.document_id.as_str()))
                .count()
        };
        low += recall(
            store
                .search_with_ef(&ns, SearchRequest::dense(query.clone(), 10), 1)
                .await
                .expect("ef 1"),
        );
        high += recall(
            store
                .search_with_ef(&ns, SearchRequest::dense(query, 10), 400)
                .await
                .expect("ef 400"),
        );
    }
    let (low, high) = (
        low as f64 / (10 * queries) as f64,
        high as f64 / (10 * queries) as f64,
    );
    eprintln!("recall@10: ef_search 1 -> {low}, ef_search 400 -> {high}");
    assert!(high >= 0.9, "recall@10 with ef_search 400 is {high}");
    assert!(
        low < high,
        "ef_search 1 (recall {low}) must recall less than 400 (recall {high})"
    );
    for bad in [0, 1001] {
        let e = store
            .search_with_ef(&ns, SearchRequest::dense(random_unit(1, D), 10), bad)
            .await;
        assert!(
            matches!(e, Err(Error::InvalidInput { .. })),
            "ef_search {bad}: {e:?}"
        );
    }
    cleanup(&store).await;
}

/// A selective filter still fills `top_k` through the HNSW index with
/// iterative scans; without them the same plan comes up short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iterative_scan_fills_top_k_under_selective_filter() {
    let Some(url) = common::pg_url("iterative_scan_fills_top_k") else {
        return;
    };
    const D: usize = 32;
    const N: usize = 5_000;
    let pool = index_only_pool(&url).await;
    let prefix = common::fresh_prefix("iter");
    let base = PgVectorConfig::default()
        .with_dimensions(D)
        .with_table_prefix(prefix.clone());
    let relaxed = PgVectorStore::from_pool(pool.clone(), base.clone())
        .await
        .expect("store");
    let off = PgVectorStore::from_pool(
        pool.clone(),
        base.with_hnsw(
            HnswConfig::default()
                .with_ef_search(40)
                .with_iterative_scan(IterativeScan::Off),
        ),
    )
    .await
    .expect("store");
    let ns = fresh_namespace("iter");
    // 30 rare documents (0.6 %), anywhere in the space.
    relaxed
        .upsert(&ns, &docs("d", 0..N, D, |i| json!({"rare": i % 167 == 0})))
        .await
        .expect("upsert");
    let rare = Filter::eq("rare", true);
    let mut short = 0;
    for q in 0..5 {
        let req = SearchRequest::dense(random_unit(777 + q, D), 20).with_filter(rare.clone());
        let hits = relaxed.search(&ns, req.clone()).await.expect("relaxed");
        assert_eq!(
            hits.len(),
            20,
            "iterative scan fills top_k under a selective filter"
        );
        assert!(hits.iter().all(|h| h.chunk.metadata["rare"] == json!(true)));
        assert!(
            hits.windows(2).all(|w| w[0].score >= w[1].score),
            "re-sorted by distance"
        );
        if off.search(&ns, req).await.expect("off").len() < 20 {
            short += 1;
        }
    }
    assert!(
        short > 0,
        "without iterative scans the filtered index scan comes up short"
    );
    common::drop_tables(&pool, &prefix).await;
}

/// Migrations are idempotent, safe to run concurrently, and refuse a table
/// created with another layout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_idempotent_and_checked() {
    let Some(url) = common::pg_url("migrations_are_idempotent_and_checked") else {
        return;
    };
    let prefix = common::fresh_prefix("mig");
    let cfg = PgVectorConfig::default()
        .with_dimensions(8)
        .with_table_prefix(prefix.clone());
    let stores =
        futures::future::join_all((0..4).map(|_| PgVectorStore::connect(&url, cfg.clone()))).await;
    let store = stores
        .into_iter()
        .map(|s| s.expect("concurrent connect"))
        .next_back()
        .expect("a store");
    store.migrate().await.expect("second migrate is a no-op");
    store.health().await.expect("health");
    let versions: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {prefix}_migrations WHERE component = 'chunks'"
    ))
    .fetch_one(store.pool())
    .await
    .expect("migrations table");
    assert_eq!(versions, 3, "each migration applied once");
    let e = PgVectorStore::connect(&url, cfg.clone().with_dimensions(16)).await;
    assert!(
        matches!(e, Err(Error::Corrupt { .. })),
        "dimension mismatch with the table: {e:?}"
    );
    let e = PgVectorStore::connect(&url, cfg.clone().with_language("no_such_language")).await;
    assert!(
        matches!(
            e,
            Err(Error::InvalidInput { .. }) | Err(Error::Corrupt { .. })
        ),
        "{e:?}"
    );
    let e = PgVectorStore::connect(&url, cfg.with_table_prefix("bad prefix")).await;
    assert!(matches!(e, Err(Error::InvalidInput { .. })), "{e:?}");
    common::drop_tables(store.pool(), &prefix).await;
}
