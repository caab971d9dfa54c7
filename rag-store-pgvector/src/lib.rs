//! VectorStore and SessionStore for rag on PostgreSQL + pgvector.
//!
//! This crate is a placeholder in the workspace layout; its implementation
//! lands with its own issue. It depends only on `rag-core`.

#![forbid(unsafe_code)]

pub use rag_core;
