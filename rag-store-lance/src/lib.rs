//! VectorStore for rag on embedded LanceDB.
//!
//! This crate is a placeholder in the workspace layout; its implementation
//! lands with its own issue. It depends only on `rag-core`.

#![forbid(unsafe_code)]

pub use rag_core;
