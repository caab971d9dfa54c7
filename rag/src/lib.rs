//! # rag
//!
//! Retrieval-augmented generation for Rust with pluggable backends. This is
//! the facade: it re-exports [`rag_core`] (types, traits, in-memory backends)
//! and turns each adapter crate on by a cargo feature named after its
//! backend. No backend feature is on by default.
//!
//! | feature    | crate                | what                                   |
//! |------------|----------------------|----------------------------------------|
//! | `pgvector` | `rag-store-pgvector` | PostgreSQL + pgvector store (sqlx)     |
//! | `qdrant`   | `rag-store-qdrant`   | Qdrant server store (qdrant-client)    |
//! | `lance`    | `rag-store-lance`    | embedded LanceDB store                 |
//! | `local`    | `rag-local`          | local embedders, reranker, chat model  |
//! | `openai`   | `rag-llm-openai`     | OpenAI-compatible embeddings and chat  |
//! | `groq`     | `rag-llm-groq`       | Groq chat                              |
//! | `testkit`  | `rag-core/testkit`   | conformance suites, mocks, fakes       |

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use rag_core::*;

/// The PostgreSQL + pgvector adapter.
#[cfg(feature = "pgvector")]
pub use rag_store_pgvector as pgvector;

/// The Qdrant adapter.
#[cfg(feature = "qdrant")]
pub use rag_store_qdrant as qdrant;

/// The LanceDB adapter.
#[cfg(feature = "lance")]
pub use rag_store_lance as lance;

/// Local models: embedder, cross-encoder reranker and chat model.
#[cfg(feature = "local")]
pub use rag_local as local;

/// The OpenAI-compatible adapter.
#[cfg(feature = "openai")]
pub use rag_llm_openai as openai;

/// The Groq adapter.
#[cfg(feature = "groq")]
pub use rag_llm_groq as groq;
