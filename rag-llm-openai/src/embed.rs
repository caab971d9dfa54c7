//! [`OpenAiEmbedder`]: an [`Embedder`] over `/embeddings`.

use std::fmt;

use async_openai::types::embeddings::{CreateEmbeddingRequest, EmbeddingInput};
use async_trait::async_trait;
use rag_core::{Embedder, Error, Result};
use serde::Deserialize;

use crate::config::{OpenAiConfig, known_embedding_dimensions};
use crate::http::Http;

const EMBED_PATH: &str = "embeddings";

/// An embedding model behind an OpenAI-compatible `/embeddings` endpoint.
///
/// Every input is checked before any request: an empty (or whitespace-only)
/// text, or one longer than [`OpenAiConfig::embed_max_input_tokens`]
/// (counted with tiktoken), is `Error::InvalidInput` naming its index —
/// never silently truncated. Large inputs are split into requests of at most
/// [`OpenAiConfig::embed_batch_size`] texts and
/// [`OpenAiConfig::embed_max_batch_tokens`] tokens; vectors come back in
/// input order, each checked to be [`Embedder::dimensions`] long.
///
/// ```no_run
/// use rag_llm_openai::{OpenAiConfig, OpenAiEmbedder};
/// use rag_core::Embedder;
///
/// # async fn run() -> rag_core::Result<()> {
/// let embedder = OpenAiEmbedder::new(
///     OpenAiConfig::from_env()?
///         .with_embedding_model("text-embedding-3-small")
///         .with_embedding_dimensions(512),
/// )?;
/// let vectors = embedder.embed(&["first".into(), "second".into()]).await?;
/// assert_eq!(vectors[0].len(), 512);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OpenAiEmbedder {
    http: Http,
    dimensions: usize,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("dimensions", &self.dimensions)
            .field("config", self.http.config())
            .finish()
    }
}

impl OpenAiEmbedder {
    /// An embedder with this configuration.
    ///
    /// Fails with `Unsupported` when the configuration says the server has
    /// no embeddings API (Groq), and with `InvalidInput` when the vector
    /// length is neither configured nor known for the model.
    pub fn new(config: OpenAiConfig) -> Result<Self> {
        if !config.supports_embeddings {
            return Err(Error::unsupported(
                config.provider.clone(),
                format!(
                    "embeddings ({} has no embeddings API; use another provider's \
                     OpenAiEmbedder or a local model)",
                    config.provider
                ),
            ));
        }
        let dimensions = config
            .embedding_dimensions
            .or_else(|| known_embedding_dimensions(&config.embedding_model))
            .filter(|d| *d > 0)
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "the vector length of embedding model {:?} is unknown: set \
                     OpenAiConfig::with_embedding_dimensions (or OPENAI_EMBEDDING_DIMENSIONS)",
                    config.embedding_model
                ))
            })?;
        Ok(Self {
            http: Http::new(config)?,
            dimensions,
        })
    }

    /// An embedder configured from the environment ([`OpenAiConfig::from_env`]).
    pub fn from_env() -> Result<Self> {
        Self::new(OpenAiConfig::from_env()?)
    }

    /// The configuration.
    pub fn config(&self) -> &OpenAiConfig {
        self.http.config()
    }

    /// Checks every input and returns the batches to send, as index ranges.
    fn plan(&self, texts: &[String]) -> Result<Vec<std::ops::Range<usize>>> {
        let config = self.config();
        let encoding = config.embedding_encoding();
        let max_tokens = config.embed_max_input_tokens;
        // A token is at least one byte, so the byte length bounds the count;
        // tiktoken runs only where the bound is not enough.
        let mut tokens = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            if text.trim().is_empty() {
                return Err(Error::invalid_input(format!("text at index {i} is empty")));
            }
            if text.len() <= max_tokens {
                tokens.push(text.len());
                continue;
            }
            let n = encoding.count(text);
            if n > max_tokens {
                return Err(Error::invalid_input(format!(
                    "text at index {i} has {n} tokens, over the limit of {max_tokens} for \
                     embedding model {} (split it first; inputs are never truncated)",
                    config.embedding_model
                )));
            }
            tokens.push(n);
        }
        let budget = config.embed_max_batch_tokens;
        if tokens.iter().sum::<usize>() > budget {
            for (t, text) in tokens.iter_mut().zip(texts) {
                *t = encoding.count(text).min(*t);
            }
        }
        let mut batches = Vec::new();
        let mut start = 0;
        let mut sum = 0;
        for (i, t) in tokens.iter().enumerate() {
            let full = i - start >= config.embed_batch_size || (sum + t > budget && i > start);
            if full {
                batches.push(start..i);
                start = i;
                sum = 0;
            }
            sum += t;
        }
        if start < texts.len() {
            batches.push(start..texts.len());
        }
        Ok(batches)
    }

    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let config = self.config();
        let dimensions_param = (config.embedding_model.starts_with("text-embedding-3"))
            .then_some(config.embedding_dimensions)
            .flatten()
            .map(|d| u32::try_from(d).unwrap_or(u32::MAX));
        let request = CreateEmbeddingRequest {
            model: config.embedding_model.clone(),
            input: EmbeddingInput::StringArray(texts.to_vec()),
            encoding_format: None,
            user: None,
            dimensions: dimensions_param,
        };
        let mapper = self
            .http
            .mapper(EMBED_PATH, (0, config.embed_max_input_tokens));
        let response = self.http.post(EMBED_PATH, &request, &mapper, false).await?;
        let body: EmbeddingResponse = self.http.json(response, &mapper).await?;
        if body.data.len() != texts.len() {
            return Err(mapper.protocol(format!(
                "asked for {} embeddings, got {}",
                texts.len(),
                body.data.len()
            )));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for (position, item) in body.data.into_iter().enumerate() {
            let index = item.index.unwrap_or(position);
            if item.embedding.len() != self.dimensions {
                return Err(mapper.protocol(format!(
                    "embedding {index} has {} values, expected {} (set the dimensions to the \
                     model's)",
                    item.embedding.len(),
                    self.dimensions
                )));
            }
            match out.get_mut(index) {
                Some(slot @ None) => *slot = Some(item.embedding),
                Some(Some(_)) => {
                    return Err(mapper.protocol(format!("embedding index {index} repeated")));
                }
                None => {
                    return Err(mapper.protocol(format!(
                        "embedding index {index} out of range for {} inputs",
                        texts.len()
                    )));
                }
            }
        }
        Ok(out.into_iter().map(|v| v.unwrap_or_default()).collect())
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.config().embedding_model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let batches = self.plan(texts)?;
        let mut out = Vec::with_capacity(texts.len());
        for range in batches {
            out.extend(self.embed_batch(&texts[range]).await?);
        }
        Ok(out)
    }

    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        if query.trim().is_empty() {
            return Err(Error::invalid_input("query is empty"));
        }
        let mut v = self.embed(&[query.to_owned()]).await?;
        v.pop()
            .ok_or_else(|| Error::backend(&self.config().provider, false, "no vector returned"))
    }
}

#[derive(Debug, Deserialize)]
struct EmbeddingResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Debug, Deserialize)]
struct EmbeddingItem {
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedder(config: OpenAiConfig) -> OpenAiEmbedder {
        OpenAiEmbedder::new(config.with_embedding_dimensions(4)).unwrap()
    }

    #[test]
    fn plans_batches_by_count_and_tokens() {
        let e = embedder(OpenAiConfig::new().with_embed_batch_size(3));
        let texts: Vec<String> = (0..7).map(|i| format!("text {i}")).collect();
        assert_eq!(e.plan(&texts).unwrap(), vec![0..3, 3..6, 6..7]);

        // "word " is one token: 10 words = 10 tokens per text, budget 25.
        let e = embedder(OpenAiConfig::new().with_embed_max_batch_tokens(25));
        let texts: Vec<String> = (0..5).map(|_| "word ".repeat(10)).collect();
        assert_eq!(e.plan(&texts).unwrap(), vec![0..2, 2..4, 4..5]);
    }

    #[test]
    fn rejects_empty_and_overlong_inputs_by_index() {
        let e = embedder(OpenAiConfig::new().with_embed_max_input_tokens(20));
        let err = e.plan(&["fine".into(), " ".into()]).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }));
        assert!(err.to_string().contains("index 1"), "{err}");

        // 25 bytes but 5 tokens: passes, counted exactly.
        assert!(e.plan(&["hello hello hello hello hello".into()]).is_ok());
        let long = "word ".repeat(30);
        let n = rag_core::TokenEncoding::Cl100k.count(&long);
        assert!(n > 20);
        let err = e.plan(&["ok".into(), "ok".into(), long]).unwrap_err();
        assert!(err.to_string().contains("index 2"), "{err}");
        assert!(err.to_string().contains(&format!("{n} tokens")), "{err}");
    }

    #[test]
    fn dimensions_known_configured_or_refused() {
        assert_eq!(
            OpenAiEmbedder::new(OpenAiConfig::new())
                .unwrap()
                .dimensions(),
            1536
        );
        let err = OpenAiEmbedder::new(OpenAiConfig::new().with_embedding_model("nomic-embed-text"))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
        let err = OpenAiEmbedder::new(
            OpenAiConfig::new()
                .with_embeddings_supported(false)
                .with_provider("groq"),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("groq"));
    }
}
