//! Entry points for coverage-guided fuzzing (the `fuzz/` crate runs them
//! under AFL++) and for replaying its corpus and past crashes as ordinary
//! tests (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes, runs one
//! parser of untrusted input and panics when an invariant breaks; an error
//! result is a correct answer, never a failure.
//!
//! Compiled with the `fuzz` feature only.

use std::sync::OnceLock;

use crate::chunking::{ChunkSize, MarkdownChunker, TextChunker, TokenEncoding};
use crate::filter::{FieldValue, Filter};
use crate::pipeline::{LoadOptions, load_path};
use crate::traits::Chunker;
use crate::types::{Chunk, Document};

/// The `Filter` JSON a client sends (`"filter"` of `/v1/ask`): parsing,
/// validation, the operators, the reference evaluator, and a round trip
/// through its own serialization for every filter that parses.
pub fn filter_json(data: &[u8]) {
    let Ok(filter) = serde_json::from_slice::<Filter>(data) else {
        return;
    };
    let valid = filter.validate().is_ok();
    let _ = filter.ops();
    let json = serde_json::to_string(&filter).expect("a parsed filter serializes");
    let again: Filter = serde_json::from_str(&json).expect("a serialized filter parses");
    assert_eq!(
        again, filter,
        "the filter changed in a round trip through {json}"
    );
    assert_eq!(again.validate().is_ok(), valid);
    if valid {
        // Evaluation never panics and is deterministic.
        for chunk in sample_chunks() {
            assert_eq!(filter.matches(chunk), filter.matches(chunk));
        }
        let _ = Filter::not(filter.clone()).and(filter.clone()).validate();
        let _ = filter.eval(&|_| FieldValue::Missing);
    }
}

fn sample_chunks() -> &'static [Chunk] {
    static CHUNKS: OnceLock<Vec<Chunk>> = OnceLock::new();
    CHUNKS.get_or_init(|| {
        let docs = [
            Document::new("a.md", "alpha").with_metadata(serde_json::json!({
                "team": "ops", "year": 2024, "tags": ["x", "y"], "draft": null, "score": 0.5,
                "nested": {"k": 1}, "flag": true
            })),
            Document::new("b.md", "beta").with_metadata(serde_json::json!({
                "team": 7, "year": "2024", "tags": [], "flag": false
            })),
        ];
        let chunker = TextChunker::by_chars(100, 0).expect("a valid size");
        docs.iter()
            .flat_map(|d| chunker.chunk(d).expect("a valid document"))
            .collect()
    })
}

/// The chunkers (plain text and Markdown, by characters and by tokens) on
/// arbitrary text: the first byte picks a size, the rest (lossily decoded)
/// is the document. Every chunk is the slice of the document its byte
/// range names, on character boundaries, in order, non-blank, within the
/// size, and chunking is deterministic.
pub fn chunkers(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let doc = Document::new(if seed & 1 == 0 { "f.md" } else { "f.txt" }, text.as_ref());
    let max = 8 + usize::from(seed >> 2);
    let overlap = usize::from(seed & 2) * (max / 8);
    let chunkers: [(Box<dyn Chunker>, Option<usize>); 4] = [
        (
            Box::new(TextChunker::by_chars(max, overlap).expect("size")),
            Some(max),
        ),
        (
            Box::new(MarkdownChunker::by_chars(max, overlap).expect("size")),
            Some(max),
        ),
        (
            Box::new(
                TextChunker::by_tokens(TokenEncoding::Cl100k, max, overlap / 2).expect("size"),
            ),
            None,
        ),
        (
            Box::new(
                MarkdownChunker::new(ChunkSize::Tokens {
                    encoding: TokenEncoding::Cl100k,
                    max,
                    overlap: 0,
                })
                .expect("size"),
            ),
            None,
        ),
    ];
    for (chunker, max_chars) in &chunkers {
        let chunks = match chunker.chunk(&doc) {
            Ok(c) => c,
            Err(e) => {
                assert!(doc.validate().is_err(), "a valid document was refused: {e}");
                continue;
            }
        };
        check_chunks(&doc, &chunks, *max_chars);
        let again = chunker.chunk(&doc).expect("chunked once already");
        assert_eq!(chunks, again, "chunking is not deterministic");
    }
}

fn check_chunks(doc: &Document, chunks: &[Chunk], max_chars: Option<usize>) {
    let text = doc.text();
    let mut last_start = 0;
    for (i, c) in chunks.iter().enumerate() {
        let r = &c.byte_range;
        assert!(
            r.start < r.end && r.end <= text.len(),
            "range {r:?} of {}",
            text.len()
        );
        assert!(
            text.is_char_boundary(r.start) && text.is_char_boundary(r.end),
            "range {r:?} splits a character"
        );
        assert_eq!(
            &text[r.clone()],
            c.text,
            "chunk {i}'s text is not its range"
        );
        assert!(
            r.start >= last_start,
            "chunks out of order: {:?} in {text:?}",
            chunks
                .iter()
                .map(|c| c.byte_range.clone())
                .collect::<Vec<_>>()
        );
        last_start = r.start;
        if let Some(next) = chunks.get(i + 1) {
            assert!(
                next.byte_range.end > r.end,
                "chunk {i} ({r:?}) contains the next one ({:?})",
                next.byte_range
            );
        }
        assert!(!c.text.trim().is_empty(), "a blank chunk");
        assert_eq!(c.position as usize, i);
        assert_eq!(&c.document_id, doc.id());
        if let Some(max) = max_chars {
            assert!(
                c.text.chars().count() <= max,
                "chunk of {} characters, max {max}",
                c.text.chars().count()
            );
        }
    }
    let mut ids: Vec<_> = chunks.iter().map(|c| c.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), chunks.len(), "two chunks share an id");
}

/// The file loader on arbitrary bytes (invalid UTF-8, NULs, nothing): the
/// bytes are written to a file (the first byte picks its extension) and
/// loaded. Text that is UTF-8 and not blank becomes one document holding
/// exactly those bytes; anything else is a failure or a skip with a reason,
/// never a panic.
pub fn loader(data: &[u8]) {
    let Some((&seed, bytes)) = data.split_first() else {
        return;
    };
    let ext = ["md", "txt", "rs", "png", ""][usize::from(seed) % 5];
    // One file per process (AFL++ runs several), removed after each input.
    let name = format!("file-{}", std::process::id());
    let path = scratch_dir().join(if ext.is_empty() {
        name
    } else {
        format!("{name}.{ext}")
    });
    std::fs::write(&path, bytes).expect("a scratch file");
    let report = load_path(&path, &LoadOptions::default()).expect("an existing file loads");
    let outcomes = report.documents.len() + report.failed.len() + report.skipped.len();
    assert_eq!(outcomes, 1, "one file, one outcome");
    let accepted = ["md", "txt", "rs"].contains(&ext);
    match std::str::from_utf8(bytes) {
        Ok(text) if accepted && !text.trim().is_empty() => {
            assert_eq!(report.documents.len(), 1);
            assert_eq!(report.documents[0].text(), text);
            let chunker = TextChunker::by_chars(200, 20).expect("size");
            if let Ok(chunks) = chunker.chunk(&report.documents[0]) {
                check_chunks(&report.documents[0], &chunks, Some(200));
            }
        }
        Err(_) if accepted => {
            assert_eq!(report.failed.len(), 1, "invalid UTF-8 is a failure");
            let msg = report.failed[0].error.to_string();
            assert!(msg.contains("UTF-8"), "{msg}");
        }
        _ => assert!(report.documents.is_empty()),
    }
    let _ = std::fs::remove_file(&path);
}

fn scratch_dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // RAM-backed when available: the loader runs once per input.
        let base = std::path::Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        // Shared by every process: a directory each would be left behind by
        // each of the processes AFL++ forks (thousands in a long run).
        let dir = base.join("rag-fuzz-loader");
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        dir
    })
}

/// Runs `check` on every input of `target`'s seed corpus and past crashes
/// (`<fuzz>/corpus/<target>`, `<fuzz>/regressions/<target>`), naming the
/// input that fails. For the crates' corpus replay tests.
pub fn replay_corpus(fuzz: &std::path::Path, target: &str, check: fn(&[u8])) {
    let mut inputs = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_file() && p.file_name().is_some_and(|n| n != "README.md") {
                inputs.push(p);
            }
        }
    }
    inputs.sort();
    assert!(!inputs.is_empty(), "no seed corpus for {target}");
    for path in inputs {
        let data = std::fs::read(&path).expect("a corpus file");
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{} fails {target}'s checks", path.display());
        }
    }
}
