//! Qdrant: dense and hybrid search p50/p95 at 100k × 384 chunks, via
//! `QdrantStore` and (dense) via the same query issued directly through
//! `qdrant-client`, with recall@10 against exact search; and the bulk-load
//! rate.
//!
//! Needs a server: `RAG_BENCH_QDRANT_URL=http://127.0.0.1:6334 cargo bench -p
//! rag-benches --features qdrant --bench qdrant` (for example the gRPC URL
//! `scripts/services/qdrant start` prints). Without it the bench prints a
//! notice and measures nothing. The 100k-chunk collection
//! (`bench_qdrant_100k`) is kept between runs and reused when complete.
//!
//! Data: clustered unit vectors (as the other store benches) and, for the
//! keyword side, 30-word sentences over a 5,000-word Zipf-like vocabulary;
//! queries are perturbed stored vectors with three words of that chunk.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use rag::qdrant::qdrant_client::qdrant::{self as q, Query, QueryPoints, SearchParams};
use rag::qdrant::{FieldIndex, QdrantConfig, QdrantStore};
use rag::{
    Chunk, Document, DocumentId, EmbeddedChunk, Filter, Namespace, SearchRequest, VectorStore,
};
use rag_benches::{Rng, Vocabulary, clustered_dataset, exact_top10, percentile, perturb};

const DIMS: usize = 384;
const N: usize = 100_000;
const QUERIES: usize = 300;

fn chunk(i: usize, text: &str, v: Vec<f32>) -> EmbeddedChunk {
    let doc = Document::new(format!("doc{i}"), text)
        .with_id(DocumentId::new(format!("doc{i:06}")).expect("id"))
        .with_metadata(serde_json::json!({"group": i % 10}));
    EmbeddedChunk {
        chunk: Chunk::from_document(&doc, 0, 0..text.len()),
        vector: v,
    }
}

fn report(name: &str, times: &mut [Duration], hits: usize) -> Duration {
    times.sort();
    let (p50, p95) = (percentile(times, 0.5), percentile(times, 0.95));
    eprintln!(
        "  {name:<26} p50 {p50:>10.2?}  p95 {p95:>10.2?}  recall@10 {:.3}",
        hits as f64 / (10 * times.len()) as f64
    );
    p95
}

fn main() {
    let Ok(url) = std::env::var("RAG_BENCH_QDRANT_URL") else {
        eprintln!(
            "qdrant bench NOT RUN: set RAG_BENCH_QDRANT_URL (the gRPC URL scripts/services/qdrant start prints)"
        );
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    // `group` is filtered on below: declared as an integer payload index,
    // as a user would declare a field they filter by.
    let cfg = QdrantConfig::new(&url, DIMS)
        .with_collection("bench_qdrant_100k")
        .with_indexed_field("group", FieldIndex::Integer);
    let ef = cfg.hnsw.ef;
    let store = rt.block_on(QdrantStore::connect(cfg)).expect("connect");
    eprintln!("qdrant server {}", store.server_version());
    let ns = Namespace::new("bench").expect("ns");
    let data = clustered_dataset(N, DIMS);
    let mut rng = Rng::new(5);
    let vocab = Vocabulary::new(5_000, &mut rng);
    let texts: Vec<String> = (0..N).map(|_| vocab.sentence(&mut rng, 30)).collect();

    let have = rt.block_on(store.count(&ns)).expect("count");
    if have != N {
        rt.block_on(store.delete_namespace(&ns)).expect("reset");
        let start = Instant::now();
        for (b, part) in data.chunks(1_000).enumerate() {
            let batch: Vec<EmbeddedChunk> = part
                .iter()
                .enumerate()
                .map(|(i, v)| chunk(b * 1_000 + i, &texts[b * 1_000 + i], v.clone()))
                .collect();
            rt.block_on(store.upsert(&ns, &batch)).expect("upsert");
        }
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "bulk load: {N} chunks × {DIMS} in {secs:.1} s = {:.0} chunks/s (batches of 1000, acknowledged with wait)",
            N as f64 / secs
        );
    }
    // Searches before the optimizer has built the HNSW graph scan
    // exactly: wait until the collection is green.
    let started = Instant::now();
    loop {
        let info = rt
            .block_on(store.client().collection_info("bench_qdrant_100k"))
            .expect("info");
        let status = info.result.map(|r| r.status).unwrap_or_default();
        if status == q::CollectionStatus::Green as i32 {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!("index ready after {:.0?}", started.elapsed());

    let queries: Vec<(Vec<f32>, String)> = (0..QUERIES)
        .map(|_| {
            let i = rng.below(N);
            let words: Vec<&str> = texts[i].split(' ').take(3).collect();
            (perturb(&mut rng, &data[i], 0.05), words.join(" "))
        })
        .collect();
    let truths: Vec<HashSet<String>> = queries
        .iter()
        .map(|(q, _)| {
            exact_top10(&data, q)
                .into_iter()
                .map(|i| format!("doc{i:06}"))
                .collect()
        })
        .collect();

    let client = store.client();
    let direct = |v: &[f32]| {
        let req = QueryPoints {
            collection_name: "bench_qdrant_100k".into(),
            query: Some(Query::new_nearest(v.to_vec())),
            using: Some("dense".into()),
            filter: Some(q::Filter::must([q::Condition::matches(
                "namespace",
                q::r#match::MatchValue::Keyword("bench".into()),
            )])),
            limit: Some(10),
            params: Some(SearchParams {
                hnsw_ef: Some(ef),
                ..Default::default()
            }),
            with_payload: Some(true.into()),
            ..Default::default()
        };
        async move {
            client
                .query(req)
                .await
                .expect("direct query")
                .result
                .into_iter()
                .filter_map(|p| match p.payload.get("document_id")?.kind.as_ref()? {
                    q::value::Kind::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        }
    };

    for (v, t) in queries.iter().take(30) {
        rt.block_on(store.search(&ns, SearchRequest::dense(v.clone(), 10)))
            .expect("warm");
        rt.block_on(store.search(&ns, SearchRequest::hybrid(v.clone(), t.clone(), 10)))
            .expect("warm");
        rt.block_on(direct(v));
    }
    let (mut st, mut dt, mut ht) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sh, mut dh, mut hh) = (0, 0, 0);
    for (n, ((v, t), truth)) in queries.iter().zip(&truths).enumerate() {
        for first_store in [n % 2 == 0, n % 2 != 0] {
            if first_store {
                let s = Instant::now();
                let got = rt
                    .block_on(store.search(&ns, SearchRequest::dense(v.clone(), 10)))
                    .expect("dense");
                st.push(s.elapsed());
                sh += got
                    .iter()
                    .filter(|h| truth.contains(h.chunk.document_id.as_str()))
                    .count();
            } else {
                let s = Instant::now();
                let ids = rt.block_on(direct(v));
                dt.push(s.elapsed());
                dh += ids.iter().filter(|id| truth.contains(id.as_str())).count();
            }
        }
        let s = Instant::now();
        let got = rt
            .block_on(store.search(&ns, SearchRequest::hybrid(v.clone(), t.clone(), 10)))
            .expect("hybrid");
        ht.push(s.elapsed());
        hh += got
            .iter()
            .filter(|h| truth.contains(h.chunk.document_id.as_str()))
            .count();
    }
    eprintln!("top-10 at {N} × {DIMS}, hnsw_ef {ef}, {QUERIES} queries:");
    let sp95 = report("QdrantStore dense", &mut st, sh);
    let dp95 = report("direct qdrant-client dense", &mut dt, dh);
    report("QdrantStore hybrid (RRF)", &mut ht, hh);
    eprintln!(
        "  p95 ratio store/direct {:.2} (hybrid recall is against the dense truth)",
        sp95.as_secs_f64() / dp95.as_secs_f64()
    );

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("qdrant_100k_384");
    g.sample_size(50);
    let mut i = 0usize;
    g.bench_function("store_dense_top10", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % QUERIES;
            store.search(&ns, SearchRequest::dense(queries[i].0.clone(), 10))
        })
    });
    let mut j = 0usize;
    g.bench_function("direct_client_dense_top10", |b| {
        b.to_async(&rt).iter(|| {
            j = (j + 1) % QUERIES;
            direct(&queries[j].0)
        })
    });
    let mut k = 0usize;
    g.bench_function("store_hybrid_rrf_top10", |b| {
        b.to_async(&rt).iter(|| {
            k = (k + 1) % QUERIES;
            let (v, t) = &queries[k];
            store.search(&ns, SearchRequest::hybrid(v.clone(), t.clone(), 10))
        })
    });
    let filtered = Filter::eq("group", 3);
    let mut l = 0usize;
    g.bench_function("store_dense_top10_filter_10pct", |b| {
        b.to_async(&rt).iter(|| {
            l = (l + 1) % QUERIES;
            store.search(
                &ns,
                SearchRequest::dense(queries[l].0.clone(), 10).with_filter(filtered.clone()),
            )
        })
    });
    let scratch = Namespace::new("bench_upsert").expect("ns");
    let batch: Vec<EmbeddedChunk> = (0..500)
        .map(|i| chunk(i, &texts[i], data[i].clone()))
        .collect();
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
