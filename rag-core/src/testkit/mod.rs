//! The conformance kit (feature `testkit`).
//!
//! * Conformance suites: plain async functions taking a `&dyn Trait` that
//!   panic with a message naming the broken rule. Every backend and every
//!   wrapper runs them: `testkit::vector_store::run_all(&store).await`.
//!   Each test uses a fresh namespace, so runs never see each other's data.
//! * [`mocks`]: `mockall` mocks of every trait.
//! * [`ScriptedLlm`]: an LLM that replies, streams, fails or waits on cue.
//! * [`crate::HashEmbedder`] (always compiled) is the deterministic offline
//!   embedder the suites use.

pub mod chunker;
pub mod embedder;
pub mod llm;
pub mod mocks;
mod scripted;
pub mod session_store;
pub mod vector_store;

pub use crate::embed::HashEmbedder;
pub use scripted::{ScriptedLlm, Step};

/// A fresh namespace for one test: `kit_{test}_{random}`, at most 64 bytes.
pub fn fresh_namespace(test: &str) -> crate::Namespace {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let mut name: String = test
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    name = format!("kit_{name}_{}", &suffix[..12]);
    crate::Namespace::new(name).expect("generated namespace is valid")
}
