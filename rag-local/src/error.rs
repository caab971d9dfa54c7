//! How failures of the local runtimes map into [`rag_core::Error`].
//!
//! | what happened | `rag_core::Error` |
//! |---|---|
//! | a model file (or the models directory, or `libonnxruntime.so`) is missing | `NotFound`, naming the file and `scripts/fetch-models` |
//! | a model file cannot be parsed (truncated, garbage, wrong format) | `Corrupt { location: the file }`, saying to fetch it again |
//! | an empty text to embed, an empty chat request | `InvalidInput` |
//! | a prompt longer than the model's context window | `ContextLengthExceeded` |
//! | candle or ONNX Runtime fails while running a loaded model | `Backend { retryable: false }` |

// Without a runtime feature only the constants are used.
#![cfg_attr(not(any(feature = "candle", feature = "onnx")), allow(dead_code))]

use std::fmt::Display;
use std::path::Path;

use rag_core::Error;

/// The command that downloads the pinned models.
pub const FETCH_COMMAND: &str = "scripts/fetch-models";

/// `NotFound` for a model file, naming it and how to get it.
pub(crate) fn missing_file(path: &Path, what: &str) -> Error {
    Error::not_found(format!(
        "{what} {} is missing: run `{FETCH_COMMAND}` to download the pinned models into \
         $RAG_MODELS_DIR (default ~/.cache/rag/models), or point the configuration at your own \
         Hugging Face download",
        path.display()
    ))
}

/// `Corrupt` for a model file that exists but cannot be read.
pub(crate) fn corrupt_file(path: &Path, what: &str, err: impl Display) -> Error {
    Error::Corrupt {
        location: path.display().to_string(),
        message: format!(
            "the {what} cannot be read ({err}); delete it and run `{FETCH_COMMAND}` again, or \
             replace it with an intact copy"
        ),
    }
}

/// Checks that `path` is a non-empty file: `NotFound` when absent,
/// `Corrupt` when empty or not a file.
pub(crate) fn require_file(path: &Path, what: &str) -> rag_core::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() && m.len() > 0 => Ok(()),
        Ok(m) if m.is_file() => Err(corrupt_file(path, what, "the file is empty")),
        Ok(_) => Err(corrupt_file(path, what, "it is not a regular file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing_file(path, what)),
        Err(e) => Err(corrupt_file(path, what, e)),
    }
}

/// `InvalidInput` for an empty or whitespace-only text to embed, naming its
/// index.
pub(crate) fn check_texts(texts: &[String]) -> rag_core::Result<()> {
    match texts.iter().position(|t| t.trim().is_empty()) {
        Some(i) => Err(Error::invalid_input(format!("text at index {i} is empty"))),
        None => Ok(()),
    }
}

/// `InvalidInput` for an empty or whitespace-only query.
pub(crate) fn check_query(query: &str) -> rag_core::Result<()> {
    if query.trim().is_empty() {
        return Err(Error::invalid_input("query is empty"));
    }
    Ok(())
}

/// A failure of a runtime while running a loaded model.
pub(crate) fn runtime(backend: &str, what: &str, err: impl Display) -> Error {
    Error::backend(backend, false, format!("{what}: {err}"))
}

/// A blocking task that panicked or was cancelled.
pub(crate) fn join(backend: &str, err: &tokio::task::JoinError) -> Error {
    if err.is_cancelled() {
        Error::Cancelled(format!("{backend} task cancelled"))
    } else {
        Error::backend(backend, false, format!("{backend} task panicked: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let err = require_file(&path, "embedding model weights").unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("model.safetensors"), "{msg}");
        assert!(msg.contains("scripts/fetch-models"), "{msg}");

        std::fs::write(&path, b"").unwrap();
        let err = require_file(&path, "embedding model weights").unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("model.safetensors"));
        assert!(err.to_string().contains("scripts/fetch-models"));

        let err = require_file(dir.path(), "x").unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");

        std::fs::write(&path, b"x").unwrap();
        require_file(&path, "embedding model weights").unwrap();
    }
}
