//! The conformance kit (feature `testkit`).
//!
//! * Conformance suites: plain async functions taking a `&dyn Trait` that
//!   panic with a message naming the broken rule. Every backend and every
//!   wrapper runs them: `testkit::vector_store::run_all(&store).await`.
//!   Each test uses a fresh namespace, so runs never see each other's data.
//! * [`filter_props`]: proptest strategies of random metadata and filters,
//!   and a check of a store's filtering against the reference evaluator.
//! * [`mocks`]: `mockall` mocks of every trait.
//! * [`ScriptedLlm`]: an LLM that replies, streams, fails or waits on cue.
//! * [`crate::HashEmbedder`] (always compiled) is the deterministic offline
//!   embedder the suites use.

pub mod chunker;
pub mod embedder;
pub mod filter_props;
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

/// Whether this run is under CI: `CI` set to anything but empty, `false` or
/// `0` (the same rule as `scripts/test`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The URL of a real service a test needs, from the environment variable
/// `var`. When it is unset: under CI the test fails (a missing service is a
/// failure, never a skip); elsewhere it prints that `test` was NOT RUN and
/// how to start the service (`hint`), and returns `None`.
///
/// # Panics
/// Under CI when `var` is unset or empty.
pub fn service_url(var: &str, test: &str, hint: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if under_ci() => panic!("{var} is not set under CI: {test} must run ({hint})"),
        _ => {
            eprintln!("NOTICE: {test} NOT RUN: {var} is not set ({hint})");
            None
        }
    }
}
