//! Backup and restore of a namespace of 100,000 chunks × 384 dimensions
//! (10,000 documents of 10 chunks, ~170-byte texts, metadata): the time of
//! `export_namespace` to a file and of `import_namespace` from it into an
//! empty store (verification pass included), for the in-memory store and —
//! with `--features lance` — LanceDB, and pgvector with `--features pgvector`
//! and `RAG_TEST_PG_URL`. One timed run each: a restore of this size is not
//! a micro-benchmark.
//!
//! `cargo bench -p rag-benches --bench backup` (`--features lance` for the
//! LanceDB row). `RAG_BENCH_BACKUP_CHUNKS` changes the size.

#![allow(clippy::print_stdout)]

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::time::Instant;

use rag::backup::{EmbedderInfo, ExportOptions, ImportOptions, export_namespace, import_namespace};
use rag::{Chunk, Document, DocumentId, EmbeddedChunk, MemoryVectorStore, Namespace, VectorStore};
use rag_benches::{Rng, random_unit};

const DIMS: usize = 384;
const PER_DOC: usize = 10;

fn documents(n_chunks: usize) -> Vec<Vec<EmbeddedChunk>> {
    let mut rng = Rng::new(7);
    (0..n_chunks.div_ceil(PER_DOC))
        .map(|d| {
            let parts: Vec<String> = (0..PER_DOC)
                .map(|j| {
                    format!(
                        "Section {j} of document {d}: the service rotates its keys every month, \
                         keeps backups for thirty days and answers within forty milliseconds."
                    )
                })
                .collect();
            let doc = Document::new(format!("corpus/doc{d:05}.md"), parts.join("\n"))
                .with_id(DocumentId::new(format!("doc{d:05}")).expect("id"))
                .with_metadata(serde_json::json!({"group": d % 10, "tags": ["bench", "backup"]}));
            let mut start = 0;
            parts
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    let chunk = Chunk::from_document(&doc, j as u32, start..start + p.len());
                    start += p.len() + 1;
                    EmbeddedChunk {
                        chunk,
                        vector: random_unit(&mut rng, DIMS),
                    }
                })
                .collect()
        })
        .collect()
}

async fn fill(store: &dyn VectorStore, ns: &Namespace, docs: &[Vec<EmbeddedChunk>]) {
    let per_call = store.capabilities().upsert_batch_documents.max(1);
    for group in docs.chunks(per_call) {
        let batch: Vec<EmbeddedChunk> = group.iter().flatten().cloned().collect();
        store.upsert(ns, &batch).await.expect("fill");
    }
}

/// Exports `source`, imports the file into `target`; prints one row.
async fn row(name: &str, source: &dyn VectorStore, target: &dyn VectorStore, ns: &Namespace) {
    let info = EmbedderInfo::new("bench-random-384", DIMS);
    let path =
        std::env::temp_dir().join(format!("rag-backup-bench-{}.jsonl.gz", std::process::id()));
    let started = Instant::now();
    let exported = export_namespace(
        source,
        ns,
        &info,
        BufWriter::new(File::create(&path).expect("create")),
        &ExportOptions::default(),
    )
    .await
    .expect("export");
    let export_time = started.elapsed();
    let started = Instant::now();
    let imported = import_namespace(
        target,
        ns,
        &info,
        BufReader::new(File::open(&path).expect("open")),
        &ImportOptions::default(),
    )
    .await
    .expect("import");
    let import_time = started.elapsed();
    assert_eq!(imported.chunks_written, exported.chunks);
    assert_eq!(
        target.count(ns).await.expect("count") as u64,
        exported.chunks
    );
    let _ = std::fs::remove_file(&path);
    println!(
        "| {name} | {} | {:.1} MiB | {:.2} s ({:.0} chunks/s) | {:.2} s ({:.0} chunks/s) |",
        exported.chunks,
        exported.bytes as f64 / (1 << 20) as f64,
        export_time.as_secs_f64(),
        exported.chunks as f64 / export_time.as_secs_f64(),
        import_time.as_secs_f64(),
        exported.chunks as f64 / import_time.as_secs_f64(),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let n: usize = std::env::var("RAG_BENCH_BACKUP_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let docs = documents(n);
    let ns = Namespace::new("backup_bench").expect("namespace");
    println!("| store | chunks | file | export | import (verify + write) |");
    println!("|---|---|---|---|---|");

    let memory = MemoryVectorStore::default();
    fill(&memory, &ns, &docs).await;
    row("memory", &memory, &MemoryVectorStore::default(), &ns).await;

    #[cfg(feature = "lance")]
    {
        use rag::lance::{LanceConfig, LanceVectorStore};
        let dir =
            std::env::temp_dir().join(format!("rag-backup-bench-lance-{}", std::process::id()));
        let open = |sub: &str| LanceConfig::new(dir.join(sub).to_string_lossy(), DIMS);
        let source = LanceVectorStore::open(open("source")).await.expect("lance");
        fill(&source, &ns, &docs).await;
        let target = LanceVectorStore::open(open("target")).await.expect("lance");
        row("LanceDB", &source, &target, &ns).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(feature = "pgvector")]
    if let Ok(url) = std::env::var("RAG_TEST_PG_URL") {
        use rag::pgvector::{PgVectorConfig, PgVectorStore};
        let config = |p: &str| {
            PgVectorConfig::default()
                .with_dimensions(DIMS)
                .with_table_prefix(format!("bench_backup_{p}_{}", std::process::id()))
        };
        let source = PgVectorStore::connect(&url, config("src"))
            .await
            .expect("pg");
        fill(&source, &ns, &docs).await;
        let target = PgVectorStore::connect(&url, config("dst"))
            .await
            .expect("pg");
        row("pgvector", &source, &target, &ns).await;
        for s in [&source, &target] {
            let _ = s.delete_namespace(&ns).await;
        }
    }
}
