//! [`OnnxEmbedder`]: a BERT-family embedding model exported to ONNX
//! (bge-small-en-v1.5, int8, by default) on ONNX Runtime.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ort::session::Session;
use ort::value::Tensor;
use rag_core::{Embedder, Error, Result};
use serde::{Deserialize, Serialize};
use tokenizers::{Encoding, Tokenizer};

use crate::error::{check_query, check_texts, corrupt_file, join, require_file, runtime};
use crate::models::BGE_QUERY_INSTRUCTION;
use crate::pooling::{Pooling, declared_pooling, read_json, read_modules};
use crate::rerank::{library_path, session};
use crate::tokenize;

const BACKEND: &str = "onnxruntime";
const MODEL: &str = "embedding model";
/// The output read, when the model has it; otherwise its first output.
const HIDDEN_STATE: &str = "last_hidden_state";

/// Configuration of an [`OnnxEmbedder`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OnnxEmbedderConfig {
    /// Directory with `model.onnx` (inputs `input_ids`, `attention_mask`,
    /// optionally `token_type_ids`, int64 `[batch, seq]`; output
    /// `last_hidden_state [batch, seq, hidden]`) and `tokenizer.json`;
    /// optionally `config.json` (its `hidden_size` and
    /// `max_position_embeddings` are checked against the model and cap
    /// `max_length`) and `1_Pooling/config.json`.
    pub model_dir: PathBuf,
    /// The ONNX Runtime shared library; `None`: `ORT_DYLIB_PATH`, else
    /// `onnxruntime/libonnxruntime.so` in the models directory (the parent
    /// of `model_dir`). Only the first library loaded in a process is used.
    pub onnxruntime_library: Option<PathBuf>,
    /// Pooling; `None`: what the directory's `1_Pooling/config.json` (or
    /// `modules.json`) declares, else CLS (bge).
    pub pooling: Option<Pooling>,
    /// L2-normalise the vectors; true.
    pub normalize: bool,
    /// Longest input in tokens, special tokens included; longer inputs are
    /// truncated. 512, and never more than `config.json`'s
    /// `max_position_embeddings`.
    pub max_length: usize,
    /// Texts per forward pass; 16. Texts are sorted by length so that a
    /// batch pads little. 1 makes every text's vector independent of the
    /// others (see [`OnnxEmbedder`]).
    pub batch_size: usize,
    /// ONNX Runtime intra-op threads; `None`: every core.
    pub threads: Option<usize>,
    /// Prepended to queries by [`Embedder::embed_query`], never to
    /// passages. Default: [`BGE_QUERY_INSTRUCTION`] when the directory's
    /// name contains "bge", else none.
    pub query_instruction: Option<String>,
    /// The model id; default: the directory's name.
    pub model_id: Option<String>,
}

impl OnnxEmbedderConfig {
    /// Defaults for the model in `model_dir`.
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        let model_dir = model_dir.into();
        let bge = model_dir
            .file_name()
            .is_some_and(|n| n.to_string_lossy().to_lowercase().contains("bge"));
        Self {
            model_dir,
            onnxruntime_library: None,
            pooling: None,
            normalize: true,
            max_length: 512,
            batch_size: 16,
            threads: None,
            query_instruction: bge.then(|| BGE_QUERY_INSTRUCTION.to_owned()),
            model_id: None,
        }
    }
    /// Sets the ONNX Runtime library.
    pub fn with_onnxruntime_library(mut self, path: impl Into<PathBuf>) -> Self {
        self.onnxruntime_library = Some(path.into());
        self
    }
    /// Sets the pooling.
    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = Some(pooling);
        self
    }
    /// Sets normalisation.
    pub fn with_normalize(mut self, on: bool) -> Self {
        self.normalize = on;
        self
    }
    /// Sets the longest input in tokens (at least 2: `[CLS]` and `[SEP]`).
    pub fn with_max_length(mut self, tokens: usize) -> Self {
        self.max_length = tokens.max(2);
        self
    }
    /// Sets the texts per forward pass (at least 1).
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
    /// Sets the intra-op threads.
    pub fn with_threads(mut self, n: usize) -> Self {
        self.threads = Some(n.max(1));
        self
    }
    /// Sets the query instruction.
    pub fn with_query_instruction(mut self, instruction: impl Into<String>) -> Self {
        self.query_instruction = Some(instruction.into());
        self
    }
    /// Embeds queries as given, with no instruction.
    pub fn without_query_instruction(mut self) -> Self {
        self.query_instruction = None;
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

/// A BERT-family embedding model exported to ONNX (bge-small-en-v1.5, the
/// int8 export, by default: [`LocalModels::bge_embedder`]) on ONNX Runtime,
/// loaded at run time from `libonnxruntime.so` like the
/// [`CrossEncoderReranker`](crate::CrossEncoderReranker).
///
/// Texts are tokenized with truncation to
/// [`OnnxEmbedderConfig::max_length`], sorted by length and run in batches
/// of [`OnnxEmbedderConfig::batch_size`] padded to their own longest, on
/// Tokio's blocking pool. The vector is the pooled last hidden state (CLS
/// for bge), L2-normalised. [`Embedder::embed_query`] prepends the query
/// instruction ([`BGE_QUERY_INSTRUCTION`] for bge); [`Embedder::embed`]
/// embeds passages as given. Empty texts are `InvalidInput`.
///
/// Vectors match onnxruntime in Python on the same batch (cosine
/// 0.9999999 on the test fixture). The int8 model quantizes activations per
/// forward pass, with one scale for the whole batch, so a text's vector
/// moves with the other texts of its batch: cosine 0.989-0.997 to the same
/// text embedded alone, below the 0.999 of rag-core's embedder conformance
/// suite. Rankings do not notice; where a text's vector must not depend on
/// its neighbours, set [`OnnxEmbedderConfig::with_batch_size`] to 1 (about
/// 10-25% fewer sentences per second on 2 cores).
///
/// ```no_run
/// use rag_core::Embedder;
///
/// # async fn run() -> rag_core::Result<()> {
/// let embedder = rag_local::LocalModels::from_env()?.bge_embedder()?;
/// let passages = embedder.embed(&["Rotate API keys monthly.".to_owned()]).await?;
/// let query = embedder.embed_query("how often are keys rotated?").await?;
/// assert_eq!(query.len(), embedder.dimensions());
/// # Ok(()) }
/// ```
///
/// [`LocalModels::bge_embedder`]: crate::LocalModels::bge_embedder
#[derive(Clone)]
pub struct OnnxEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    session: Mutex<Session>,
    tokenizer: Tokenizer,
    pad_id: u32,
    wants_token_types: bool,
    output: String,
    model_id: String,
    dimensions: usize,
    pooling: Pooling,
    max_length: usize,
    config: OnnxEmbedderConfig,
}

impl fmt::Debug for OnnxEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("OnnxEmbedder")
            .field("model_id", &i.model_id)
            .field("dimensions", &i.dimensions)
            .field("pooling", &i.pooling)
            .field("max_length", &i.max_length)
            .field("config", &i.config)
            .finish()
    }
}

/// The parts of `config.json` read.
#[derive(Deserialize)]
struct ModelConfig {
    hidden_size: Option<usize>,
    max_position_embeddings: Option<usize>,
}

impl OnnxEmbedder {
    /// Loads the model. Blocking.
    ///
    /// # Errors
    /// `NotFound` naming a missing file (the model, its tokenizer or
    /// `libonnxruntime.so`) and `scripts/fetch-models`; `Corrupt` for a file
    /// that cannot be loaded, or a model whose inputs or output are not
    /// those of a BERT encoder.
    pub fn load(config: OnnxEmbedderConfig) -> Result<Self> {
        let dir = &config.model_dir;
        let model_path = dir.join("model.onnx");
        let tokenizer_path = dir.join("tokenizer.json");
        let config_path = dir.join("config.json");
        require_file(&model_path, MODEL)?;
        require_file(&tokenizer_path, "tokenizer")?;
        let declared: Option<ModelConfig> = read_json(&config_path, "model configuration")?;
        let pooling = match config.pooling {
            Some(p) => p,
            None => declared_pooling(dir, read_modules(dir)?.as_deref())?.unwrap_or(Pooling::Cls),
        };
        let max_positions = declared
            .as_ref()
            .and_then(|c| c.max_position_embeddings)
            .unwrap_or(usize::MAX);
        let max_length = config.max_length.clamp(2, max_positions.max(2));

        let session = session(&model_path, MODEL, &config.library(), config.threads)?;
        let wants_token_types = session
            .inputs()
            .iter()
            .any(|i| i.name() == "token_type_ids");
        let output = session
            .outputs()
            .iter()
            .find(|o| o.name() == HIDDEN_STATE)
            .or_else(|| session.outputs().first())
            .ok_or_else(|| corrupt_file(&model_path, MODEL, "it has no output"))?;
        // `[batch, seq, hidden]`, with `hidden` fixed in the graph (or, if
        // not, in config.json).
        let shape = output.dtype().tensor_shape().map(|s| s.to_vec());
        let graph_dims = match shape.as_deref() {
            Some([_, _, h]) => usize::try_from(*h).ok().filter(|&h| h > 0),
            _ => {
                return Err(corrupt_file(
                    &model_path,
                    MODEL,
                    format!(
                        "output {:?} is not a [batch, sequence, hidden] tensor ({shape:?})",
                        output.name()
                    ),
                ));
            }
        };
        let config_dims = declared.as_ref().and_then(|c| c.hidden_size);
        let dimensions = match (graph_dims, config_dims) {
            (Some(g), Some(c)) if g != c => {
                return Err(corrupt_file(
                    &config_path,
                    "model configuration",
                    format!("hidden_size {c} does not match the model's output ({g})"),
                ));
            }
            (Some(d), _) | (None, Some(d)) => d,
            (None, None) => {
                return Err(corrupt_file(
                    &model_path,
                    MODEL,
                    "its output's width is not fixed and there is no config.json with hidden_size",
                ));
            }
        };
        let output = output.name().to_owned();
        let (tokenizer, pad_id) = tokenize::load(&tokenizer_path, max_length)?;
        let model_id = config.model_id.clone().unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "onnx-embedder".to_owned())
        });
        Ok(Self {
            inner: Arc::new(Inner {
                session: Mutex::new(session),
                tokenizer,
                pad_id,
                wants_token_types,
                output,
                model_id,
                dimensions,
                pooling,
                max_length,
                config,
            }),
        })
    }

    /// The pooling in use.
    pub fn pooling(&self) -> Pooling {
        self.inner.pooling
    }

    /// The longest input in tokens; longer inputs are truncated.
    pub fn max_length(&self) -> usize {
        self.inner.max_length
    }

    /// The instruction [`Embedder::embed_query`] prepends.
    pub fn query_instruction(&self) -> Option<&str> {
        self.inner.config.query_instruction.as_deref()
    }

    /// The configuration it was loaded with.
    pub fn config(&self) -> &OnnxEmbedderConfig {
        &self.inner.config
    }

    /// Embeds texts on the calling thread, exactly as given (no
    /// instruction, no check for empty texts). [`Embedder::embed`] runs
    /// this on the blocking pool.
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        self.inner.embed(texts.iter().map(String::as_str).collect())
    }

    async fn run(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || inner.embed(texts.iter().map(String::as_str).collect()))
            .await
            .map_err(|e| join(BACKEND, &e))?
    }
}

impl Inner {
    fn embed(&self, texts: Vec<&str>) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = tokenize::encode(&self.tokenizer, BACKEND, texts)?;
        let order = tokenize::longest_first(encodings.iter().map(Encoding::len));
        let mut out = vec![Vec::new(); encodings.len()];
        let mut session = self
            .session
            .lock()
            .map_err(|_| Error::backend(BACKEND, false, "a previous run panicked"))?;
        for batch in order.chunks(self.config.batch_size.max(1)) {
            let rows: Vec<&Encoding> = batch.iter().map(|&i| &encodings[i]).collect();
            let (ids, mask, types, len) = tokenize::pad_batch(&rows, self.pad_id);
            let shape = [rows.len(), len];
            let tensor = |v: &[u32]| {
                let v: Vec<i64> = v.iter().map(|&x| i64::from(x)).collect();
                Tensor::from_array((shape, v))
                    .map_err(|e| runtime(BACKEND, "cannot build an input tensor", e))
            };
            let mut inputs = ort::inputs![
                "input_ids" => tensor(&ids)?,
                "attention_mask" => tensor(&mask)?,
            ];
            if self.wants_token_types {
                inputs.push(("token_type_ids".into(), tensor(&types)?.into()));
            }
            let outputs = session
                .run(inputs)
                .map_err(|e| runtime(BACKEND, "embedding model run failed", e))?;
            let (got, hidden) = outputs[self.output.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(|e| runtime(BACKEND, "embedding model output is not f32", e))?;
            let want = [rows.len(), len, self.dimensions];
            if got.len() != 3 || got.iter().zip(want).any(|(&g, w)| g != w as i64) {
                return Err(runtime(
                    BACKEND,
                    "embedding model output",
                    format!("shape {:?}, expected {want:?}", got.to_vec()),
                ));
            }
            let vectors = pool(
                hidden,
                &mask,
                len,
                self.dimensions,
                self.pooling,
                self.config.normalize,
            );
            for (&i, v) in batch.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }
}

/// One vector per row of `hidden` (`[rows, len, dim]`, row-major) under
/// `mask` (`[rows, len]`).
fn pool(
    hidden: &[f32],
    mask: &[u32],
    len: usize,
    dim: usize,
    pooling: Pooling,
    normalize: bool,
) -> Vec<Vec<f32>> {
    let rows = mask.len() / len.max(1);
    (0..rows)
        .map(|r| {
            let tokens = &hidden[r * len * dim..(r + 1) * len * dim];
            let kept = || {
                (0..len)
                    .filter(move |&t| mask[r * len + t] != 0)
                    .map(move |t| &tokens[t * dim..(t + 1) * dim])
            };
            let mut v = match pooling {
                Pooling::Cls => tokens[..dim].to_vec(),
                Pooling::Mean => {
                    let mut sum = vec![0f32; dim];
                    let mut n = 0usize;
                    for tok in kept() {
                        sum.iter_mut().zip(tok).for_each(|(s, x)| *s += x);
                        n += 1;
                    }
                    let n = n.max(1) as f32;
                    sum.iter_mut().for_each(|s| *s /= n);
                    sum
                }
                Pooling::Max => {
                    let mut max = vec![f32::NEG_INFINITY; dim];
                    for tok in kept() {
                        max.iter_mut().zip(tok).for_each(|(m, &x)| *m = m.max(x));
                    }
                    max.iter_mut()
                        .filter(|m| m.is_infinite())
                        .for_each(|m| *m = 0.0);
                    max
                }
            };
            if normalize {
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|x| *x /= norm);
            }
            v
        })
        .collect()
}

#[async_trait]
impl Embedder for OnnxEmbedder {
    fn model_id(&self) -> &str {
        &self.inner.model_id
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        check_texts(texts)?;
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        self.run(texts.to_vec()).await
    }

    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        check_query(query)?;
        let text = match &self.inner.config.query_instruction {
            Some(p) => format!("{p}{query}"),
            None => query.to_owned(),
        };
        self.run(vec![text])
            .await?
            .pop()
            .ok_or_else(|| Error::backend(BACKEND, false, "the model returned no vector"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn missing_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bge-small-en-v1.5");
        std::fs::create_dir_all(&dir).unwrap();
        let lib = tmp.path().join("onnxruntime/libonnxruntime.so");
        let load = || {
            OnnxEmbedder::load(OnnxEmbedderConfig::new(&dir).with_onnxruntime_library(&lib))
                .unwrap_err()
        };
        let err = load();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("model.onnx") && msg.contains("scripts/fetch-models"),
            "{msg}"
        );

        write(&dir, "model.onnx", "x");
        let err = load();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("tokenizer.json") && msg.contains("scripts/fetch-models"),
            "{msg}"
        );

        write(&dir, "tokenizer.json", "{}");
        write(&dir, "config.json", "not json");
        let err = load();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("config.json"), "{err}");

        std::fs::remove_file(dir.join("config.json")).unwrap();
        let err = load();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        let msg = err.to_string();
        // No unit test loads a real library, so it is still checked.
        assert!(
            msg.contains("libonnxruntime.so") && msg.contains("scripts/fetch-models"),
            "{msg}"
        );
    }

    #[test]
    fn defaults_follow_the_directory() {
        let c = OnnxEmbedderConfig::new("/m/bge-small-en-v1.5");
        assert_eq!(c.query_instruction.as_deref(), Some(BGE_QUERY_INSTRUCTION));
        assert_eq!((c.normalize, c.max_length, c.batch_size), (true, 512, 16));
        assert_eq!(
            (c.pooling, c.threads, c.model_id.as_deref()),
            (None, None, None)
        );
        assert_eq!(
            OnnxEmbedderConfig::new("/m/BAAI_BGE-base")
                .query_instruction
                .as_deref(),
            Some(BGE_QUERY_INSTRUCTION)
        );
        let c = OnnxEmbedderConfig::new("/m/e5-small-v2");
        assert_eq!(c.query_instruction, None);
        let c = c.with_query_instruction("query: ");
        assert_eq!(c.query_instruction.as_deref(), Some("query: "));
        let c = OnnxEmbedderConfig::new("/m/bge").without_query_instruction();
        assert_eq!(c.query_instruction, None);
        assert_eq!(
            c.with_onnxruntime_library("/x/libonnxruntime.so").library(),
            PathBuf::from("/x/libonnxruntime.so")
        );
    }

    #[test]
    fn pooling_of_masked_rows() {
        // Two rows of three tokens, two dimensions; the second row's last
        // token is padding.
        let hidden = [
            3.0, 4.0, 1.0, 0.0, 2.0, 2.0, //
            0.0, 2.0, 4.0, 0.0, 100.0, 100.0,
        ];
        let mask = [1, 1, 1, 1, 1, 0];
        assert_eq!(
            pool(&hidden, &mask, 3, 2, Pooling::Cls, false),
            vec![vec![3.0, 4.0], vec![0.0, 2.0]]
        );
        assert_eq!(
            pool(&hidden, &mask, 3, 2, Pooling::Cls, true),
            vec![vec![0.6, 0.8], vec![0.0, 1.0]]
        );
        assert_eq!(
            pool(&hidden, &mask, 3, 2, Pooling::Mean, false),
            vec![vec![2.0, 2.0], vec![2.0, 1.0]]
        );
        assert_eq!(
            pool(&hidden, &mask, 3, 2, Pooling::Max, false),
            vec![vec![3.0, 4.0], vec![4.0, 2.0]]
        );
    }

    #[test]
    fn declared_pooling_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        assert_eq!(declared_pooling(d, None).unwrap(), None);
        write(
            d,
            "1_Pooling/config.json",
            r#"{"pooling_mode_cls_token":false,"pooling_mode_mean_tokens":true}"#,
        );
        assert_eq!(declared_pooling(d, None).unwrap(), Some(Pooling::Mean));
    }
}
