#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use rag_core::{ChatRequest, ChatResponse, ChatStream, Error, LlmClient, Result};
use rag_llm_openai::{
    OpenAiChat, OpenAiConfig, OpenAiEmbedder, ResponseHeaders, parse_retry_after, ratelimit_reset,
};

pub use rag_core;
pub use rag_llm_openai;

/// Groq's OpenAI-compatible endpoint.
pub const GROQ_BASE_URL: &str = "https://api.groq.com/openai/v1";

/// The model [`GroqChat::new`] and [`GroqChat::from_env`] use by default.
pub const DEFAULT_MODEL: &str = models::LLAMA_3_3_70B_VERSATILE;

/// Model ids as Groq names them (a selection; any id Groq serves works).
pub mod models {
    /// Meta Llama 3.3 70B, 128k context.
    pub const LLAMA_3_3_70B_VERSATILE: &str = "llama-3.3-70b-versatile";
    /// Meta Llama 3.1 8B, 128k context; fast and cheap.
    pub const LLAMA_3_1_8B_INSTANT: &str = "llama-3.1-8b-instant";
    /// Meta Llama 4 Scout, 128k context.
    pub const LLAMA_4_SCOUT: &str = "meta-llama/llama-4-scout-17b-16e-instruct";
    /// OpenAI's open-weight GPT-OSS 120B, 128k context.
    pub const GPT_OSS_120B: &str = "openai/gpt-oss-120b";
    /// OpenAI's open-weight GPT-OSS 20B, 128k context.
    pub const GPT_OSS_20B: &str = "openai/gpt-oss-20b";
    /// Qwen3 32B, 128k context.
    pub const QWEN3_32B: &str = "qwen/qwen3-32b";
}

/// The Groq preset of [`OpenAiConfig`]: Groq's base URL, the key, the
/// model, provider name `groq`, Groq's rate-limit headers
/// ([`groq_retry_after`]) and no embeddings.
///
/// Adjust it with the `OpenAiConfig` builder methods and pass it to
/// [`GroqChat::with_config`].
pub fn groq_config(api_key: impl Into<String>, model: impl Into<String>) -> OpenAiConfig {
    OpenAiConfig::new()
        .with_provider("groq")
        .with_base_url(GROQ_BASE_URL)
        .with_api_key(api_key)
        .with_chat_model(model)
        .with_embeddings_supported(false)
        .with_retry_after_parser(groq_retry_after)
}

/// Reads how long Groq asks a rate-limited caller to wait.
///
/// Groq sends `retry-after` (seconds) on a 429, and on every response
/// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, where the
/// requests limit is per day and the tokens limit per minute, and the resets
/// are Go-style durations (`2m59.56s`, `7.66s`, `120ms`). `retry-after` wins;
/// otherwise the reset of the exhausted limit (remaining 0), the longer one
/// when both or neither are known to be exhausted.
pub fn groq_retry_after(headers: &ResponseHeaders<'_>) -> Option<Duration> {
    headers
        .get("retry-after")
        .and_then(parse_retry_after)
        .or_else(|| ratelimit_reset(headers))
}

/// A chat model on Groq: [`OpenAiChat`] with the Groq preset.
///
/// ```
/// use rag_llm_groq::{GroqChat, models};
/// use rag_core::LlmClient;
///
/// let llm = GroqChat::new("gsk_example", models::LLAMA_3_1_8B_INSTANT)?;
/// assert_eq!(llm.model_id(), "llama-3.1-8b-instant");
/// assert_eq!(llm.context_window(), 131_072);
/// assert!(!format!("{llm:?}").contains("gsk_example"));
/// // Groq has no embeddings API: asking for one is a clear `Unsupported`.
/// assert!(matches!(llm.embedder(), Err(rag_core::Error::Unsupported { .. })));
/// # Ok::<(), rag_core::Error>(())
/// ```
#[derive(Clone)]
pub struct GroqChat {
    inner: OpenAiChat,
}

impl fmt::Debug for GroqChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroqChat")
            .field("config", self.inner.config())
            .finish()
    }
}

impl GroqChat {
    /// A client for `model` with this key.
    pub fn new(api_key: impl Into<String>, model: impl Into<String>) -> Result<Self> {
        Self::with_config(groq_config(api_key, model))
    }

    /// A client with a configuration, normally [`groq_config`] adjusted.
    pub fn with_config(config: OpenAiConfig) -> Result<Self> {
        Ok(Self {
            inner: OpenAiChat::new(config)?,
        })
    }

    /// A client configured from the environment: `GROQ_API_KEY` (required),
    /// `GROQ_MODEL` (default [`DEFAULT_MODEL`]), `GROQ_BASE_URL` (default
    /// [`GROQ_BASE_URL`]).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let key =
            get("GROQ_API_KEY").ok_or_else(|| Error::invalid_input("GROQ_API_KEY is not set"))?;
        let model = get("GROQ_MODEL").unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        let mut config = groq_config(key, model);
        if let Some(url) = get("GROQ_BASE_URL") {
            config = config.with_base_url(url);
        }
        Self::with_config(config)
    }

    /// The configuration.
    pub fn config(&self) -> &OpenAiConfig {
        self.inner.config()
    }

    /// The underlying OpenAI-compatible client.
    pub fn as_openai(&self) -> &OpenAiChat {
        &self.inner
    }

    /// Groq has no embeddings API: this is `Error::Unsupported` (unless the
    /// configuration was changed to declare embeddings, for a proxy that
    /// adds them).
    pub fn embedder(&self) -> Result<OpenAiEmbedder> {
        OpenAiEmbedder::new(self.config().clone())
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl LlmClient for GroqChat {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn context_window(&self) -> usize {
        self.inner.context_window()
    }

    fn model_free(&self) -> bool {
        self.inner.model_free()
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse> {
        self.inner.complete(request).await
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        self.inner.stream(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn groq_headers() {
        let parse = |pairs: &[(&str, &str)]| groq_retry_after(&ResponseHeaders::from_pairs(pairs));
        assert_eq!(
            parse(&[("retry-after", "2"), ("x-ratelimit-reset-tokens", "7.66s")]),
            Some(Duration::from_secs(2))
        );
        let tokens_exhausted = [
            ("x-ratelimit-limit-requests", "14400"),
            ("x-ratelimit-remaining-requests", "14370"),
            ("x-ratelimit-reset-requests", "2m59.56s"),
            ("x-ratelimit-limit-tokens", "18000"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "7.66s"),
        ];
        assert_eq!(
            parse(&tokens_exhausted),
            Some(Duration::from_secs_f64(7.66))
        );
        let requests_exhausted = [
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "2m59.56s"),
            ("x-ratelimit-remaining-tokens", "17000"),
            ("x-ratelimit-reset-tokens", "120ms"),
        ];
        assert_eq!(
            parse(&requests_exhausted),
            Some(Duration::from_secs_f64(179.56))
        );
        assert_eq!(parse(&[]), None);
    }

    #[test]
    fn from_lookup_reads_groq_variables() {
        let env = |vars: &[(&str, &str)]| {
            let map: HashMap<String, String> = vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            move |name: &str| map.get(name).cloned()
        };
        let err = GroqChat::from_lookup(env(&[("OPENAI_API_KEY", "sk-x")])).unwrap_err();
        assert!(err.to_string().contains("GROQ_API_KEY"), "{err}");
        let llm = GroqChat::from_lookup(env(&[("GROQ_API_KEY", "gsk_secret_1")])).unwrap();
        assert_eq!(llm.model_id(), DEFAULT_MODEL);
        assert_eq!(llm.config().base_url, GROQ_BASE_URL);
        assert_eq!(llm.config().provider, "groq");
        assert!(!format!("{llm:?}").contains("gsk_secret_1"));
        let llm = GroqChat::from_lookup(env(&[
            ("GROQ_API_KEY", "k"),
            ("GROQ_MODEL", models::GPT_OSS_20B),
            ("GROQ_BASE_URL", "http://127.0.0.1:9/openai/v1"),
        ]))
        .unwrap();
        assert_eq!(llm.model_id(), "openai/gpt-oss-20b");
        assert_eq!(llm.context_window(), 131_072);
        assert_eq!(llm.config().base_url, "http://127.0.0.1:9/openai/v1");
    }

    #[test]
    fn no_embeddings() {
        let llm = GroqChat::new("k", DEFAULT_MODEL).unwrap();
        let err = llm.embedder().unwrap_err();
        assert!(
            matches!(&err, Error::Unsupported { backend, .. } if backend == "groq"),
            "{err:?}"
        );
        assert!(err.to_string().contains("no embeddings API"), "{err}");
        let err = OpenAiEmbedder::new(groq_config("k", DEFAULT_MODEL)).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }));
    }
}
