#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod error;
pub mod filter;
pub mod schema;
mod store;

pub use config::{Bm25Config, FieldIndex, HnswConfig, MAX_DIMENSIONS, QdrantConfig, Tenancy};
pub use error::BACKEND;
pub use store::{MIXED_VERSIONS, QdrantStore, SUPPORTED_SERVERS};

/// The `qdrant-client` this crate is built with (to query collections
/// directly through [`QdrantStore::client`]).
pub use qdrant_client;
pub use rag_core;
