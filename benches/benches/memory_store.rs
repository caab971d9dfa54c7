//! In-memory store search at 10k and 100k chunks × 384 dimensions, dense and
//! keyword, beside the memory-bandwidth bound: a plain loop over one
//! contiguous `Vec<f32>` with the same top-k selection.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rag::{
    Chunk, Document, DocumentId, EmbeddedChunk, MemoryVectorStore, Namespace, SearchRequest,
    VectorStore,
};
use rag_benches::{Rng, Vocabulary, random_unit};
use serde_json::json;

const DIMS: usize = 384;

fn build(n: usize, rt: &tokio::runtime::Runtime) -> (MemoryVectorStore, Vec<f32>, Vec<String>) {
    let mut rng = Rng::new(42);
    let vocab = Vocabulary::new(20_000, &mut rng);
    let store = MemoryVectorStore::default();
    let ns = Namespace::default();
    let mut flat = Vec::with_capacity(n * DIMS);
    let mut batch = Vec::new();
    for i in 0..n {
        let text = vocab.sentence(&mut rng, 40);
        let doc = Document::new(format!("doc{i}"), text.clone())
            .with_id(DocumentId::new(format!("doc{i}")).expect("id"))
            .with_metadata(json!({"group": i % 10}));
        let chunk = Chunk::from_document(&doc, 0, 0..text.len());
        let v = random_unit(&mut rng, DIMS);
        flat.extend_from_slice(&v);
        batch.push(EmbeddedChunk { chunk, vector: v });
        if batch.len() == 1000 {
            rt.block_on(store.upsert(&ns, &std::mem::take(&mut batch)))
                .expect("upsert");
        }
    }
    rt.block_on(store.upsert(&ns, &batch)).expect("upsert");
    let queries = (0..16)
        .map(|_| {
            format!(
                "{} {} {}",
                vocab.word(&mut rng),
                vocab.word(&mut rng),
                vocab.word(&mut rng)
            )
        })
        .collect();
    (store, flat, queries)
}

/// The bound: dot products over a contiguous slice, best 10 by partial sort.
fn plain_loop(flat: &[f32], q: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut scores: Vec<(usize, f32)> = flat
        .chunks_exact(q.len())
        .enumerate()
        .map(|(i, v)| (i, v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>()))
        .collect();
    scores.select_nth_unstable_by(k, |a, b| b.1.total_cmp(&a.1));
    scores.truncate(k);
    scores.sort_by(|a, b| b.1.total_cmp(&a.1));
    scores
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let ns = Namespace::default();
    let mut group = c.benchmark_group("memory_store");
    group.sample_size(20);
    for n in [10_000usize, 100_000] {
        let (store, flat, queries) = build(n, &rt);
        let mut rng = Rng::new(7);
        let q = random_unit(&mut rng, DIMS);
        group.bench_with_input(BenchmarkId::new("plain_loop_bound", n), &n, |b, _| {
            b.iter(|| plain_loop(&flat, &q, 10));
        });
        group.bench_with_input(BenchmarkId::new("dense", n), &n, |b, _| {
            b.to_async(&rt)
                .iter(|| store.search(&ns, SearchRequest::dense(q.clone(), 10)));
        });
        group.bench_with_input(BenchmarkId::new("dense_filtered", n), &n, |b, _| {
            b.to_async(&rt).iter(|| {
                store.search(
                    &ns,
                    SearchRequest::dense(q.clone(), 10).with_filter(rag::Filter::eq("group", 3)),
                )
            });
        });
        let mut i = 0;
        group.bench_with_input(BenchmarkId::new("keyword", n), &n, |b, _| {
            b.to_async(&rt).iter(|| {
                i = (i + 1) % queries.len();
                store.search(&ns, SearchRequest::keyword(queries[i].clone(), 10))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
