//! The conformance suite of [`Chunker`].
//!
//! Each test runs the chunker over [`sample_documents`]: plain prose,
//! Markdown with headings, lists and code fences, CJK + emoji + accented
//! text, a long run without whitespace and a 50 KB document. Sources end in
//! `.txt` or `.md`, so extension-based chunkers see both kinds.
//!
//! ```
//! use rag_core::testkit::chunker;
//! use rag_core::TextChunker;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! chunker::run_all(&TextChunker::by_chars(200, 20).unwrap()).await;
//! # });
//! ```

use std::collections::HashSet;

use serde_json::json;

use crate::error::Error;
use crate::traits::Chunker;
use crate::types::{Chunk, Document};

/// Runs every test of the suite; panics naming the first broken rule.
pub async fn run_all(c: &dyn Chunker) {
    spans_match_text(c).await;
    positions_are_sequential(c).await;
    ids_unique_and_deterministic(c).await;
    document_fields_propagated(c).await;
    covers_all_text(c).await;
    no_blank_chunks(c).await;
    token_counts_positive(c).await;
    rejects_blank_document(c).await;
    rejects_non_object_metadata(c).await;
}

/// The documents every test chunks, each with object metadata.
pub fn sample_documents() -> Vec<Document> {
    let prose = "Retrieval-augmented generation answers a question from documents. \
                 First the documents are split into chunks; each chunk is embedded and stored. \
                 At question time the closest chunks are retrieved, reranked and packed into a \
                 prompt.\n\nA good chunk is small enough to be specific and large enough to be \
                 understood on its own. Overlap between neighbouring chunks keeps a sentence that \
                 straddles a boundary findable.\n"
        .repeat(4);
    let markdown = r#"# Operations handbook

Keys and secrets are rotated on a schedule.

## Rotating keys

1. Create the new key in the vault.
2. Deploy it to every service:
   - the API gateway
   - the workers
3. Revoke the old key.

```bash
vault write secret/api key="$(openssl rand -hex 32)"
kubectl rollout restart deployment/api
```

## On-call

| Week | Primary | Secondary |
|------|---------|-----------|
| 1    | Ana     | Bo        |
| 2    | Chen    | Dara      |

> Page the secondary when the primary does not answer within 15 minutes.

### Escalation

Escalate *security* incidents **immediately**; everything else waits for the
next business day. See [the policy](https://example.invalid/policy).
"#
    .repeat(3);
    let unicode =
        "東京は日本の首都です。大阪は食べ物で有名です。京都には古いお寺がたくさんあります。\n\
                   🎉 Launch day! 🚀 Everything shipped ✨ and the team celebrated 🥳🍰.\n\
                   Crème brûlée, naïve façade, Ångström, Øresund, señor, Straße, ζῷον.\n\
                   Смешанный текст: 中文, العربية, עברית, हिन्दी, and English 👍🏽 👨‍👩‍👧‍👦.\n"
            .repeat(6);
    let no_whitespace = "abcdefghijklmnopqrstuvwxyz0123456789é東🎉".repeat(150);
    let mut big = String::with_capacity(51_200);
    let mut i = 0usize;
    while big.len() < 50 * 1024 {
        big.push_str(&format!(
            "Paragraph {i}: the service handled {} requests with a median latency of {} ms. ",
            i * 37 % 1000,
            i % 97
        ));
        if i % 5 == 4 {
            big.push_str("\n\n");
        }
        i += 1;
    }
    let meta = |kind: &str| json!({"kind": kind, "team": "ops", "tags": ["a", "b"], "n": 1});
    vec![
        Document::new("kit/prose.txt", prose).with_metadata(meta("prose")),
        Document::new("kit/handbook.md", markdown).with_metadata(meta("markdown")),
        Document::new("kit/unicode.txt", unicode).with_metadata(meta("unicode")),
        Document::new("kit/blob.txt", no_whitespace).with_metadata(meta("no_whitespace")),
        Document::new("kit/big.txt", big).with_metadata(meta("big")),
    ]
}

/// Chunks `doc`, panicking with the error when a valid document fails.
fn chunk_ok(c: &dyn Chunker, doc: &Document, test: &str) -> Vec<Chunk> {
    match c.chunk(doc) {
        Ok(chunks) => chunks,
        Err(err) => panic!(
            "chunker rule ({test}): a valid document must chunk, {} failed: {err}",
            doc.source()
        ),
    }
}

/// Every chunk's text is exactly `doc.text()[chunk.byte_range]`, the range
/// in bounds and on character boundaries.
pub async fn spans_match_text(c: &dyn Chunker) {
    for doc in sample_documents() {
        let chunks = chunk_ok(c, &doc, "spans_match_text");
        assert!(
            !chunks.is_empty(),
            "chunker rule: a document with text must give at least one chunk, {} gave none",
            doc.source()
        );
        for ch in &chunks {
            let Some(span) = doc.text().get(ch.byte_range.clone()) else {
                panic!(
                    "chunker rule: byte_range must lie in the document on character boundaries, \
                     chunk {} of {} has {:?} (text is {} bytes)",
                    ch.position,
                    doc.source(),
                    ch.byte_range,
                    doc.text().len()
                );
            };
            assert!(
                span == ch.text,
                "chunker rule: chunk text must equal doc.text()[byte_range], chunk {} of {} \
                 ({:?}) differs",
                ch.position,
                doc.source(),
                ch.byte_range
            );
        }
    }
}

/// Positions are 0, 1, 2, … in order, and chunks follow the document
/// (starts never decrease).
pub async fn positions_are_sequential(c: &dyn Chunker) {
    for doc in sample_documents() {
        let chunks = chunk_ok(c, &doc, "positions_are_sequential");
        for (i, ch) in chunks.iter().enumerate() {
            assert_eq!(
                ch.position as usize,
                i,
                "chunker rule: positions must be 0, 1, 2, … in order, chunk {i} of {} has \
                 position {}",
                doc.source(),
                ch.position
            );
        }
        for w in chunks.windows(2) {
            assert!(
                w[0].byte_range.start <= w[1].byte_range.start,
                "chunker rule: chunks must follow the document, chunk {} of {} starts at {} \
                 after chunk {} starting at {}",
                w[1].position,
                doc.source(),
                w[1].byte_range.start,
                w[0].position,
                w[0].byte_range.start
            );
        }
    }
}

/// Chunk ids are unique within a document and the same on a second run.
pub async fn ids_unique_and_deterministic(c: &dyn Chunker) {
    for doc in sample_documents() {
        let first = chunk_ok(c, &doc, "ids_unique_and_deterministic");
        let mut seen = HashSet::new();
        for ch in &first {
            assert!(
                seen.insert(ch.id.clone()),
                "chunker rule: chunk ids must be unique within a document, {} repeats {} at \
                 position {}",
                doc.source(),
                ch.id,
                ch.position
            );
        }
        let second = chunk_ok(c, &doc, "ids_unique_and_deterministic");
        let ids = |chunks: &[Chunk]| {
            chunks
                .iter()
                .map(|ch| (ch.id.clone(), ch.byte_range.clone()))
                .collect::<Vec<_>>()
        };
        assert!(
            ids(&first) == ids(&second),
            "chunker rule: chunking is deterministic — two runs over {} gave different ids or \
             ranges",
            doc.source()
        );
    }
}

/// `document_id`, `source`, `metadata` and `document_hash` come from the
/// document.
pub async fn document_fields_propagated(c: &dyn Chunker) {
    for doc in sample_documents() {
        let hash = doc.content_hash();
        for ch in chunk_ok(c, &doc, "document_fields_propagated") {
            let at = format!("chunk {} of {}", ch.position, doc.source());
            assert!(
                &ch.document_id == doc.id(),
                "chunker rule: document_id must be the document's id ({at})"
            );
            assert!(
                ch.source == doc.source(),
                "chunker rule: source must be the document's source ({at})"
            );
            assert!(
                &ch.metadata == doc.metadata(),
                "chunker rule: metadata must be the document's metadata ({at})"
            );
            assert!(
                ch.document_hash == hash,
                "chunker rule: document_hash must be doc.content_hash() ({at})"
            );
        }
    }
}

/// Every non-whitespace character of the document lies inside some chunk's
/// byte range: nothing is lost.
pub async fn covers_all_text(c: &dyn Chunker) {
    for doc in sample_documents() {
        let text = doc.text();
        let mut covered = vec![false; text.len()];
        for ch in chunk_ok(c, &doc, "covers_all_text") {
            let end = ch.byte_range.end.min(text.len());
            let start = ch.byte_range.start.min(end);
            covered[start..end].iter_mut().for_each(|b| *b = true);
        }
        if let Some((i, ch)) = text
            .char_indices()
            .find(|(i, ch)| !ch.is_whitespace() && !covered[*i])
        {
            panic!(
                "chunker rule: every non-whitespace character must be in some chunk, {ch:?} at \
                 byte {i} of {} is in none",
                doc.source()
            );
        }
    }
}

/// No chunk's text is empty or whitespace-only.
pub async fn no_blank_chunks(c: &dyn Chunker) {
    for doc in sample_documents() {
        for ch in chunk_ok(c, &doc, "no_blank_chunks") {
            assert!(
                !ch.text.trim().is_empty(),
                "chunker rule: no chunk may be empty or whitespace-only, chunk {} of {} is {:?}",
                ch.position,
                doc.source(),
                ch.text
            );
        }
    }
}

/// A `token_count` that is set is positive.
pub async fn token_counts_positive(c: &dyn Chunker) {
    for doc in sample_documents() {
        for ch in chunk_ok(c, &doc, "token_counts_positive") {
            if let Some(n) = ch.token_count {
                assert!(
                    n > 0,
                    "chunker rule: a token_count that is set must be positive, chunk {} of {} \
                     has 0",
                    ch.position,
                    doc.source()
                );
            }
        }
    }
}

/// An empty or whitespace-only document is `Error::InvalidInput`.
pub async fn rejects_blank_document(c: &dyn Chunker) {
    for text in ["", " \n\t  \n"] {
        let doc = Document::new("kit/blank.txt", text);
        match c.chunk(&doc) {
            Err(Error::InvalidInput { .. }) => {}
            Err(other) => panic!(
                "chunker rule: a blank document {text:?} must be rejected with \
                 Error::InvalidInput, got {other:?}"
            ),
            Ok(chunks) => panic!(
                "chunker rule: a blank document {text:?} must be rejected with \
                 Error::InvalidInput, got {} chunks",
                chunks.len()
            ),
        }
    }
}

/// A document whose metadata is not a JSON object is `Error::InvalidInput`.
pub async fn rejects_non_object_metadata(c: &dyn Chunker) {
    for metadata in [json!([1, 2]), json!("team=ops"), json!(42)] {
        let doc = Document::new("kit/meta.txt", "Some perfectly fine text.")
            .with_metadata(metadata.clone());
        match c.chunk(&doc) {
            Err(Error::InvalidInput { .. }) => {}
            Err(other) => panic!(
                "chunker rule: metadata {metadata} (not an object) must be rejected with \
                 Error::InvalidInput, got {other:?}"
            ),
            Ok(_) => panic!(
                "chunker rule: metadata {metadata} (not an object) must be rejected with \
                 Error::InvalidInput"
            ),
        }
    }
}
