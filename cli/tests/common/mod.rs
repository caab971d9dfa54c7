//! How the tests run `rag`: in a working directory of their own, on the
//! in-memory store saved to a file there, the offline hash embedder and
//! extractive answers, with no configuration or provider key inherited.

use std::path::Path;
use std::process::Command;

/// `rag` in `dir`.
pub(crate) fn rag_in(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rag"));
    c.current_dir(dir)
        .env_remove("RAG_CONFIG")
        .env_remove("RAG_SERVER_CONFIG")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("GROQ_API_KEY")
        .env("RAG_STORE", "memory")
        .env("RAG_STORE_PATH", dir.join("store.bin"))
        .env("RAG_EMBEDDER", "hash")
        .env("RAG_LLM", "extractive");
    c
}
