//! End to end on a real corpus, without model time: ingest the SciFact
//! subset (2,101 abstracts) and answer its queries with the 384-dimensional
//! `HashEmbedder` and an LLM that answers instantly, so what is measured is
//! the library: chunking (256 cl100k tokens, overlap 32), hashing, batching,
//! storing, searching, fusing, packing and citing.
//!
//! ```text
//! cargo bench -p rag-benches --bench scifact                   # in-memory store
//! cargo bench -p rag-benches --features lance --bench scifact  # + LanceDB on disk
//! RAG_BENCH_PG_URL=postgres://… RAG_BENCH_QDRANT_URL=http://127.0.0.1:6334 \
//!   cargo bench -p rag-benches --features lance,pgvector,qdrant --bench scifact  # + the servers
//! python3 benches/compare/llamaindex_scifact.py                # the same work in LlamaIndex, and the ratios
//! ```
//!
//! The dataset: `RAG_EVAL_DATASET`, else `../shared/eval/scifact-subset`
//! (it is evaluation data, not part of the product); without it the bench
//! says so and measures nothing. Groups: `scifact_ingest` (elements =
//! documents, so criterion prints documents/s) and `scifact_ask` (one
//! question per iteration, cycling through the test queries; with `lance`
//! also `lance_optimized_*`, after LanceDB's `optimize`), and
//! `scifact_stages`: chunking, hashing and storing alone, on one thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{Criterion, Throughput};
use rag::eval::BeirDataset;
use rag::testkit::ScriptedLlm;
use rag::{
    Ask, Chunker, Document, HashEmbedder, MemoryVectorStore, Rag, SearchMode, TextChunker,
    TokenEncoding, VectorStore,
};

/// Chunk size and overlap, in cl100k tokens (the comparison script uses the
/// same for LlamaIndex's `SentenceSplitter`).
pub const CHUNK_TOKENS: usize = 256;
/// Overlap, in tokens.
pub const OVERLAP_TOKENS: usize = 32;
/// Sources per question (LlamaIndex: `similarity_top_k`).
pub const TOP_K: usize = 5;

fn dataset() -> Option<BeirDataset> {
    let dir = std::env::var_os("RAG_EVAL_DATASET")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/eval/scifact-subset")
        });
    match BeirDataset::load(&dir, "test") {
        Ok(d) => Some(d),
        Err(e) => {
            eprintln!("scifact bench: no dataset ({e}); set RAG_EVAL_DATASET. Nothing measured.");
            None
        }
    }
}

fn chunker() -> Arc<dyn Chunker> {
    Arc::new(
        TextChunker::by_tokens(TokenEncoding::Cl100k, CHUNK_TOKENS, OVERLAP_TOKENS)
            .expect("chunker"),
    )
}

fn pipeline(store: Arc<dyn VectorStore>) -> Rag {
    Rag::builder()
        .store_arc(store)
        .embedder(HashEmbedder::new(384))
        .chunker_arc(chunker())
        .llm(ScriptedLlm::new().with_responder(|_| "It is supported [1].".into()))
        .build()
        .expect("pipeline")
}

type StoreFactory = Box<dyn Fn(&tokio::runtime::Runtime) -> Arc<dyn VectorStore>>;

/// An empty store for each ingest: a fresh one, or (servers) the same
/// table or collection with its namespace deleted, outside the timing.
fn empty(make: &StoreFactory, rt: &tokio::runtime::Runtime) -> Arc<dyn VectorStore> {
    let store = make(rt);
    rt.block_on(store.delete_namespace(&rag::Namespace::default()))
        .expect("clearing the bench namespace");
    store
}

fn stores(_rt: &tokio::runtime::Runtime) -> Vec<(&'static str, StoreFactory)> {
    #[allow(unused_mut)]
    let mut out: Vec<(&'static str, StoreFactory)> = vec![(
        "memory",
        Box::new(|_| Arc::new(MemoryVectorStore::default()) as Arc<dyn VectorStore>),
    )];
    #[cfg(feature = "lance")]
    out.push((
        "lance",
        Box::new(|rt| Arc::new(open_lance(rt)) as Arc<dyn VectorStore>),
    ));
    #[cfg(feature = "pgvector")]
    match std::env::var("RAG_BENCH_PG_URL") {
        Ok(url) => {
            use rag::pgvector::{PgVectorConfig, PgVectorStore};
            let cfg = PgVectorConfig::default()
                .with_dimensions(384)
                .with_table_prefix("bench_scifact");
            let store: Arc<dyn VectorStore> = Arc::new(
                _rt.block_on(PgVectorStore::connect(&url, cfg))
                    .expect("pgvector"),
            );
            out.push(("pgvector", Box::new(move |_| store.clone())));
        }
        Err(_) => eprintln!("scifact bench: pgvector NOT RUN (set RAG_BENCH_PG_URL)"),
    }
    #[cfg(feature = "qdrant")]
    match std::env::var("RAG_BENCH_QDRANT_URL") {
        Ok(url) => {
            use rag::qdrant::{QdrantConfig, QdrantStore};
            let cfg = QdrantConfig::new(&url, 384).with_collection("bench_scifact");
            let store: Arc<dyn VectorStore> =
                Arc::new(_rt.block_on(QdrantStore::connect(cfg)).expect("qdrant"));
            out.push(("qdrant", Box::new(move |_| store.clone())));
        }
        Err(_) => eprintln!("scifact bench: qdrant NOT RUN (set RAG_BENCH_QDRANT_URL)"),
    }
    out
}

/// A LanceDB store in a new directory under the system's temp dir.
#[cfg(feature = "lance")]
fn open_lance(rt: &tokio::runtime::Runtime) -> rag::lance::LanceVectorStore {
    let dir = std::env::temp_dir().join(format!(
        "rag-bench-scifact-{}-{}",
        std::process::id(),
        fastrand_like()
    ));
    let config = rag::lance::LanceConfig::new(dir.to_string_lossy(), 384);
    rt.block_on(rag::lance::LanceVectorStore::open(config))
        .expect("lance")
}

#[cfg(feature = "lance")]
fn fastrand_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn bench_scifact(c: &mut Criterion) {
    let Some(data) = dataset() else { return };
    let docs: Vec<Document> = data.documents().expect("documents");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let mut group = c.benchmark_group("scifact_ingest");
    group.sample_size(10);
    group.throughput(Throughput::Elements(docs.len() as u64));
    let stores = stores(&rt);
    for (name, make) in &stores {
        group.bench_function(*name, |b| {
            b.iter_batched(
                || pipeline(empty(make, &rt)),
                |rag| {
                    let report = rt.block_on(rag.ingest_many(docs.clone()));
                    assert!(report.is_success(), "{:?}", report.failed.first());
                    rag
                },
                criterion::BatchSize::PerIteration,
            );
        });
    }
    group.finish();

    // Where ingestion's time goes: each stage alone, on one thread, over the
    // whole corpus (elements = documents).
    let mut group = c.benchmark_group("scifact_stages");
    group.sample_size(10);
    group.throughput(Throughput::Elements(docs.len() as u64));
    let chunker = chunker();
    group.bench_function("chunk", |b| {
        b.iter(|| {
            docs.iter()
                .map(|d| chunker.chunk(d).expect("chunks").len())
                .sum::<usize>()
        })
    });
    // The same on every core (tokio's blocking pool, whose threads live on
    // between iterations with their caches warm; contiguous shares): how
    // far the machine's cores scale this CPU-bound stage.
    group.bench_function("chunk_all_cores", |b| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let share = docs.len().div_ceil(cores);
        let parts: Vec<Arc<Vec<Document>>> =
            docs.chunks(share).map(|p| Arc::new(p.to_vec())).collect();
        b.iter(|| {
            rt.block_on(async {
                let runs: Vec<_> = parts
                    .iter()
                    .map(|part| {
                        let (part, chunker) = (Arc::clone(part), Arc::clone(&chunker));
                        tokio::task::spawn_blocking(move || {
                            part.iter()
                                .map(|d| chunker.chunk(d).expect("chunks").len())
                                .sum::<usize>()
                        })
                    })
                    .collect();
                let mut n = 0;
                for r in runs {
                    n += r.await.expect("chunking task");
                }
                n
            })
        })
    });
    let chunks: Vec<rag::Chunk> = docs
        .iter()
        .flat_map(|d| chunker.chunk(d).expect("chunks"))
        .collect();
    let embedder = HashEmbedder::new(384);
    group.bench_function("embed_hash", |b| {
        b.iter(|| {
            chunks
                .iter()
                .map(|c| embedder.embed_one(&c.text).len())
                .sum::<usize>()
        })
    });
    let embedded: Vec<rag::EmbeddedChunk> = chunks
        .iter()
        .map(|c| rag::EmbeddedChunk {
            vector: embedder.embed_one(&c.text),
            chunk: c.clone(),
        })
        .collect();
    group.bench_function("store_memory", |b| {
        b.iter_batched(
            || (MemoryVectorStore::default(), embedded.clone()),
            |(store, rows)| {
                // Per document, as ingestion upserts.
                let ns = rag::Namespace::default();
                rt.block_on(async {
                    let mut rows = rows.into_iter().peekable();
                    while let Some(first) = rows.next() {
                        let doc = first.chunk.document_id.clone();
                        let mut batch = vec![first];
                        while let Some(next) = rows.next_if(|r| r.chunk.document_id == doc) {
                            batch.push(next);
                        }
                        store.upsert(&ns, &batch).await.expect("upsert");
                    }
                });
                store
            },
            criterion::BatchSize::PerIteration,
        );
    });
    group.finish();

    let mut group = c.benchmark_group("scifact_ask");
    let queries: Vec<String> = data.queries.iter().map(|q| q.text.clone()).collect();
    for (name, make) in &stores {
        let rag = pipeline(empty(make, &rt));
        let report = rt.block_on(rag.ingest_many(docs.clone()));
        assert!(report.is_success());
        bench_ask(&mut group, &rt, name, &rag, &queries);
    }
    // LanceDB after its maintenance (`optimize`: compaction, the rows
    // written since the indexes were built folded into them), as a bulk
    // ingest should be followed; the rows above search the new rows exactly.
    #[cfg(feature = "lance")]
    {
        let store = Arc::new(open_lance(&rt));
        let rag = pipeline(store.clone());
        assert!(rt.block_on(rag.ingest_many(docs.clone())).is_success());
        rt.block_on(store.optimize(&rag::Namespace::default(), std::time::Duration::ZERO))
            .expect("optimize");
        bench_ask(&mut group, &rt, "lance_optimized", &rag, &queries);
    }
    group.finish();
}

/// `scifact_ask/{name}_{dense,hybrid}`: one question per iteration.
fn bench_ask(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    rag: &Rag,
    queries: &[String],
) {
    for (label, mode) in [("dense", SearchMode::Dense), ("hybrid", SearchMode::Hybrid)] {
        let next = AtomicUsize::new(0);
        group.bench_function(format!("{name}_{label}"), |b| {
            b.to_async(rt).iter(|| async {
                let q = &queries[next.fetch_add(1, Ordering::Relaxed) % queries.len()];
                let answer = rag
                    .ask(
                        Ask::new(q.as_str())
                            .mode(mode)
                            .top_k(TOP_K)
                            .rerank_top_n(TOP_K),
                    )
                    .await
                    .expect("ask");
                std::hint::black_box(answer)
            });
        });
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_scifact(&mut c);
    c.final_summary();
}
