//! Chunkers built on [`text_splitter`].
//!
//! [`TextChunker`] splits plain text and [`MarkdownChunker`] Markdown, each
//! sized by characters or by tokens ([`TokenEncoding`], tiktoken), with
//! overlap. Every chunk records its byte range, and its text is exactly that
//! span of the document, so a citation can point at the source.

use std::fmt;

use serde::{Deserialize, Serialize};
use text_splitter::{Characters, ChunkConfig, ChunkSizer, MarkdownSplitter, TextSplitter};
use tiktoken_rs::CoreBPE;

use crate::error::{Error, Result};
use crate::traits::Chunker;
use crate::types::{Chunk, ChunkIdDeriver, Document};

mod tokens;
use tokens::{Counter, SpanCounter};

/// A tiktoken encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEncoding {
    /// `cl100k_base` (GPT-3.5/4, text-embedding-3).
    #[default]
    Cl100k,
    /// `o200k_base` (GPT-4o and later).
    O200k,
}

impl TokenEncoding {
    /// The shared encoder (built once per process).
    pub fn bpe(self) -> &'static CoreBPE {
        match self {
            Self::Cl100k => tiktoken_rs::cl100k_base_singleton(),
            Self::O200k => tiktoken_rs::o200k_base_singleton(),
        }
    }

    /// Tokens in `text` (no special tokens): the length of
    /// `self.bpe().encode_ordinary(text)`, computed several times faster
    /// (tiktoken's pieces found with a DFA-based regex, each distinct piece
    /// encoded once per thread).
    pub fn count(self, text: &str) -> usize {
        Counter::new(self).count(text)
    }
}

/// How big chunks are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "unit")]
pub enum ChunkSize {
    /// At most `max` characters, `overlap` characters shared with the
    /// previous chunk.
    Characters {
        /// Most characters per chunk.
        max: usize,
        /// Characters of overlap.
        overlap: usize,
    },
    /// At most `max` tokens of `encoding`, `overlap` tokens shared.
    Tokens {
        /// The tokenizer.
        encoding: TokenEncoding,
        /// Most tokens per chunk.
        max: usize,
        /// Tokens of overlap.
        overlap: usize,
    },
}

impl ChunkSize {
    fn check(self) -> Result<Self> {
        let (max, overlap) = match self {
            Self::Characters { max, overlap } | Self::Tokens { max, overlap, .. } => (max, overlap),
        };
        if max == 0 {
            return Err(Error::invalid_input("chunk size must be at least 1"));
        }
        if overlap >= max {
            return Err(Error::invalid_input(format!(
                "chunk overlap ({overlap}) must be smaller than the chunk size ({max})"
            )));
        }
        Ok(self)
    }
}

/// A token sizer for one document: it tokenizes the document once, and
/// then counts any span the splitter asks about from running totals
/// (see [`tokens`]), exactly as tiktoken would count the span alone.
struct DocSizer<'t> {
    spans: SpanCounter<'t>,
}

impl ChunkSizer for DocSizer<'_> {
    fn size(&self, chunk: &str) -> usize {
        self.spans.count(chunk)
    }
}

struct Splitter {
    markdown: bool,
    size: ChunkSize,
    /// Character-sized splitters are built once; token-sized ones are built
    /// per call around the document's [`DocSizer`].
    text: Option<TextSplitter<Characters>>,
    md: Option<MarkdownSplitter<Characters>>,
}

fn config_err(e: impl fmt::Display) -> Error {
    Error::invalid_input(format!("chunker configuration: {e}"))
}

impl Splitter {
    fn new(markdown: bool, size: ChunkSize) -> Result<Self> {
        let size = size.check()?;
        // Fail at construction, not at first use, on a bad configuration.
        let (max, overlap) = match size {
            ChunkSize::Characters { max, overlap } | ChunkSize::Tokens { max, overlap, .. } => {
                (max, overlap)
            }
        };
        let cfg = || -> Result<ChunkConfig<Characters>> {
            Ok(ChunkConfig::new(max)
                .with_overlap(overlap)
                .map_err(config_err)?
                .with_trim(true))
        };
        cfg()?;
        let chars = matches!(size, ChunkSize::Characters { .. });
        Ok(Self {
            markdown,
            size,
            text: if chars && !markdown {
                Some(TextSplitter::new(cfg()?))
            } else {
                None
            },
            md: if chars && markdown {
                Some(MarkdownSplitter::new(cfg()?))
            } else {
                None
            },
        })
    }

    fn spans<'t>(&self, text: &'t str) -> (Vec<(usize, &'t str)>, Option<DocSizer<'t>>) {
        // Splitters are cheap to build (they hold only the configuration),
        // so one is built per call around the document's sizer.
        match self.size {
            ChunkSize::Characters { .. } => {
                let spans = match (&self.text, &self.md) {
                    (Some(s), _) => s.chunk_indices(text).collect(),
                    (None, Some(s)) => s.chunk_indices(text).collect(),
                    (None, None) => Vec::new(),
                };
                (spans, None)
            }
            ChunkSize::Tokens {
                encoding,
                max,
                overlap,
            } => {
                let sizer = DocSizer {
                    spans: SpanCounter::new(encoding, text),
                };
                let spans = {
                    let cfg = ChunkConfig::new(max)
                        .with_overlap(overlap)
                        .unwrap_or_else(|_| ChunkConfig::new(max))
                        .with_sizer(&sizer)
                        .with_trim(true);
                    if self.markdown {
                        MarkdownSplitter::new(cfg).chunk_indices(text).collect()
                    } else {
                        TextSplitter::new(cfg).chunk_indices(text).collect()
                    }
                };
                (spans, Some(sizer))
            }
        }
    }

    fn chunks(&self, doc: &Document) -> Vec<Chunk> {
        let (spans, sizer) = self.spans(doc.text());
        // The document-level values are computed once, not per chunk.
        let hash = doc.content_hash();
        let metadata = doc.metadata();
        let ids = ChunkIdDeriver::new(doc.id(), hash);
        let mut spans: Vec<(usize, &str)> = spans
            .into_iter()
            .filter(|(_, s)| !s.trim().is_empty())
            .collect();
        // With overlap and trimming, the splitter can start a chunk before
        // the previous one and leave a chunk inside its neighbour (found by
        // fuzzing): keep chunks in order of their start, and drop one that
        // another contains (it would be embedded and retrieved twice).
        spans.sort_by_key(|(offset, s)| (*offset, std::cmp::Reverse(s.len())));
        let mut end = 0;
        spans.retain(|(offset, s)| {
            let keep = offset + s.len() > end;
            end = end.max(offset + s.len());
            keep
        });
        spans
            .into_iter()
            .enumerate()
            .map(|(i, (offset, s))| {
                let position = u32::try_from(i).unwrap_or(u32::MAX);
                let byte_range = offset..offset + s.len();
                Chunk {
                    id: ids.derive(position, &byte_range),
                    document_id: doc.id().clone(),
                    source: doc.source().to_owned(),
                    text: s.to_owned(),
                    byte_range,
                    position,
                    token_count: sizer
                        .as_ref()
                        .map(|z| u32::try_from(z.spans.count(s)).unwrap_or(u32::MAX)),
                    metadata: metadata.clone(),
                    document_hash: hash.to_owned(),
                }
            })
            .collect()
    }
}

macro_rules! chunker {
    ($(#[$doc:meta])* $name:ident, $markdown:expr) => {
        $(#[$doc])*
        pub struct $name {
            size: ChunkSize,
            splitter: Splitter,
        }

        impl $name {
            /// A chunker of this size.
            pub fn new(size: ChunkSize) -> Result<Self> {
                Ok(Self { size, splitter: Splitter::new($markdown, size)? })
            }

            /// Chunks of at most `max` characters, `overlap` shared.
            pub fn by_chars(max: usize, overlap: usize) -> Result<Self> {
                Self::new(ChunkSize::Characters { max, overlap })
            }

            /// Chunks of at most `max` tokens of `encoding`, `overlap` shared.
            pub fn by_tokens(encoding: TokenEncoding, max: usize, overlap: usize) -> Result<Self> {
                Self::new(ChunkSize::Tokens { encoding, max, overlap })
            }

            /// The configured size.
            pub fn size(&self) -> ChunkSize {
                self.size
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).field("size", &self.size).finish()
            }
        }

        impl Chunker for $name {
            fn chunk(&self, doc: &Document) -> Result<Vec<Chunk>> {
                doc.validate()?;
                Ok(self.splitter.chunks(doc))
            }
        }
    };
}

chunker!(
    /// Splits plain text at the largest semantic unit that fits (sentences,
    /// then words, then graphemes).
    TextChunker,
    false
);

chunker!(
    /// Splits Markdown along its structure (sections, blocks, then text).
    MarkdownChunker,
    true
);

impl Default for TextChunker {
    /// 1,000 characters with 100 of overlap.
    fn default() -> Self {
        let size = ChunkSize::Characters {
            max: 1000,
            overlap: 100,
        };
        let cfg = ChunkConfig::new(1000)
            .with_overlap(100)
            .unwrap_or_else(|_| ChunkConfig::new(1000))
            .with_trim(true);
        Self {
            size,
            splitter: Splitter {
                markdown: false,
                size,
                text: Some(TextSplitter::new(cfg)),
                md: None,
            },
        }
    }
}

/// A chunker chosen by the document's source extension: Markdown for
/// `.md`/`.markdown`, plain text otherwise, both with the same size.
#[derive(Debug)]
pub struct AutoChunker {
    text: TextChunker,
    markdown: MarkdownChunker,
}

impl AutoChunker {
    /// Both chunkers with this size.
    pub fn new(size: ChunkSize) -> Result<Self> {
        Ok(Self {
            text: TextChunker::new(size)?,
            markdown: MarkdownChunker::new(size)?,
        })
    }
}

impl Chunker for AutoChunker {
    fn chunk(&self, doc: &Document) -> Result<Vec<Chunk>> {
        let src = doc.source().to_ascii_lowercase();
        if src.ends_with(".md") || src.ends_with(".markdown") {
            self.markdown.chunk(doc)
        } else {
            self.text.chunk(doc)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_match_source_and_sizes_hold() {
        let text =
            "Alpha beta gamma. Delta épsilon ζeta.\n\nEta theta iota kappa. 東京は大きい。\n"
                .repeat(20);
        let doc = Document::new("x.txt", text.clone());
        for chunker in [
            Box::new(TextChunker::by_chars(80, 10).unwrap()) as Box<dyn Chunker>,
            Box::new(TextChunker::by_tokens(TokenEncoding::Cl100k, 20, 4).unwrap()),
            Box::new(MarkdownChunker::by_chars(80, 0).unwrap()),
            Box::new(MarkdownChunker::by_tokens(TokenEncoding::O200k, 20, 0).unwrap()),
        ] {
            let chunks = chunker.chunk(&doc).unwrap();
            assert!(chunks.len() > 5, "{chunker:?}");
            for (i, c) in chunks.iter().enumerate() {
                assert_eq!(c.position as usize, i);
                assert_eq!(&text[c.byte_range.clone()], c.text);
            }
        }
        let by_tokens = TextChunker::by_tokens(TokenEncoding::Cl100k, 20, 4).unwrap();
        for c in by_tokens.chunk(&doc).unwrap() {
            let n = c.token_count.unwrap();
            assert!(n <= 20 && n == TokenEncoding::Cl100k.count(&c.text) as u32);
        }
        for c in TextChunker::by_chars(80, 10).unwrap().chunk(&doc).unwrap() {
            assert!(c.text.chars().count() <= 80);
        }
    }

    /// The fast sizer changes nothing: the same chunks as text-splitter
    /// sized by tiktoken itself.
    #[test]
    fn token_chunks_equal_text_splitter_with_tiktoken() {
        let text = [
            "Alpha beta gamma. Delta épsilon ζeta, 12345 and 3.14159!\n\n",
            "It's we'll THEY'RE don't. 東京は大きい。 Ünïcödé straße — «quotes».\n",
            "   indented line\twith\ttabs\n\n\n  \n",
            "# Heading\n\nA paragraph with `code` and [a link](https://example.com/a?b=c).\n",
        ]
        .concat()
        .repeat(30);
        for (enc, max, overlap) in [
            (TokenEncoding::Cl100k, 20, 4),
            (TokenEncoding::Cl100k, 64, 0),
            (TokenEncoding::O200k, 33, 8),
        ] {
            let cfg = || {
                ChunkConfig::new(max)
                    .with_overlap(overlap)
                    .unwrap()
                    .with_sizer(enc.bpe())
                    .with_trim(true)
            };
            let ours = |chunker: &dyn Chunker, source: &str| -> Vec<(usize, String)> {
                let doc = Document::new(source, text.clone());
                let chunks = chunker.chunk(&doc).unwrap().into_iter();
                chunks.map(|c| (c.byte_range.start, c.text)).collect()
            };
            let owned = |spans: &mut dyn Iterator<Item = (usize, &str)>| -> Vec<(usize, String)> {
                spans.map(|(i, s)| (i, s.to_owned())).collect()
            };
            let text_chunker = TextChunker::by_tokens(enc, max, overlap).unwrap();
            assert_eq!(
                ours(&text_chunker, "x.txt"),
                owned(&mut TextSplitter::new(cfg()).chunk_indices(&text)),
                "{enc:?} {max}/{overlap}"
            );
            let md_chunker = MarkdownChunker::by_tokens(enc, max, overlap).unwrap();
            assert_eq!(
                ours(&md_chunker, "x.md"),
                owned(&mut MarkdownSplitter::new(cfg()).chunk_indices(&text)),
                "markdown {enc:?} {max}/{overlap}"
            );
        }
    }

    #[test]
    fn bad_config_and_bad_docs_are_errors() {
        assert!(TextChunker::by_chars(0, 0).is_err());
        assert!(TextChunker::by_chars(10, 10).is_err());
        assert!(
            TextChunker::default()
                .chunk(&Document::new("a", " "))
                .is_err()
        );
    }

    #[test]
    fn markdown_keeps_sections_apart() {
        let md = "# One\n\nFirst section text.\n\n# Two\n\nSecond section text.\n";
        let doc = Document::new("a.md", md);
        let chunks = AutoChunker::new(ChunkSize::Characters {
            max: 40,
            overlap: 0,
        })
        .unwrap()
        .chunk(&doc)
        .unwrap();
        assert_eq!(chunks.len(), 2);
        assert!(chunks[0].text.starts_with("# One"));
        assert!(chunks[1].text.starts_with("# Two"));
    }
}
