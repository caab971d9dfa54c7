//! [`CrossEncoderReranker`]: a cross-encoder on ONNX Runtime.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;
use rag_core::{Error, Reranker, Result, ScoredChunk};
use serde::{Deserialize, Serialize};
use tokenizers::{EncodeInput, Tokenizer};

use crate::error::{corrupt_file, join, missing_file, require_file, runtime};
use crate::models::ONNXRUNTIME_LIBRARY;
use crate::tokenize;

const BACKEND: &str = "onnxruntime";

/// What a [`CrossEncoderReranker`] reports as `rerank_score`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ScoreMode {
    /// The model's raw relevance logit (ms-marco MiniLM: about -11 to
    /// +11), exactly what ONNX Runtime returns.
    #[default]
    Logit,
    /// The logit through a sigmoid, in (0, 1) (what sentence-transformers'
    /// `CrossEncoder.predict` returns by default). Same order.
    Sigmoid,
}

/// Configuration of a [`CrossEncoderReranker`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CrossEncoderConfig {
    /// Directory with `model.onnx` (inputs `input_ids`, `attention_mask`,
    /// optionally `token_type_ids`; output `logits [batch, 1]`) and
    /// `tokenizer.json`.
    pub model_dir: PathBuf,
    /// The ONNX Runtime shared library; `None`: `ORT_DYLIB_PATH`, else
    /// `onnxruntime/libonnxruntime.so` in the models directory (the parent
    /// of `model_dir`). Only the first library loaded in a process is used.
    pub onnxruntime_library: Option<PathBuf>,
    /// Longest query + passage pair in tokens, special tokens included; the
    /// longer of the two (the passage, in practice) is truncated first.
    /// 192 by default: the model accepts 512, but it was trained on MS MARCO
    /// passages, nearly all shorter than 192 tokens, and the cost grows a
    /// little faster than the length (20 candidates of 120-420 words: about
    /// 0.5 s at 192 tokens, 0.7 s at 256, 1.0 s at 512 on 2 cores). Raise it
    /// for long chunks whose relevant part may come late.
    pub max_length: usize,
    /// Pairs per forward pass; 8. Pairs are sorted by length so that a
    /// batch pads little.
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads; `None`: every core.
    pub threads: Option<usize>,
    /// What the scores are.
    pub score: ScoreMode,
    /// The model id; default: the directory's name.
    pub model_id: Option<String>,
}

impl CrossEncoderConfig {
    /// Defaults for the model in `model_dir`.
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        Self {
            model_dir: model_dir.into(),
            onnxruntime_library: None,
            max_length: 192,
            batch_size: 8,
            threads: None,
            score: ScoreMode::Logit,
            model_id: None,
        }
    }
    /// Sets the ONNX Runtime library.
    pub fn with_onnxruntime_library(mut self, path: impl Into<PathBuf>) -> Self {
        self.onnxruntime_library = Some(path.into());
        self
    }
    /// Sets the longest pair in tokens (at least 8).
    pub fn with_max_length(mut self, tokens: usize) -> Self {
        self.max_length = tokens.max(8);
        self
    }
    /// Sets the pairs per forward pass (at least 1).
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
    /// Sets the intra-op threads.
    pub fn with_threads(mut self, n: usize) -> Self {
        self.threads = Some(n.max(1));
        self
    }
    /// Sets what the scores are.
    pub fn with_score(mut self, mode: ScoreMode) -> Self {
        self.score = mode;
        self
    }
    /// Sets the model id.
    pub fn with_model_id(mut self, id: impl Into<String>) -> Self {
        self.model_id = Some(id.into());
        self
    }

    fn library(&self) -> PathBuf {
        library_path(self.onnxruntime_library.as_deref(), &self.model_dir)
    }
}

/// The ONNX Runtime library to load: `explicit`, else `ORT_DYLIB_PATH`,
/// else `onnxruntime/libonnxruntime.so` in the models directory (the parent
/// of `model_dir`).
pub(crate) fn library_path(explicit: Option<&Path>, model_dir: &Path) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let models = model_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(crate::default_models_dir);
    models.join(ONNXRUNTIME_LIBRARY)
}

/// A cross-encoder reranker (ms-marco-MiniLM-L-12-v2 by default, the int8
/// ONNX export) on ONNX Runtime, loaded at run time from
/// `libonnxruntime.so` (`ort`'s `load-dynamic`: nothing native is linked at
/// build time).
///
/// Each candidate is scored as the pair (query, chunk text), tokenized with
/// truncation to [`CrossEncoderConfig::max_length`] and padding to the
/// batch's longest pair (not the fixed 512 the shipped `tokenizer.json`
/// asks for). Candidates come back best-first with `rerank_score` and
/// `score` set to the model's logit (or its sigmoid, [`ScoreMode`]); ties
/// keep their input order. Scoring runs on Tokio's blocking pool.
///
/// ```no_run
/// use rag_local::{CrossEncoderConfig, CrossEncoderReranker};
///
/// # fn main() -> rag_core::Result<()> {
/// let dir = rag_local::default_models_dir().join("ms-marco-MiniLM-L-12-v2");
/// let reranker = CrossEncoderReranker::load(CrossEncoderConfig::new(dir))?;
/// let scores = reranker.score_blocking("how to rotate keys", &["Rotate keys monthly."])?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CrossEncoderReranker {
    inner: Arc<Inner>,
}

struct Inner {
    session: Mutex<Session>,
    tokenizer: Tokenizer,
    pad_id: u32,
    wants_token_types: bool,
    model_id: String,
    config: CrossEncoderConfig,
}

impl fmt::Debug for CrossEncoderReranker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrossEncoderReranker")
            .field("model_id", &self.inner.model_id)
            .field("config", &self.inner.config)
            .finish()
    }
}

/// The process's ONNX Runtime environment, created from the first library
/// loaded.
static ENVIRONMENT: OnceLock<std::result::Result<(Environment, PathBuf), String>> = OnceLock::new();

fn environment(library: &Path) -> Result<Environment> {
    let made = ENVIRONMENT.get_or_init(|| {
        if !library.is_file() {
            return Err(String::new());
        }
        ort::init_from(library)
            .map_err(|e| e.to_string())?
            .with_name("rag-local")
            .build()
            .map(|env| (env, library.to_path_buf()))
            .map_err(|e| e.to_string())
    });
    match made {
        Ok((env, loaded)) => {
            if loaded != library {
                tracing::debug!(
                    asked = %library.display(),
                    loaded = %loaded.display(),
                    "ONNX Runtime is already loaded in this process; using that library"
                );
            }
            Ok(env.clone())
        }
        Err(e) if e.is_empty() => Err(missing_file(library, "ONNX Runtime library")),
        Err(e) => Err(corrupt_file(library, "ONNX Runtime library", e)),
    }
}

/// A session on the encoder `model_path` (the `what` of error messages),
/// with `threads` intra-op threads (`None`: every core), on the process's
/// environment (see [`environment`]). Checks that the model takes
/// `input_ids` and `attention_mask`.
pub(crate) fn session(
    model_path: &Path,
    what: &str,
    library: &Path,
    threads: Option<usize>,
) -> Result<Session> {
    if ENVIRONMENT.get().is_none() {
        require_file(library, "ONNX Runtime library")?;
    }
    let env = environment(library)?;
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let configure = |e: ort::Error<_>| runtime(BACKEND, "cannot configure a session", e);
    let session = Session::builder(&env)
        .map_err(|e| runtime(BACKEND, "cannot create a session", e))?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(configure)?
        .with_intra_threads(threads)
        .map_err(configure)?
        .with_inter_threads(1)
        .map_err(configure)?
        .commit_from_file(model_path)
        .map_err(|e| corrupt_file(model_path, what, e))?;
    let inputs: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    for needed in ["input_ids", "attention_mask"] {
        if !inputs.contains(&needed) {
            return Err(corrupt_file(
                model_path,
                what,
                format!("it has no input {needed:?} (inputs: {inputs:?})"),
            ));
        }
    }
    Ok(session)
}

impl CrossEncoderReranker {
    /// Loads the model. Blocking.
    ///
    /// # Errors
    /// `NotFound` naming a missing file (the model, its tokenizer or
    /// `libonnxruntime.so`) and `scripts/fetch-models`; `Corrupt` for a file
    /// that cannot be loaded.
    pub fn load(config: CrossEncoderConfig) -> Result<Self> {
        let dir = &config.model_dir;
        let model_path = dir.join("model.onnx");
        let tokenizer_path = dir.join("tokenizer.json");
        require_file(&model_path, "cross-encoder model")?;
        require_file(&tokenizer_path, "tokenizer")?;
        let session = session(
            &model_path,
            "cross-encoder model",
            &config.library(),
            config.threads,
        )?;
        let (tokenizer, pad_id) = tokenize::load(&tokenizer_path, config.max_length)?;
        let wants_token_types = session
            .inputs()
            .iter()
            .any(|i| i.name() == "token_type_ids");
        let model_id = config.model_id.clone().unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "cross-encoder".to_owned())
        });
        Ok(Self {
            inner: Arc::new(Inner {
                session: Mutex::new(session),
                tokenizer,
                pad_id,
                wants_token_types,
                model_id,
                config,
            }),
        })
    }

    /// The model id.
    pub fn model_id(&self) -> &str {
        &self.inner.model_id
    }

    /// The configuration it was loaded with.
    pub fn config(&self) -> &CrossEncoderConfig {
        &self.inner.config
    }

    /// Scores each passage against the query on the calling thread, in input
    /// order ([`ScoreMode`] applied).
    pub fn score_blocking(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>> {
        let pairs: Vec<(&str, &str)> = passages.iter().map(|p| (query, *p)).collect();
        self.inner.score(&pairs)
    }

    /// Scores (query, passage) pairs on the calling thread, in input order.
    ///
    /// The int8 model quantizes activations per batch, so a pair's score
    /// moves slightly (by about 0.01-0.05 in logit) with the other pairs of
    /// its batch; the order of clearly different candidates does not.
    pub fn score_pairs_blocking(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        self.inner.score(pairs)
    }
}

impl Inner {
    fn score(&self, pairs: &[(&str, &str)]) -> Result<Vec<f32>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let inputs: Vec<EncodeInput<'_>> = pairs.iter().map(|&(q, p)| (q, p).into()).collect();
        let encodings = tokenize::encode(&self.tokenizer, BACKEND, inputs)?;
        let order = tokenize::longest_first(encodings.iter().map(|e| e.len()));
        let mut scores = vec![0f32; pairs.len()];
        let mut session = self
            .session
            .lock()
            .map_err(|_| Error::backend(BACKEND, false, "a previous run panicked"))?;
        for batch in order.chunks(self.config.batch_size.max(1)) {
            let rows: Vec<_> = batch.iter().map(|&i| &encodings[i]).collect();
            let (ids, mask, types, len) = tokenize::pad_batch(&rows, self.pad_id);
            let shape = [rows.len(), len];
            let widen = |v: Vec<u32>| v.into_iter().map(i64::from).collect::<Vec<i64>>();
            let tensor = |v: Vec<u32>| {
                Tensor::from_array((shape, widen(v)))
                    .map_err(|e| runtime(BACKEND, "cannot build an input tensor", e))
            };
            let mut inputs = ort::inputs![
                "input_ids" => tensor(ids)?,
                "attention_mask" => tensor(mask)?,
            ];
            if self.wants_token_types {
                inputs.push(("token_type_ids".into(), tensor(types)?.into()));
            }
            let outputs = session
                .run(inputs)
                .map_err(|e| runtime(BACKEND, "cross-encoder run failed", e))?;
            let (_, logits) = outputs[0]
                .try_extract_tensor::<f32>()
                .map_err(|e| runtime(BACKEND, "cross-encoder output is not f32 logits", e))?;
            if logits.len() < rows.len() {
                return Err(runtime(
                    BACKEND,
                    "cross-encoder output",
                    format!("{} logits for {} pairs", logits.len(), rows.len()),
                ));
            }
            // `logits [batch, n]`: the first column is the relevance logit.
            let per_row = logits.len() / rows.len();
            for (k, &i) in batch.iter().enumerate() {
                let logit = logits[k * per_row];
                scores[i] = match self.config.score {
                    ScoreMode::Logit => logit,
                    ScoreMode::Sigmoid => 1.0 / (1.0 + (-logit).exp()),
                };
            }
        }
        Ok(scores)
    }
}

#[async_trait]
impl Reranker for CrossEncoderReranker {
    async fn rerank(
        &self,
        query: &str,
        candidates: Vec<ScoredChunk>,
        top_n: usize,
    ) -> Result<Vec<ScoredChunk>> {
        if candidates.is_empty() || top_n == 0 {
            return Ok(Vec::new());
        }
        let inner = Arc::clone(&self.inner);
        let query = query.to_owned();
        let (candidates, scores) = tokio::task::spawn_blocking(move || {
            let pairs: Vec<(&str, &str)> = candidates
                .iter()
                .map(|c| (query.as_str(), c.chunk.text.as_str()))
                .collect();
            let scores = inner.score(&pairs);
            (candidates, scores)
        })
        .await
        .map_err(|e| join(BACKEND, &e))?;
        let mut scored: Vec<(f32, ScoredChunk)> = scores?.into_iter().zip(candidates).collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(scored
            .into_iter()
            .take(top_n)
            .map(|(s, mut c)| {
                c.rerank_score = Some(s);
                c.score = s;
                c
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ms-marco-MiniLM-L-12-v2");
        std::fs::create_dir_all(&dir).unwrap();
        let err = CrossEncoderReranker::load(CrossEncoderConfig::new(&dir)).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("model.onnx"), "{err}");
        assert!(err.to_string().contains("scripts/fetch-models"), "{err}");
    }

    #[test]
    fn missing_runtime_library_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cross-encoder");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.onnx"), b"x").unwrap();
        std::fs::write(dir.join("tokenizer.json"), b"{}").unwrap();
        let lib = tmp.path().join("onnxruntime/libonnxruntime.so");
        let err = CrossEncoderReranker::load(
            CrossEncoderConfig::new(&dir).with_onnxruntime_library(&lib),
        )
        .unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("libonnxruntime.so") && msg.contains("scripts/fetch-models"),
            "{msg}"
        );
    }

    #[test]
    fn library_defaults_to_the_models_directory() {
        let c =
            CrossEncoderConfig::new("/m/ms-marco").with_onnxruntime_library("/x/libonnxruntime.so");
        assert_eq!(c.library(), PathBuf::from("/x/libonnxruntime.so"));
        if std::env::var_os("ORT_DYLIB_PATH").is_none() {
            let c = CrossEncoderConfig::new("/m/ms-marco");
            assert_eq!(
                c.library(),
                PathBuf::from("/m/onnxruntime/libonnxruntime.so")
            );
        }
    }
}
