//! PostgreSQL + pgvector: dense search p50/p95 at 100k × 384 chunks through
//! the HNSW index, via `PgVectorStore` and via the same SQL issued directly
//! through sqlx (same `ef_search`, same iterative-scan setting), with
//! recall@10 against exact search reported beside it; and upsert throughput.
//!
//! Needs a server: `RAG_BENCH_PG_URL=postgres://… cargo bench -p rag-benches
//! --features pgvector --bench pgvector` (for example the URL `scripts/services/postgres start`
//! prints). Without it the bench prints a notice and measures nothing. The
//! 100k-chunk table (prefix `bench_pg_100k`) is kept between runs and
//! reused when complete, since loading it takes minutes.
//!
//! Data: clustered unit vectors (1 000 centroids plus noise), closer to real
//! embeddings than uniform noise, on which HNSW recall is meaningless;
//! queries are perturbed stored vectors.

use std::time::Instant;

use criterion::{Criterion, Throughput};
use rag::pgvector::sqlx::{self, Row};
use rag::pgvector::{PgVectorConfig, PgVectorStore, PoolConfig};
use rag::{EmbeddedChunk, Namespace, SearchRequest, VectorStore};
use rag_benches::{Rng, bench_chunk as chunk, clustered_dataset, exact_top10, percentile, perturb};

const DIMS: usize = 384;
const N: usize = 100_000;
const QUERIES: usize = 300;

fn main() {
    let Ok(url) = std::env::var("RAG_BENCH_PG_URL") else {
        eprintln!(
            "pgvector bench NOT RUN: set RAG_BENCH_PG_URL (e.g. from scripts/services/postgres start)"
        );
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cfg = PgVectorConfig::default()
        .with_dimensions(DIMS)
        .with_table_prefix("bench_pg_100k")
        .with_pool(PoolConfig::default().with_max_connections(4));
    let ef = cfg.hnsw.ef_search;
    let store = rt
        .block_on(PgVectorStore::connect(&url, cfg))
        .expect("connect");
    let ns = Namespace::new("bench").expect("ns");
    let data = clustered_dataset(N, DIMS);

    // Load (or reuse) 100k chunks; the load rate is upsert throughput with
    // the HNSW and GIN indexes maintained.
    let have = rt.block_on(store.count(&ns)).expect("count");
    if have != N {
        rt.block_on(store.delete_namespace(&ns)).expect("reset");
        let start = Instant::now();
        for (b, part) in data.chunks(1_000).enumerate() {
            let batch: Vec<EmbeddedChunk> = part
                .iter()
                .enumerate()
                .map(|(i, v)| chunk(b * 1_000 + i, v.clone()))
                .collect();
            rt.block_on(store.upsert(&ns, &batch)).expect("upsert");
        }
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "bulk load: {N} chunks × {DIMS} in {secs:.1} s = {:.0} chunks/s (batches of 1000, indexes maintained)",
            N as f64 / secs
        );
    }

    let mut rng = Rng::new(99);
    let queries: Vec<Vec<f32>> = (0..QUERIES)
        .map(|_| {
            let i = rng.below(N);
            perturb(&mut rng, &data[i], 0.05)
        })
        .collect();

    // Direct sqlx baseline: the store's own SQL text, on a pool whose
    // sessions carry the same hnsw settings.
    let sql = store.dense_sql("TRUE");
    let direct = rt
        .block_on(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        sqlx::Executor::execute(
                            &mut *conn,
                            format!(
                                "SET hnsw.ef_search = {ef}; SET hnsw.iterative_scan = relaxed_order"
                            )
                            .as_str(),
                        )
                        .await?;
                        Ok(())
                    })
                })
                .connect(&url),
        )
        .expect("direct pool");
    let direct_query = |q: &[f32]| {
        let sql = sql.clone();
        let q = rag::pgvector::pgvector::Vector::from(q.to_vec());
        let direct = direct.clone();
        async move {
            sqlx::query(&sql)
                .bind(q)
                .bind("bench")
                .bind(10_i64)
                .fetch_all(&direct)
                .await
                .expect("direct query")
                .iter()
                .map(|r| r.get::<String, _>("document_id"))
                .collect::<Vec<_>>()
        }
    };

    // Warm up both paths (statement caches, buffers).
    for q in queries.iter().take(30) {
        rt.block_on(store.search(&ns, SearchRequest::dense(q.clone(), 10)))
            .expect("warm");
        rt.block_on(direct_query(q));
    }

    let mut store_t = Vec::with_capacity(QUERIES);
    let mut direct_t = Vec::with_capacity(QUERIES);
    let mut hits_store = 0usize;
    let mut hits_direct = 0usize;
    // Exact answers first, so the brute force does not sit between timed
    // queries; the two paths alternate which goes first.
    let truths: Vec<std::collections::HashSet<String>> = queries
        .iter()
        .map(|q| {
            exact_top10(&data, q)
                .into_iter()
                .map(|i| format!("doc{i:06}"))
                .collect()
        })
        .collect();
    for (n, (q, truth)) in queries.iter().zip(&truths).enumerate() {
        for first_store in [n % 2 == 0, n % 2 != 0] {
            if first_store {
                let t = Instant::now();
                let got = rt
                    .block_on(store.search(&ns, SearchRequest::dense(q.clone(), 10)))
                    .expect("search");
                store_t.push(t.elapsed());
                hits_store += got
                    .iter()
                    .filter(|h| truth.contains(h.chunk.document_id.as_str()))
                    .count();
            } else {
                let t = Instant::now();
                let ids = rt.block_on(direct_query(q));
                direct_t.push(t.elapsed());
                hits_direct += ids.iter().filter(|id| truth.contains(id.as_str())).count();
            }
        }
    }
    store_t.sort();
    direct_t.sort();
    let (sp50, sp95) = (percentile(&store_t, 0.5), percentile(&store_t, 0.95));
    let (dp50, dp95) = (percentile(&direct_t, 0.5), percentile(&direct_t, 0.95));
    eprintln!(
        "dense top-10 at {N} × {DIMS}, ef_search {ef}, {QUERIES} queries:\n  \
         PgVectorStore  p50 {sp50:?}  p95 {sp95:?}  recall@10 {:.3}\n  \
         direct sqlx    p50 {dp50:?}  p95 {dp95:?}  recall@10 {:.3}\n  \
         p95 ratio store/direct {:.2}",
        hits_store as f64 / (10 * QUERIES) as f64,
        hits_direct as f64 / (10 * QUERIES) as f64,
        sp95.as_secs_f64() / dp95.as_secs_f64()
    );

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("pgvector_100k_384");
    g.sample_size(50);
    let mut i = 0usize;
    g.bench_function("store_dense_top10", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % QUERIES;
            store.search(&ns, SearchRequest::dense(queries[i].clone(), 10))
        })
    });
    let mut j = 0usize;
    g.bench_function("direct_sqlx_dense_top10", |b| {
        b.to_async(&rt).iter(|| {
            j = (j + 1) % QUERIES;
            direct_query(&queries[j])
        })
    });
    let filtered = rag::Filter::eq("group", 3);
    let mut k = 0usize;
    g.bench_function("store_dense_top10_filter_10pct", |b| {
        b.to_async(&rt).iter(|| {
            k = (k + 1) % QUERIES;
            store.search(
                &ns,
                SearchRequest::dense(queries[k].clone(), 10).with_filter(filtered.clone()),
            )
        })
    });
    // Upsert throughput: replacing 500 one-chunk documents per call in a
    // scratch namespace of the same table.
    let scratch = Namespace::new("bench_upsert").expect("ns");
    let batch: Vec<EmbeddedChunk> = (0..500).map(|i| chunk(i, data[i].clone())).collect();
    g.throughput(Throughput::Elements(500));
    g.sample_size(10);
    g.bench_function("upsert_500_chunks", |b| {
        b.to_async(&rt).iter(|| store.upsert(&scratch, &batch))
    });
    g.finish();
    rt.block_on(store.delete_namespace(&scratch))
        .expect("cleanup");
    c.final_summary();
}
