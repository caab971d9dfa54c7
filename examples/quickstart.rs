//! Quickstart: chunk and embed this repository's READMEs into the in-memory
//! store, then search them. No network, no API key.

#![allow(clippy::print_stdout)] // an example prints its results

use std::path::PathBuf;

use rag::{
    AutoChunker, ChunkSize, Chunker, Document, EmbeddedChunk, Embedder, HashEmbedder,
    MemoryVectorStore, Namespace, SearchRequest, TokenEncoding, VectorStore,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let question = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "How do I run the test suite?".to_owned());
    let chunker = AutoChunker::new(ChunkSize::Tokens {
        encoding: TokenEncoding::Cl100k,
        max: 256,
        overlap: 32,
    })?;
    let embedder = HashEmbedder::default();
    let store = MemoryVectorStore::default();
    let ns = Namespace::default();
    for name in ["README.md", "rag-core/README.md"] {
        let text = std::fs::read_to_string(root.join(name))?;
        let chunks = chunker.chunk(&Document::new(name, text))?;
        let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
        let vectors = embedder.embed(&texts).await?;
        let rows = chunks
            .into_iter()
            .zip(vectors)
            .map(|(chunk, vector)| EmbeddedChunk { chunk, vector })
            .collect();
        store.upsert(&ns, rows).await?;
    }
    let query = embedder.embed_query(&question).await?;
    let hits = store
        .search(&ns, SearchRequest::hybrid(query, question.clone(), 3))
        .await?;
    println!("Q: {question}");
    for (i, hit) in hits.iter().enumerate() {
        let c = &hit.chunk;
        println!(
            "[{}] {} bytes {:?}\n{}\n",
            i + 1,
            c.source,
            c.byte_range,
            c.text
        );
    }
    Ok(())
}
