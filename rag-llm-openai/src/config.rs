//! [`OpenAiConfig`]: where the server is, which models, limits and timeouts.

use std::fmt;
use std::time::Duration;

use rag_core::{Error, Result, TokenEncoding};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::{ResponseHeaders, default_retry_after};

/// OpenAI's public endpoint, the default base URL.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";

/// The default chat model.
pub const DEFAULT_CHAT_MODEL: &str = "gpt-4o-mini";

/// The default embedding model.
pub const DEFAULT_EMBEDDING_MODEL: &str = "text-embedding-3-small";

/// Reads a duration the provider asked to wait out of the headers of a 429
/// (or of any error response); see [`OpenAiConfig::with_retry_after_parser`].
pub type RetryAfterParser = fn(&ResponseHeaders<'_>) -> Option<Duration>;

/// Configuration of [`crate::OpenAiChat`] and [`crate::OpenAiEmbedder`].
///
/// Works against any OpenAI-compatible server (Ollama, vLLM, llama.cpp's
/// `llama-server`, LM Studio, Groq) by base URL alone. Built with the
/// `with_*` methods or read from the environment by [`Self::from_env`].
///
/// The API key is a [`SecretString`]: `Debug` shows `[REDACTED]`, it is never
/// serialized, and the clients remove it from every error message.
///
/// ```
/// use std::time::Duration;
/// use rag_llm_openai::OpenAiConfig;
///
/// let config = OpenAiConfig::new()
///     .with_base_url("http://127.0.0.1:11434/v1") // Ollama
///     .with_chat_model("llama3.2")
///     .with_request_timeout(Duration::from_secs(120));
/// assert!(!format!("{config:?}").contains("sk-"));
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct OpenAiConfig {
    /// The API key, sent as `Authorization: Bearer …`; `None` for local
    /// servers that need none.
    #[serde(skip_serializing)]
    pub api_key: Option<SecretString>,
    /// Base URL up to and including the version, e.g.
    /// `https://api.openai.com/v1` or `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// The chat model id.
    pub chat_model: String,
    /// The embedding model id.
    pub embedding_model: String,
    /// Vector length. For `text-embedding-3-*` models it is also sent as the
    /// `dimensions` request parameter (the API shortens the vectors); for
    /// other models it only declares the length the server returns. `None`
    /// uses the known length of the model ([`known_embedding_dimensions`]).
    pub embedding_dimensions: Option<usize>,
    /// Most inputs per embeddings request (OpenAI allows 2048).
    pub embed_batch_size: usize,
    /// Most tokens of one input to embed (8191 for `text-embedding-3-*`);
    /// longer inputs are rejected before any request, never truncated.
    pub embed_max_input_tokens: usize,
    /// Most tokens of all inputs of one embeddings request (OpenAI allows
    /// 300 000); larger batches are split.
    pub embed_max_batch_tokens: usize,
    /// The chat model's context window; `None` uses
    /// [`known_context_window`] (8192 for unknown models).
    pub context_window: Option<usize>,
    /// Tokenizer for local counts (input limits, and usage when a server
    /// reports none); `None` picks by model name ([`encoding_for_model`]).
    pub token_encoding: Option<TokenEncoding>,
    /// Total time allowed for one non-streaming request, and the longest
    /// silence allowed while reading any response (streams included).
    pub request_timeout: Duration,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Whether to ask for a final usage chunk in streams
    /// (`stream_options.include_usage`). Turn off for servers that reject
    /// the option; usage is then counted locally.
    pub stream_usage: bool,
    /// Send the answer budget as `max_completion_tokens` (OpenAI's reasoning
    /// models require it) instead of `max_tokens` (understood by every
    /// compatible server).
    pub max_completion_tokens_field: bool,
    /// The backend name in errors and logs (`openai`, `groq`, `ollama`, …).
    pub provider: String,
    /// Whether the server has an embeddings endpoint ([`crate::OpenAiEmbedder`]
    /// refuses to build with `Error::Unsupported` when not).
    pub supports_embeddings: bool,
    /// Reads the wait of a rate-limited response from its headers.
    #[serde(skip, default = "default_parser")]
    pub retry_after_parser: RetryAfterParser,
}

fn default_parser() -> RetryAfterParser {
    default_retry_after
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: OPENAI_BASE_URL.to_owned(),
            chat_model: DEFAULT_CHAT_MODEL.to_owned(),
            embedding_model: DEFAULT_EMBEDDING_MODEL.to_owned(),
            embedding_dimensions: None,
            embed_batch_size: 2048,
            embed_max_input_tokens: 8191,
            embed_max_batch_tokens: 300_000,
            context_window: None,
            token_encoding: None,
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            stream_usage: true,
            max_completion_tokens_field: false,
            provider: "openai".to_owned(),
            supports_embeddings: true,
            retry_after_parser: default_retry_after,
        }
    }
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field(
                "api_key",
                &self
                    .api_key
                    .as_ref()
                    .map(|_| "[REDACTED]")
                    .unwrap_or("None"),
            )
            .field("base_url", &self.base_url)
            .field("chat_model", &self.chat_model)
            .field("embedding_model", &self.embedding_model)
            .field("embedding_dimensions", &self.embedding_dimensions)
            .field("embed_batch_size", &self.embed_batch_size)
            .field("embed_max_input_tokens", &self.embed_max_input_tokens)
            .field("embed_max_batch_tokens", &self.embed_max_batch_tokens)
            .field("context_window", &self.context_window)
            .field("token_encoding", &self.token_encoding)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("stream_usage", &self.stream_usage)
            .field(
                "max_completion_tokens_field",
                &self.max_completion_tokens_field,
            )
            .field("provider", &self.provider)
            .field("supports_embeddings", &self.supports_embeddings)
            .finish_non_exhaustive()
    }
}

impl OpenAiConfig {
    /// The defaults: OpenAI's endpoint, `gpt-4o-mini`,
    /// `text-embedding-3-small`, no key, 60 s request and 10 s connect
    /// timeouts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the configuration from the environment:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `OPENAI_API_KEY` | the key (required unless `OPENAI_BASE_URL` is set) |
    /// | `OPENAI_BASE_URL` | another OpenAI-compatible server |
    /// | `OPENAI_CHAT_MODEL` (or `OPENAI_MODEL`) | the chat model |
    /// | `OPENAI_EMBEDDING_MODEL` | the embedding model |
    /// | `OPENAI_EMBEDDING_DIMENSIONS` | the vector length |
    /// | `OPENAI_CONTEXT_WINDOW` | the chat model's context window in tokens |
    /// | `OPENAI_TIMEOUT_SECS` | the request timeout in seconds |
    ///
    /// Empty variables count as unset. Fails with `InvalidInput` when
    /// neither a key nor a base URL is set, or a number does not parse.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] reading variables through `lookup` (for tests and
    /// for configuration kept elsewhere).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut config = Self::new();
        let key = get("OPENAI_API_KEY");
        let base = get("OPENAI_BASE_URL");
        if key.is_none() && base.is_none() {
            return Err(Error::invalid_input(
                "OPENAI_API_KEY is not set (set it, or OPENAI_BASE_URL for a local \
                 OpenAI-compatible server)",
            ));
        }
        if let Some(key) = key {
            config = config.with_api_key(key);
        }
        if let Some(base) = base {
            config = config.with_base_url(base);
        }
        if let Some(model) = get("OPENAI_CHAT_MODEL").or_else(|| get("OPENAI_MODEL")) {
            config = config.with_chat_model(model);
        }
        if let Some(model) = get("OPENAI_EMBEDDING_MODEL") {
            config = config.with_embedding_model(model);
        }
        if let Some(dims) = get("OPENAI_EMBEDDING_DIMENSIONS") {
            config = config
                .with_embedding_dimensions(parse_number("OPENAI_EMBEDDING_DIMENSIONS", &dims)?);
        }
        if let Some(tokens) = get("OPENAI_CONTEXT_WINDOW") {
            config = config.with_context_window(parse_number("OPENAI_CONTEXT_WINDOW", &tokens)?);
        }
        if let Some(secs) = get("OPENAI_TIMEOUT_SECS") {
            let secs = parse_number("OPENAI_TIMEOUT_SECS", &secs)?;
            config = config.with_request_timeout(Duration::from_secs(secs as u64));
        }
        Ok(config)
    }

    /// Sets the API key.
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(SecretString::from(key.into()));
        self
    }

    /// Sets the base URL (a trailing `/` is removed).
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        self.base_url = url.trim_end_matches('/').to_owned();
        self
    }

    /// Sets the chat model.
    pub fn with_chat_model(mut self, model: impl Into<String>) -> Self {
        self.chat_model = model.into();
        self
    }

    /// Sets the embedding model.
    pub fn with_embedding_model(mut self, model: impl Into<String>) -> Self {
        self.embedding_model = model.into();
        self
    }

    /// Sets the vector length (see [`Self::embedding_dimensions`]).
    pub fn with_embedding_dimensions(mut self, dimensions: usize) -> Self {
        self.embedding_dimensions = Some(dimensions);
        self
    }

    /// Sets the most inputs per embeddings request.
    pub fn with_embed_batch_size(mut self, n: usize) -> Self {
        self.embed_batch_size = n.max(1);
        self
    }

    /// Sets the most tokens of one input to embed.
    pub fn with_embed_max_input_tokens(mut self, n: usize) -> Self {
        self.embed_max_input_tokens = n;
        self
    }

    /// Sets the most tokens of one embeddings request.
    pub fn with_embed_max_batch_tokens(mut self, n: usize) -> Self {
        self.embed_max_batch_tokens = n.max(1);
        self
    }

    /// Sets the chat model's context window.
    pub fn with_context_window(mut self, tokens: usize) -> Self {
        self.context_window = Some(tokens);
        self
    }

    /// Sets the tokenizer for local counts.
    pub fn with_token_encoding(mut self, encoding: TokenEncoding) -> Self {
        self.token_encoding = Some(encoding);
        self
    }

    /// Sets the request timeout (see [`Self::request_timeout`]).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whether to ask for the final usage chunk of streams.
    pub fn with_stream_usage(mut self, on: bool) -> Self {
        self.stream_usage = on;
        self
    }

    /// Whether to send `max_completion_tokens` instead of `max_tokens`.
    pub fn with_max_completion_tokens_field(mut self, on: bool) -> Self {
        self.max_completion_tokens_field = on;
        self
    }

    /// Sets the backend name used in errors.
    pub fn with_provider(mut self, name: impl Into<String>) -> Self {
        self.provider = name.into();
        self
    }

    /// Declares whether the server has an embeddings endpoint.
    pub fn with_embeddings_supported(mut self, on: bool) -> Self {
        self.supports_embeddings = on;
        self
    }

    /// Replaces how the wait of a rate-limited response is read from its
    /// headers (the default is [`default_retry_after`]).
    pub fn with_retry_after_parser(mut self, parser: RetryAfterParser) -> Self {
        self.retry_after_parser = parser;
        self
    }

    /// The chat context window: configured, known for the model, or 8192.
    pub fn chat_context_window(&self) -> usize {
        self.context_window
            .or_else(|| known_context_window(&self.chat_model))
            .unwrap_or(8192)
    }

    /// The tokenizer for the chat model's local counts.
    pub fn chat_encoding(&self) -> TokenEncoding {
        self.token_encoding
            .unwrap_or_else(|| encoding_for_model(&self.chat_model))
    }

    /// The tokenizer for the embedding model's input limits.
    pub fn embedding_encoding(&self) -> TokenEncoding {
        self.token_encoding
            .unwrap_or_else(|| encoding_for_model(&self.embedding_model))
    }

    pub(crate) fn key(&self) -> Option<&str> {
        self.api_key
            .as_ref()
            .map(|k| k.expose_secret())
            .filter(|k| !k.is_empty())
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url.trim_end_matches('/'), path)
    }
}

fn parse_number(name: &str, value: &str) -> Result<usize> {
    value
        .trim()
        .parse()
        .map_err(|_| Error::invalid_input(format!("{name} must be a whole number, got {value:?}")))
}

/// The context window of well-known chat models (OpenAI's and Groq's ids),
/// by prefix of the model name.
pub fn known_context_window(model: &str) -> Option<usize> {
    let m = model.to_ascii_lowercase();
    let m = m.rsplit('/').next().unwrap_or(&m);
    const TABLE: &[(&str, usize)] = &[
        ("gpt-4.1", 1_047_576),
        ("gpt-4o", 128_000),
        ("gpt-4-turbo", 128_000),
        ("gpt-4-32k", 32_768),
        ("gpt-4", 8_192),
        ("gpt-3.5-turbo-instruct", 4_096),
        ("gpt-3.5", 16_385),
        ("gpt-5", 400_000),
        ("o1-mini", 128_000),
        ("o1", 200_000),
        ("o3", 200_000),
        ("o4", 200_000),
        ("gpt-oss", 131_072),
        ("llama-3.3", 131_072),
        ("llama-3.1", 131_072),
        ("llama-3.2", 131_072),
        ("llama-4", 131_072),
        ("llama3-", 8_192),
        ("llama-guard", 131_072),
        ("gemma2", 8_192),
        ("mixtral-8x7b-32768", 32_768),
        ("qwen3", 131_072),
        ("qwen-qwq", 131_072),
        ("kimi-k2", 131_072),
        ("deepseek-r1-distill", 131_072),
    ];
    TABLE
        .iter()
        .find(|(prefix, _)| m.starts_with(prefix))
        .map(|(_, n)| *n)
}

/// The vector length of well-known embedding models.
pub fn known_embedding_dimensions(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        _ => None,
    }
}

/// The tiktoken encoding of a model family: `o200k_base` for GPT-4o,
/// GPT-4.1, GPT-5 and the o-series, `cl100k_base` for everything else (the
/// closest public approximation for non-OpenAI models).
pub fn encoding_for_model(model: &str) -> TokenEncoding {
    let m = model.to_ascii_lowercase();
    let o200k = [
        "gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "gpt-oss",
    ];
    if o200k.iter().any(|p| m.starts_with(p)) {
        TokenEncoding::O200k
    } else {
        TokenEncoding::Cl100k
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn from_lookup_needs_key_or_base_url() {
        let err = OpenAiConfig::from_lookup(env(&[])).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
        assert!(err.to_string().contains("OPENAI_API_KEY"));

        let c = OpenAiConfig::from_lookup(env(&[("OPENAI_BASE_URL", "http://h:1/v1/")])).unwrap();
        assert_eq!(c.base_url, "http://h:1/v1");
        assert!(c.key().is_none());

        let c = OpenAiConfig::from_lookup(env(&[
            ("OPENAI_API_KEY", "sk-test-123"),
            ("OPENAI_CHAT_MODEL", "gpt-4.1-mini"),
            ("OPENAI_EMBEDDING_MODEL", "text-embedding-3-large"),
            ("OPENAI_EMBEDDING_DIMENSIONS", "256"),
            ("OPENAI_TIMEOUT_SECS", "5"),
        ]))
        .unwrap();
        assert_eq!(c.key(), Some("sk-test-123"));
        assert_eq!(c.base_url, OPENAI_BASE_URL);
        assert_eq!(c.chat_model, "gpt-4.1-mini");
        assert_eq!(c.embedding_dimensions, Some(256));
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.chat_context_window(), 1_047_576);
        assert_eq!(c.chat_encoding(), TokenEncoding::O200k);

        let c = OpenAiConfig::from_lookup(env(&[
            ("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1"),
            ("OPENAI_CONTEXT_WINDOW", "2048"),
        ]))
        .unwrap();
        assert_eq!(c.chat_context_window(), 2048);

        let err = OpenAiConfig::from_lookup(env(&[
            ("OPENAI_API_KEY", "k"),
            ("OPENAI_EMBEDDING_DIMENSIONS", "many"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("OPENAI_EMBEDDING_DIMENSIONS"));
    }

    #[test]
    fn debug_and_serde_never_show_the_key() {
        let c = OpenAiConfig::new().with_api_key("sk-very-secret-value");
        let debug = format!("{c:?} {c:#?}");
        assert!(!debug.contains("sk-very-secret-value"), "{debug}");
        assert!(debug.contains("[REDACTED]"));
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("sk-very-secret-value"), "{json}");
        let back: OpenAiConfig = serde_json::from_str(&json).unwrap();
        assert!(back.api_key.is_none());
        assert_eq!(back.chat_model, c.chat_model);
    }

    #[test]
    fn context_windows() {
        let cw = |m: &str| OpenAiConfig::new().with_chat_model(m).chat_context_window();
        assert_eq!(cw("gpt-4o-mini"), 128_000);
        assert_eq!(cw("gpt-3.5-turbo"), 16_385);
        assert_eq!(cw("gpt-4"), 8_192);
        assert_eq!(cw("llama-3.3-70b-versatile"), 131_072);
        assert_eq!(cw("llama3-8b-8192"), 8_192);
        assert_eq!(cw("meta-llama/llama-4-scout-17b-16e-instruct"), 131_072);
        assert_eq!(cw("some-local-model"), 8_192);
        assert_eq!(
            OpenAiConfig::new()
                .with_chat_model("x")
                .with_context_window(2048)
                .chat_context_window(),
            2048
        );
    }
}
