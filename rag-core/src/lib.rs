#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backup;
pub mod chat;
pub mod chunking;
mod cpu;
pub mod embed;
mod error;
pub mod eval;
pub mod filter;
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz;
pub mod layers;
pub mod memory;
pub mod pipeline;
pub mod search;
pub mod session;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod text;
mod traits;
mod types;

pub use chat::{ChatDelta, ChatRequest, ChatResponse, FinishReason, Message, Role, Usage};
pub use chunking::{AutoChunker, ChunkSize, MarkdownChunker, TextChunker, TokenEncoding};
pub use embed::HashEmbedder;
pub use error::{BoxError, Error, Result, SharedError};
pub use filter::{Field, Filter, FilterOp, Scalar};
pub use layers::{
    BreakerConfig, CachedEmbedder, CircuitBreaker, ConcurrencyLimit, EmbedCacheConfig, Fallback,
    Instrumented, RateLimit, RateLimitConfig, Retry, RetryPolicy, Timeout,
};
pub use memory::{MemorySessionStore, MemoryVectorStore};
pub use pipeline::{
    Answer, AnswerCacheConfig, Ask, AskEvent, AskStream, Citation, ExtractiveAnswerer,
    GroundedAnswerer, IngestOptions, IngestReport, LoadOptions, LoadReport, PromptGuard,
    PromptTemplate, Rag, RagBuilder, RagConfig, Source, TokenBudget, Trace, load_path,
};
pub use search::{Capabilities, Distance, Fusion, ScoredChunk, SearchMode, SearchRequest};
pub use session::{NewSession, Session, SessionId, StoredMessage};
pub use traits::{
    ChatStream, Chunker, DocumentInfo, Embedder, LlmClient, Reranker, SessionStore, VectorStore,
};
pub use types::{
    Chunk, ChunkId, ChunkIdDeriver, Document, DocumentId, EmbeddedChunk, MAX_ID_BYTES,
    MAX_NAMESPACE_BYTES, Metadata, Namespace,
};

/// Re-exported so users implement the traits with the same macro version.
pub use async_trait::async_trait;
