//! In-memory reference backends, always compiled.
//!
//! [`MemoryVectorStore`] is the reference every other store is compared with
//! by the conformance kit; [`MemorySessionStore`] likewise for sessions.

mod persist;
mod session;
mod store;

pub use session::{MemorySessionConfig, MemorySessionStore};
pub use store::{Bm25Params, MemoryConfig, MemoryVectorStore};
