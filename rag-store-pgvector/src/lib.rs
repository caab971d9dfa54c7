#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod error;
mod filter;
mod schema;
mod session;
mod store;

pub use config::{
    HnswConfig, IterativeScan, MAX_HALFVEC_DIMS, MAX_VECTOR_DIMS, PgSessionConfig, PgVectorConfig,
    PoolConfig, VectorType, redact_url,
};
pub use session::PgSessionStore;
pub use store::PgVectorStore;

/// The `pgvector` crate this one binds vectors with (`pgvector::Vector`).
pub use pgvector;
pub use rag_core;
/// The `sqlx` this crate is built with, for building pools
/// ([`sqlx::PgPool`], [`sqlx::postgres::PgPoolOptions`]).
pub use sqlx;
pub use sqlx::PgPool;
