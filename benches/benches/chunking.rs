//! Chunking throughput (bytes/s), ours beside `text-splitter` called
//! directly on the same input with the same settings.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rag::{Chunker, Document, MarkdownChunker, TextChunker, TokenEncoding};
use text_splitter::{ChunkConfig, MarkdownSplitter, TextSplitter};

fn bench(c: &mut Criterion) {
    let text = rag_benches::prose(1 << 20, false, 1);
    let md = rag_benches::prose(1 << 20, true, 2);
    let text_doc = Document::new("bench.txt", text.clone());
    let md_doc = Document::new("bench.md", md.clone());
    let bpe = TokenEncoding::Cl100k.bpe();

    let mut g = c.benchmark_group("chunking_chars_1000");
    g.sample_size(10)
        .throughput(Throughput::Bytes(text.len() as u64));
    let raw = TextSplitter::new(
        ChunkConfig::new(1000)
            .with_overlap(100)
            .expect("cfg")
            .with_trim(true),
    );
    let ours = TextChunker::by_chars(1000, 100).expect("chunker");
    g.bench_function("text_splitter_raw", |b| {
        b.iter(|| raw.chunk_indices(&text).count())
    });
    // The same spans as owned strings with offsets: the least a caller must
    // keep to embed and store chunks.
    g.bench_function("text_splitter_owned", |b| {
        b.iter(|| {
            raw.chunk_indices(&text)
                .map(|(o, s)| (o, s.to_owned()))
                .collect::<Vec<_>>()
                .len()
        })
    });
    g.bench_function("rag_text_chunker", |b| {
        b.iter(|| ours.chunk(&text_doc).expect("chunks").len())
    });
    g.finish();

    let mut g = c.benchmark_group("chunking_markdown_chars_1000");
    g.sample_size(10)
        .throughput(Throughput::Bytes(md.len() as u64));
    let raw = MarkdownSplitter::new(
        ChunkConfig::new(1000)
            .with_overlap(100)
            .expect("cfg")
            .with_trim(true),
    );
    let ours = MarkdownChunker::by_chars(1000, 100).expect("chunker");
    g.bench_function("text_splitter_raw", |b| {
        b.iter(|| raw.chunk_indices(&md).count())
    });
    g.bench_function("rag_markdown_chunker", |b| {
        b.iter(|| ours.chunk(&md_doc).expect("chunks").len())
    });
    g.finish();

    let mut end = 256 * 1024;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let small = &text[..end];
    let small_doc = Document::new("bench.txt", small);
    let mut g = c.benchmark_group("chunking_tokens_256");
    g.sample_size(10)
        .throughput(Throughput::Bytes(small.len() as u64));
    let raw = TextSplitter::new(
        ChunkConfig::new(256)
            .with_overlap(32)
            .expect("cfg")
            .with_sizer(bpe)
            .with_trim(true),
    );
    let ours = TextChunker::by_tokens(TokenEncoding::Cl100k, 256, 32).expect("chunker");
    g.bench_function("text_splitter_raw", |b| {
        b.iter(|| raw.chunk_indices(small).count())
    });
    g.bench_function("rag_text_chunker", |b| {
        b.iter(|| ours.chunk(&small_doc).expect("chunks").len())
    });
    // The floor: tokenizing the input once, with tiktoken-rs and with our
    // counter (which the chunker uses).
    g.bench_function("tiktoken_encode_once", |b| {
        b.iter(|| bpe.encode_ordinary(small).len())
    });
    g.bench_function("rag_count_once", |b| {
        b.iter(|| TokenEncoding::Cl100k.count(small))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
