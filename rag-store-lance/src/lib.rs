#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod error;
pub mod filter;
mod schema;
mod store;

pub use config::{
    FtsConfig, LanceConfig, MAX_DIMENSIONS, VectorIndexConfig, VectorIndexKind, redact_uri,
};
pub use schema::CHUNK_COLUMNS;
pub use store::{BACKEND, LanceVectorStore, MaintenanceReport};

/// The `lancedb` this crate is built with (to query its tables directly).
pub use lancedb;
pub use rag_core;
