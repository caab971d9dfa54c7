//! The session conformance suite against the in-memory reference store,
//! directly and through the `Arc` / `Box` forwarding impls.
#![cfg(feature = "testkit")]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rag_core::testkit::session_store;
use rag_core::{MemorySessionStore, SessionStore};

#[tokio::test]
async fn memory_session_store_conforms() {
    session_store::run_all(&MemorySessionStore::default()).await;
}

#[tokio::test]
async fn memory_session_store_conforms_through_arc() {
    let store: Arc<dyn SessionStore> = Arc::new(MemorySessionStore::default());
    // `&store` is `&Arc<dyn SessionStore>`: the calls go through the Arc impl.
    session_store::run_all(&store).await;
}

#[tokio::test]
async fn memory_session_store_conforms_through_box() {
    let store: Box<dyn SessionStore> = Box::new(MemorySessionStore::default());
    session_store::run_all(&store).await;
}

/// With a clock that never moves, every timestamp ties: ordering must come
/// from activity, and a zero TTL must still expire at once.
#[tokio::test]
async fn memory_session_store_conforms_with_a_frozen_clock() {
    let fixed = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
    let store = MemorySessionStore::default().with_clock(Arc::new(move || fixed));
    session_store::run_all(&store).await;
}
