//! LanceDB: dense search p50/p95 at 100k × 384 chunks through the vector
//! index, with and without a filter, via `LanceVectorStore` and via the same
//! query issued directly through lancedb (same table, index parameters,
//! filter string and columns), with recall@10 against exact search beside
//! it; and upsert throughput.
//!
//! `cargo bench -p rag-benches --features lance --bench lance`. The database lives in
//! `RAG_BENCH_LANCE_DIR` (default: `lance-bench` under the system temp
//! directory) and is reused when complete, since loading it takes minutes.
//! `RAG_BENCH_LANCE_INDEX=hnsw` benches IVF-HNSW-SQ instead of IVF-PQ.
//!
//! Data: clustered unit vectors (1 000 centroids plus noise), closer to real
//! embeddings than uniform noise; queries are perturbed stored vectors.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use futures::TryStreamExt;
use rag::lance::lancedb::DistanceType;
use rag::lance::lancedb::query::{ExecutableQuery, QueryBase, Select};
use rag::lance::{LanceConfig, LanceVectorStore, VectorIndexConfig, VectorIndexKind};
use rag::{EmbeddedChunk, Filter, Namespace, SearchRequest, VectorStore};
use rag_benches::{Rng, bench_chunk as chunk, clustered_dataset, percentile, perturb};

const DIMS: usize = 384;
const N: usize = 100_000;
const QUERIES: usize = 200;

fn exact_top10(data: &[Vec<f32>], q: &[f32], keep: impl Fn(usize) -> bool) -> HashSet<String> {
    let mut s: Vec<(f32, usize)> = data
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), i))
        .collect();
    s.select_nth_unstable_by(10, |a, b| b.0.total_cmp(&a.0));
    s.truncate(10);
    s.into_iter().map(|(_, i)| format!("doc{i:06}")).collect()
}

struct Side {
    times: Vec<Duration>,
    hits: usize,
}

impl Side {
    fn report(&mut self, name: &str) -> Duration {
        self.times.sort();
        let (p50, p95) = (percentile(&self.times, 0.5), percentile(&self.times, 0.95));
        eprintln!(
            "  {name:<28} p50 {p50:>10.2?}  p95 {p95:>10.2?}  recall@10 {:.3}",
            self.hits as f64 / (10 * QUERIES) as f64
        );
        p95
    }
}

fn main() {
    let dir = std::env::var("RAG_BENCH_LANCE_DIR").unwrap_or_else(|_| {
        std::env::temp_dir()
            .join("lance-bench")
            .to_string_lossy()
            .into_owned()
    });
    let hnsw = std::env::var("RAG_BENCH_LANCE_INDEX").is_ok_and(|v| v == "hnsw");
    let kind = if hnsw {
        VectorIndexKind::IvfHnswSq {
            num_partitions: None,
            m: 16,
            ef_construction: 150,
        }
    } else {
        VectorIndexKind::IvfPq {
            num_partitions: None,
            num_sub_vectors: None,
        }
    };
    let index = VectorIndexConfig::default().with_kind(kind);
    let cfg = LanceConfig::new(dir.as_str(), DIMS)
        .with_vector_index(index)
        .with_table_prefix(if hnsw { "hnsw_" } else { "pq_" });
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let store = rt.block_on(LanceVectorStore::open(cfg)).expect("open");
    let ns = Namespace::new("bench").expect("ns");
    let data = clustered_dataset(N, DIMS);

    let have = rt.block_on(store.count(&ns)).expect("count");
    if have != N {
        rt.block_on(store.delete_namespace(&ns)).expect("reset");
        let start = Instant::now();
        for (b, part) in data.chunks(5_000).enumerate() {
            let batch: Vec<EmbeddedChunk> = part
                .iter()
                .enumerate()
                .map(|(i, v)| chunk(b * 5_000 + i, v.clone()))
                .collect();
            rt.block_on(store.upsert(&ns, &batch)).expect("upsert");
        }
        let load = start.elapsed().as_secs_f64();
        let t = Instant::now();
        rt.block_on(store.optimize(&ns, Duration::ZERO))
            .expect("optimize");
        eprintln!(
            "bulk load: {N} chunks × {DIMS} in {load:.1} s = {:.0} chunks/s (batches of 5000, \
             index built at the 50k threshold); optimize (compact + fold rows into indexes) {:.1} s",
            N as f64 / load,
            t.elapsed().as_secs_f64()
        );
    }
    let table = rt
        .block_on(store.table(&ns))
        .expect("table")
        .expect("exists");
    let vi = store.config().vector_index;

    let mut rng = Rng::new(99);
    let queries: Vec<Vec<f32>> = (0..QUERIES)
        .map(|_| {
            let i = rng.below(N);
            perturb(&mut rng, &data[i], 0.05)
        })
        .collect();
    let filter = Filter::eq("group", 3);
    let filter_sql = rag::lance::filter::to_sql(&filter);

    let direct = |q: Vec<f32>, filtered: bool| {
        let table = table.clone();
        let filter_sql = filter_sql.clone();
        async move {
            let mut query = table
                .query()
                .nearest_to(q)
                .expect("query")
                .column("vector")
                .distance_type(DistanceType::Cosine)
                .limit(10)
                .select(Select::columns(rag::lance::CHUNK_COLUMNS))
                .nprobes(vi.nprobes)
                .expect("nprobes")
                .ef(vi.ef);
            if let Some(f) = vi.refine_factor {
                query = query.refine_factor(f);
            }
            if filtered {
                query = query.only_if(filter_sql);
            }
            let batches: Vec<arrow_array::RecordBatch> = query
                .execute()
                .await
                .expect("direct")
                .try_collect()
                .await
                .expect("collect");
            let mut ids = Vec::new();
            for b in &batches {
                let col = b.column_by_name("document_id").expect("document_id");
                let col = arrow_array::cast::AsArray::as_string::<i32>(col.as_ref());
                ids.extend(col.iter().flatten().map(str::to_owned));
            }
            ids
        }
    };

    for filtered in [false, true] {
        let req = |q: &Vec<f32>| {
            let r = SearchRequest::dense(q.clone(), 10);
            if filtered {
                r.with_filter(filter.clone())
            } else {
                r
            }
        };
        for q in queries.iter().take(20) {
            rt.block_on(store.search(&ns, req(q))).expect("warm");
            rt.block_on(direct(q.clone(), filtered));
        }
        let truths: Vec<HashSet<String>> = queries
            .iter()
            .map(|q| exact_top10(&data, q, |i| !filtered || i % 10 == 3))
            .collect();
        let mut s = Side {
            times: Vec::new(),
            hits: 0,
        };
        let mut d = Side {
            times: Vec::new(),
            hits: 0,
        };
        for (n, (q, truth)) in queries.iter().zip(&truths).enumerate() {
            for first_store in [n % 2 == 0, n % 2 != 0] {
                let t = Instant::now();
                let ids: Vec<String> = if first_store {
                    rt.block_on(store.search(&ns, req(q)))
                        .expect("search")
                        .into_iter()
                        .map(|h| h.chunk.document_id.to_string())
                        .collect()
                } else {
                    rt.block_on(direct(q.clone(), filtered))
                };
                let side = if first_store { &mut s } else { &mut d };
                side.times.push(t.elapsed());
                side.hits += ids.iter().filter(|id| truth.contains(id.as_str())).count();
            }
        }
        eprintln!(
            "dense top-10 at {N} × {DIMS}{}, {} (nprobes {}, refine {:?}), {QUERIES} queries:",
            if filtered {
                ", filter group = 3 (10 %)"
            } else {
                ""
            },
            if hnsw { "IVF-HNSW-SQ" } else { "IVF-PQ" },
            vi.nprobes,
            vi.refine_factor
        );
        let sp95 = s.report("LanceVectorStore");
        let dp95 = d.report("direct lancedb");
        eprintln!(
            "  p95 ratio store/direct {:.2}",
            sp95.as_secs_f64() / dp95.as_secs_f64()
        );
    }

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group(if hnsw {
        "lance_100k_384_hnsw"
    } else {
        "lance_100k_384_pq"
    });
    g.sample_size(30);
    let mut i = 0usize;
    g.bench_function("store_dense_top10", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % QUERIES;
            store.search(&ns, SearchRequest::dense(queries[i].clone(), 10))
        })
    });
    let mut j = 0usize;
    g.bench_function("direct_lancedb_dense_top10", |b| {
        b.to_async(&rt).iter(|| {
            j = (j + 1) % QUERIES;
            direct(queries[j].clone(), false)
        })
    });
    let mut k = 0usize;
    g.bench_function("store_dense_top10_filter_10pct", |b| {
        b.to_async(&rt).iter(|| {
            k = (k + 1) % QUERIES;
            store.search(
                &ns,
                SearchRequest::dense(queries[k].clone(), 10).with_filter(filter.clone()),
            )
        })
    });
    let mut m = 0usize;
    g.bench_function("store_keyword_top10", |b| {
        b.to_async(&rt).iter(|| {
            m = (m + 1) % QUERIES;
            store.search(&ns, SearchRequest::keyword(format!("chunk {m} corpus"), 10))
        })
    });
    // Upsert throughput: 500 one-chunk documents per call into a scratch
    // namespace (a second table), replacing the same documents each time.
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
