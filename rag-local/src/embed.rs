//! [`LocalEmbedder`]: sentence-transformers BERT-family models on candle.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config as BertConfig;
use rag_core::{Embedder, Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::error::{check_query, check_texts, corrupt_file, join, require_file, runtime};
use crate::models::BGE_QUERY_INSTRUCTION;
use crate::pooling::{Pooling, declared_pooling, read_json, read_modules};
use crate::tokenize;

const BACKEND: &str = "candle";
/// Most padded tokens in one forward pass.
const BATCH_TOKENS: usize = 2048;

/// Configuration of a [`LocalEmbedder`].
///
/// The model directory is in Hugging Face layout: `config.json`,
/// `tokenizer.json`, `model.safetensors`, and for sentence-transformers
/// models `modules.json`, `1_Pooling/config.json` and
/// `sentence_bert_config.json`. Settings left `None` are read from those
/// files:
///
/// | setting | from | when the file is absent |
/// |---|---|---|
/// | pooling | `1_Pooling/config.json` (`pooling_mode_*`) | mean |
/// | normalize | a `Normalize` module in `modules.json` | true when `modules.json` is absent too |
/// | max_seq_length | `sentence_bert_config.json` | `max_position_embeddings` of `config.json` (512 at most) |
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LocalEmbedderConfig {
    /// The model directory.
    pub model_dir: PathBuf,
    /// The model id reported by [`Embedder::model_id`]; default: the
    /// directory's name.
    pub model_id: Option<String>,
    /// Pooling; `None`: from the model's files.
    pub pooling: Option<Pooling>,
    /// L2-normalise the vectors; `None`: from the model's files.
    pub normalize: Option<bool>,
    /// Longest input in tokens (special tokens included); longer inputs are
    /// truncated. `None`: from the model's files. Never more than the
    /// model's `max_position_embeddings`.
    pub max_seq_length: Option<usize>,
    /// Most texts per forward pass; 32 (a pass also holds at most 2048
    /// padded tokens, so long inputs go 8 at a time).
    pub batch_size: usize,
    /// Prepended to queries by [`Embedder::embed_query`] (bge:
    /// [`BGE_QUERY_INSTRUCTION`]; e5: `"query: "`).
    pub query_prefix: Option<String>,
    /// Prepended to passages by [`Embedder::embed`] (e5: `"passage: "`).
    pub passage_prefix: Option<String>,
}

impl LocalEmbedderConfig {
    /// Settings read from the model in `model_dir`.
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        Self {
            model_dir: model_dir.into(),
            model_id: None,
            pooling: None,
            normalize: None,
            max_seq_length: None,
            batch_size: 32,
            query_prefix: None,
            passage_prefix: None,
        }
    }

    /// A bge v1.5 English model: CLS pooling, normalised, queries prefixed
    /// with [`BGE_QUERY_INSTRUCTION`].
    pub fn bge(model_dir: impl Into<PathBuf>) -> Self {
        Self::new(model_dir)
            .with_pooling(Pooling::Cls)
            .with_normalize(true)
            .with_query_prefix(BGE_QUERY_INSTRUCTION)
    }

    /// An e5 model: mean pooling, normalised, `"query: "` and
    /// `"passage: "` prefixes.
    pub fn e5(model_dir: impl Into<PathBuf>) -> Self {
        Self::new(model_dir)
            .with_pooling(Pooling::Mean)
            .with_normalize(true)
            .with_query_prefix("query: ")
            .with_passage_prefix("passage: ")
    }

    /// Sets the model id.
    pub fn with_model_id(mut self, id: impl Into<String>) -> Self {
        self.model_id = Some(id.into());
        self
    }
    /// Sets the pooling.
    pub fn with_pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = Some(pooling);
        self
    }
    /// Sets normalisation.
    pub fn with_normalize(mut self, on: bool) -> Self {
        self.normalize = Some(on);
        self
    }
    /// Sets the longest input in tokens.
    pub fn with_max_seq_length(mut self, tokens: usize) -> Self {
        self.max_seq_length = Some(tokens);
        self
    }
    /// Sets the texts per forward pass (at least 1).
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }
    /// Sets the query prefix.
    pub fn with_query_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.query_prefix = Some(prefix.into());
        self
    }
    /// Sets the passage prefix.
    pub fn with_passage_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.passage_prefix = Some(prefix.into());
        self
    }
}

/// A sentence-transformers embedding model (BERT family: all-MiniLM-L6-v2,
/// bge-small/base, e5) running on the CPU with candle (a BERT encoder of this
/// crate's, faster than candle-transformers' on long inputs).
///
/// Vectors match sentence-transformers (cosine ≥ 0.999 on the test
/// fixture). Inputs are tokenized once, sorted by length and run in batches
/// of `batch_size` padded to their own longest input, on Tokio's blocking
/// pool, never on the async runtime's threads. Candle uses
/// `RAYON_NUM_THREADS` threads (default: every core).
///
/// **Throughput**: run with `CANDLE_NUM_THREADS=1` in the environment.
/// Candle then stops parallelising element-wise operations on its own
/// single-caller pool, and this embedder runs batches side by side on
/// rayon's pool instead: 1.1-1.4x the sentences per second on 2 cores.
///
/// ```no_run
/// use rag_core::Embedder;
/// use rag_local::{LocalEmbedder, LocalEmbedderConfig};
///
/// # async fn run() -> rag_core::Result<()> {
/// let dir = rag_local::default_models_dir().join("all-MiniLM-L6-v2");
/// let embedder = LocalEmbedder::load(LocalEmbedderConfig::new(dir))?;
/// let vectors = embedder.embed(&["Rotate API keys monthly.".to_owned()]).await?;
/// assert_eq!(vectors[0].len(), embedder.dimensions());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LocalEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    model: crate::bert::Bert,
    tokenizer: Tokenizer,
    pad_id: u32,
    model_id: String,
    dimensions: usize,
    pooling: Pooling,
    normalize: bool,
    max_seq_length: usize,
    config: LocalEmbedderConfig,
}

impl fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("LocalEmbedder")
            .field("model_id", &i.model_id)
            .field("dimensions", &i.dimensions)
            .field("pooling", &i.pooling)
            .field("normalize", &i.normalize)
            .field("max_seq_length", &i.max_seq_length)
            .field("config", &i.config)
            .finish()
    }
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

/// Pooling, normalisation and max length as the model directory declares
/// them (`None` where it does not).
fn declared_settings(dir: &Path) -> Result<(Option<Pooling>, Option<bool>, Option<usize>)> {
    let modules = read_modules(dir)?;
    let pooling = declared_pooling(dir, modules.as_deref())?;
    let normalize = modules.map(|m| m.iter().any(|m| m.kind.ends_with("Normalize")));
    let max_len = read_json::<SentenceBertConfig>(
        &dir.join("sentence_bert_config.json"),
        "sentence_bert_config.json",
    )?
    .and_then(|c| c.max_seq_length);
    Ok((pooling, normalize, max_len))
}

impl LocalEmbedder {
    /// Loads the model. Blocking (reads the weights); call it from
    /// `spawn_blocking` inside a busy runtime.
    ///
    /// # Errors
    /// `NotFound` naming a missing file and `scripts/fetch-models`;
    /// `Corrupt` for a file that cannot be parsed.
    pub fn load(config: LocalEmbedderConfig) -> Result<Self> {
        let dir = &config.model_dir;
        let config_path = dir.join("config.json");
        let weights_path = dir.join("model.safetensors");
        require_file(&config_path, "model configuration")?;
        require_file(&dir.join("tokenizer.json"), "tokenizer")?;
        require_file(&weights_path, "model weights")?;

        let bert_config: BertConfig = read_json(&config_path, "model configuration")?
            .ok_or_else(|| crate::error::missing_file(&config_path, "model configuration"))?;
        let (declared_pooling, declared_normalize, declared_max) = declared_settings(dir)?;
        let pooling = config.pooling.or(declared_pooling).unwrap_or(Pooling::Mean);
        let normalize = config.normalize.or(declared_normalize).unwrap_or(true);
        let max_positions = bert_config.max_position_embeddings.max(1);
        let max_seq_length = config
            .max_seq_length
            .or(declared_max)
            .unwrap_or(max_positions.min(512))
            .clamp(2, max_positions);

        let (tokenizer, pad_id) = tokenize::load(&dir.join("tokenizer.json"), max_seq_length)?;
        let bytes = std::fs::read(&weights_path)
            .map_err(|e| corrupt_file(&weights_path, "model weights", e))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &Device::Cpu)
            .map_err(|e| corrupt_file(&weights_path, "model weights", e))?;
        let model = crate::bert::Bert::load(vb, &bert_config).map_err(|e| {
            corrupt_file(
                &weights_path,
                "model weights",
                format!("not a BERT model matching config.json: {e}"),
            )
        })?;
        let model_id = config.model_id.clone().unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "local-embedder".to_owned())
        });
        Ok(Self {
            inner: Arc::new(Inner {
                model,
                tokenizer,
                pad_id,
                model_id,
                dimensions: bert_config.hidden_size,
                pooling,
                normalize,
                max_seq_length,
                config,
            }),
        })
    }

    /// The pooling in use.
    pub fn pooling(&self) -> Pooling {
        self.inner.pooling
    }

    /// Whether vectors are L2-normalised.
    pub fn normalize(&self) -> bool {
        self.inner.normalize
    }

    /// The longest input in tokens; longer inputs are truncated.
    pub fn max_seq_length(&self) -> usize {
        self.inner.max_seq_length
    }

    /// The configuration it was loaded with.
    pub fn config(&self) -> &LocalEmbedderConfig {
        &self.inner.config
    }

    /// Embeds texts on the calling thread, exactly as given (no prefix).
    /// [`Embedder::embed`] runs this on the blocking pool.
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
        let order = tokenize::longest_first(encodings.iter().map(|e| e.len()));
        // Candle parallelises element-wise operations (GELU, masking, layer
        // norm) on a pool of its own that serves one caller at a time, and
        // matrix products on rayon's pool. With `CANDLE_NUM_THREADS=1` its
        // element-wise pool is off, and batches run side by side on rayon's
        // pool instead, which keeps every core busy (1.1-1.4x the throughput
        // on 2 cores). Otherwise batches run one after another.
        let threads = if candle_elementwise_pool_off() {
            rayon::current_num_threads().max(1)
        } else {
            1
        };
        let rows = order
            .len()
            .div_ceil(threads)
            .clamp(1, self.config.batch_size.max(1));
        // Longest first, so a batch's first row is its longest: cap a batch
        // at BATCH_TOKENS padded tokens too, which keeps the attention
        // scores of long inputs small enough for the allocator to reuse.
        let mut batches: Vec<&[usize]> = Vec::new();
        let mut rest = &order[..];
        while let Some(&first) = rest.first() {
            let by_tokens = (BATCH_TOKENS / encodings[first].len().max(1)).max(1);
            let (batch, tail) = rest.split_at(rows.min(by_tokens).min(rest.len()));
            batches.push(batch);
            rest = tail;
        }
        let vectors: Vec<Vec<Vec<f32>>> = batches
            .par_iter()
            .map(|batch| {
                let rows: Vec<_> = batch.iter().map(|&i| &encodings[i]).collect();
                self.forward(&rows)
                    .map_err(|e| runtime(BACKEND, "embedding forward pass failed", e))
            })
            .collect::<Result<_>>()?;
        let mut out = vec![Vec::new(); encodings.len()];
        for (batch, vectors) in batches.iter().zip(vectors) {
            for (&i, v) in batch.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn forward(&self, rows: &[&tokenizers::Encoding]) -> candle_core::Result<Vec<Vec<f32>>> {
        let (ids, mask, types, len) = tokenize::pad_batch(rows, self.pad_id);
        let shape = (rows.len(), len);
        let dev = &Device::Cpu;
        let ids = Tensor::from_vec(ids, shape, dev)?;
        let types = Tensor::from_vec(types, shape, dev)?;
        let mask = Tensor::from_vec(mask, shape, dev)?;
        let hidden = self.model.forward(&ids, &types, &mask)?; // (b, len, h)
        let maskf = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (b, len, 1)
        let pooled = match self.pooling {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let sum = hidden.broadcast_mul(&maskf)?.sum(1)?;
                let count = maskf.sum(1)?.clamp(1e-9f32, f32::MAX)?;
                sum.broadcast_div(&count)?
            }
            Pooling::Max => {
                // Masked positions get a large negative value before the max.
                let neg = ((maskf.ones_like()? - &maskf)? * -1e9f64)?;
                hidden.broadcast_add(&neg)?.max(1)?
            }
        };
        let pooled = if self.normalize {
            let norm = pooled
                .sqr()?
                .sum_keepdim(D::Minus1)?
                .sqrt()?
                .clamp(1e-12f32, f32::MAX)?;
            pooled.broadcast_div(&norm)?
        } else {
            pooled
        };
        pooled.to_vec2::<f32>()
    }
}

/// Whether candle's element-wise thread pool is off (`CANDLE_NUM_THREADS=1`).
fn candle_elementwise_pool_off() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var("CANDLE_NUM_THREADS").is_ok_and(|v| v.trim() == "1"))
}

#[async_trait]
impl Embedder for LocalEmbedder {
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
        let texts = match &self.inner.config.passage_prefix {
            Some(p) => texts.iter().map(|t| format!("{p}{t}")).collect(),
            None => texts.to_vec(),
        };
        self.run(texts).await
    }

    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        check_query(query)?;
        let text = match &self.inner.config.query_prefix {
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
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn settings_come_from_the_sentence_transformers_files() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        assert_eq!(declared_settings(d).unwrap(), (None, None, None));
        write(
            d,
            "modules.json",
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
                {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
        );
        write(
            d,
            "1_Pooling/config.json",
            r#"{"word_embedding_dimension":384,"pooling_mode_cls_token":false,"pooling_mode_mean_tokens":true}"#,
        );
        write(
            d,
            "sentence_bert_config.json",
            r#"{"max_seq_length":256,"do_lower_case":false}"#,
        );
        assert_eq!(
            declared_settings(d).unwrap(),
            (Some(Pooling::Mean), Some(true), Some(256))
        );
        write(
            d,
            "1_Pooling/config.json",
            r#"{"pooling_mode_cls_token":true}"#,
        );
        write(
            d,
            "modules.json",
            r#"[{"path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]"#,
        );
        assert_eq!(
            declared_settings(d).unwrap(),
            (Some(Pooling::Cls), Some(false), Some(256))
        );
        write(d, "modules.json", "not json");
        let err = declared_settings(d).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("modules.json"));
    }

    #[test]
    fn missing_and_corrupt_model_files_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let err = LocalEmbedder::load(LocalEmbedderConfig::new(d)).unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("config.json"), "{err}");
        assert!(err.to_string().contains("scripts/fetch-models"), "{err}");

        write(
            d,
            "config.json",
            r#"{"vocab_size":10,"hidden_size":8,"num_hidden_layers":1,"num_attention_heads":2,
                "intermediate_size":16,"hidden_act":"gelu","hidden_dropout_prob":0.1,
                "max_position_embeddings":32,"type_vocab_size":2,"initializer_range":0.02,
                "layer_norm_eps":1e-12,"pad_token_id":0}"#,
        );
        write(
            d,
            "tokenizer.json",
            r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
                "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,
                "decoder":null,"model":{"type":"WordLevel","vocab":{"[UNK]":0,"a":1},"unk_token":"[UNK]"}}"#,
        );
        let err = LocalEmbedder::load(LocalEmbedderConfig::new(d)).unwrap_err();
        assert!(err.to_string().contains("model.safetensors"), "{err}");

        write(
            d,
            "model.safetensors",
            "this is not a safetensors file at all",
        );
        let err = LocalEmbedder::load(LocalEmbedderConfig::new(d)).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("model.safetensors") && msg.contains("scripts/fetch-models"),
            "{msg}"
        );
    }
}
