//! Runtime configuration: an optional TOML file, then environment variables
//! on top. With neither, the embedded default works offline: a LanceDB store
//! under `./rag-data`, the local models of `rag-local` when
//! `scripts/fetch-models` has fetched them (all-MiniLM-L6-v2 embedder,
//! ms-marco cross-encoder reranker, SmolLM2-135M answering; otherwise the
//! `HashEmbedder` and extractive answers, with a warning), no keys (open),
//! bound to loopback.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::auth::{KeyConfig, Scope};

/// The whole configuration. Unknown keys in the file are errors.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (`RAG_BIND`).
    pub bind: String,
    /// Deadline of one request, in seconds (`RAG_REQUEST_TIMEOUT_SECS`).
    pub request_timeout_secs: u64,
    /// How long shutdown waits for in-flight requests and streams, in seconds.
    pub shutdown_timeout_secs: u64,
    /// Largest request body, in bytes; larger gets `413` (`RAG_BODY_LIMIT_BYTES`).
    pub body_limit_bytes: usize,
    /// Largest uploaded file, in bytes; larger gets `413`.
    pub upload_max_file_bytes: usize,
    /// File extensions accepted by the multipart upload.
    pub upload_extensions: Vec<String>,
    /// Origins allowed by CORS; empty allows none (`RAG_CORS_ORIGINS`, comma-separated).
    pub cors_origins: Vec<String>,
    /// `json` (default) or `pretty` (`RAG_LOG_FORMAT`).
    pub log_format: String,
    /// The vector store.
    pub store: StoreConfig,
    /// The embedder.
    pub embedder: EmbedderConfig,
    /// The chat model.
    pub llm: LlmConfig,
    /// The reranker.
    pub reranker: RerankerConfig,
    /// Resilience layers around the embedder and the LLM.
    pub layers: LayersConfig,
    /// Server-side request limits.
    pub rate_limit: RateLimitSettings,
    /// API keys; none means the server is open (a warning is logged).
    pub keys: Vec<KeyConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            request_timeout_secs: 60,
            shutdown_timeout_secs: 20,
            body_limit_bytes: 2 * 1024 * 1024,
            upload_max_file_bytes: 1024 * 1024,
            upload_extensions: [
                "txt", "md", "markdown", "rst", "rs", "py", "js", "ts", "go", "java", "c", "h",
                "cpp", "hpp", "toml", "yaml", "yml", "json", "sh", "sql",
            ]
            .map(String::from)
            .to_vec(),
            cors_origins: Vec::new(),
            log_format: "json".into(),
            store: StoreConfig::default(),
            embedder: EmbedderConfig::default(),
            llm: LlmConfig::default(),
            reranker: RerankerConfig::default(),
            layers: LayersConfig::default(),
            rate_limit: RateLimitSettings::default(),
            keys: Vec::new(),
        }
    }
}

/// Which vector store.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `lance` (default: embedded LanceDB on local disk), `memory`,
    /// `pgvector`; `qdrant` is refused: the server does not wire the Qdrant
    /// store yet (`RAG_STORE`).
    pub kind: String,
    /// For `lance`: the database directory (`RAG_STORE_PATH`; when unset,
    /// `./rag-data/<embedder model>-<dimensions>`, one per embedder, so a
    /// changed embedder never meets vectors of another dimension). For `memory`: a file loaded at startup and saved at
    /// shutdown; none keeps it in memory only.
    pub path: Option<PathBuf>,
    /// For `pgvector`: the database URL (`RAG_PG_URL` or `DATABASE_URL`).
    pub url: Option<String>,
    /// For `pgvector`: the prefix of its tables (`RAG_PG_TABLE_PREFIX`;
    /// the adapter's `rag` by default).
    pub table_prefix: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: "lance".into(),
            path: None,
            url: None,
            table_prefix: None,
        }
    }
}

/// Which embedder.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedderConfig {
    /// `auto` (default: `local` when the models directory has a local
    /// embedding model, else `hash`), `local` (rag-local's default,
    /// bge-small-en-v1.5 int8 on ONNX Runtime; an error naming
    /// `scripts/fetch-models` when missing), `bge`, `minilm`
    /// (all-MiniLM-L6-v2 on candle), `hash` (the offline `HashEmbedder`) or
    /// `openai` (any OpenAI-compatible API, `OPENAI_*` variables)
    /// (`RAG_EMBEDDER`). A local embedder brings chunks sized to its window
    /// (512 cl100k tokens for bge, 256 for MiniLM).
    pub kind: String,
    /// The embedding model, for `openai` (`RAG_EMBEDDING_MODEL`).
    pub model: Option<String>,
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        Self {
            kind: "auto".into(),
            model: None,
        }
    }
}

/// Which chat model.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// `auto` (default: `reader` when llama-server and the reader model are
    /// there, else `extractive`), `reader` (the embedded reader: the local
    /// reader model on a llama-server child process, its replies cited and
    /// checked by `rag::GroundedAnswerer`), `local` (rag-local's SmolLM2-135M
    /// on candle, writing freely), `extractive` (no model: sentences quoted
    /// from the sources), `openai` or `groq` (`RAG_LLM`).
    pub kind: String,
    /// Any OpenAI-compatible base URL (`RAG_LLM_BASE_URL`).
    pub base_url: Option<String>,
    /// The chat model (`RAG_LLM_MODEL`).
    pub model: Option<String>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            kind: "auto".into(),
            base_url: None,
            model: None,
        }
    }
}

/// Which reranker.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RerankerConfig {
    /// `none` (default: on the SciFact train split the cross-encoder did
    /// not improve on the default hybrid retrieval — see `docs/evaluation.md`
    /// — and costs about a second per question on two
    /// cores), `auto` (`local` when the models directory has the
    /// cross-encoder and ONNX Runtime, else `none`) or `local` (rag-local's
    /// ms-marco-MiniLM-L-12-v2 cross-encoder) (`RAG_RERANKER`).
    pub kind: String,
}

impl Default for RerankerConfig {
    fn default() -> Self {
        Self {
            kind: "none".into(),
        }
    }
}

/// Layers around the embedder and the LLM.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LayersConfig {
    /// Attempts per call, first included; `1` turns retry off.
    pub retry_attempts: u32,
    /// Deadline per attempt, seconds.
    pub call_timeout_secs: u64,
    /// Client-side LLM requests per minute; `0` for none.
    pub llm_requests_per_minute: u32,
    /// Screen questions with the default prompt guard.
    pub prompt_guard: bool,
    /// Entries of the answer cache; `0` turns it off.
    pub answer_cache_entries: u64,
    /// Record tracing spans and metrics of every call.
    pub instrument: bool,
}

impl Default for LayersConfig {
    fn default() -> Self {
        Self {
            retry_attempts: 3,
            call_timeout_secs: 30,
            llm_requests_per_minute: 0,
            prompt_guard: true,
            answer_cache_entries: 1024,
            instrument: true,
        }
    }
}

/// Server-side rate limits, per key and per client IP.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Requests per minute per key (per client IP when no key is
    /// configured); `0` for none (`RAG_RATE_LIMIT_PER_KEY`).
    pub per_key_per_minute: u32,
    /// Burst per key; `0` means the per-minute figure.
    pub per_key_burst: u32,
    /// Requests per minute per IP; `0` for none (`RAG_RATE_LIMIT_PER_IP`).
    pub per_ip_per_minute: u32,
    /// Burst per IP; `0` means the per-minute figure.
    pub per_ip_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_key_per_minute: 600,
            per_key_burst: 0,
            per_ip_per_minute: 0,
            per_ip_burst: 0,
        }
    }
}

impl ServerConfig {
    /// Reads the TOML file (if any) and applies the environment on top.
    pub fn load(file: Option<&Path>) -> Result<Self, String> {
        let mut cfg = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                toml::from_str::<Self>(&text).map_err(|e| format!("{}: {e}", p.display()))?
            }
            None => Self::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies `RAG_*` variables read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("{k} must be a number, got {v:?}"))
        }
        if let Some(v) = var("RAG_BIND") {
            self.bind = v;
        }
        if let Some(v) = var("RAG_REQUEST_TIMEOUT_SECS") {
            self.request_timeout_secs = num("RAG_REQUEST_TIMEOUT_SECS", &v)?;
        }
        if let Some(v) = var("RAG_BODY_LIMIT_BYTES") {
            self.body_limit_bytes = num("RAG_BODY_LIMIT_BYTES", &v)?;
        }
        if let Some(v) = var("RAG_CORS_ORIGINS") {
            self.cors_origins = v.split(',').map(|s| s.trim().to_owned()).collect();
        }
        if let Some(v) = var("RAG_LOG_FORMAT") {
            self.log_format = v;
        }
        if let Some(v) = var("RAG_STORE") {
            self.store.kind = v;
        }
        if let Some(v) = var("RAG_STORE_PATH") {
            self.store.path = Some(v.into());
        }
        if let Some(v) = var("RAG_PG_URL").or_else(|| var("DATABASE_URL")) {
            self.store.url.get_or_insert(v);
        }
        if let Some(v) = var("RAG_PG_TABLE_PREFIX") {
            self.store.table_prefix = Some(v);
        }
        if let Some(v) = var("RAG_EMBEDDER") {
            self.embedder.kind = v;
        }
        if let Some(v) = var("RAG_EMBEDDING_MODEL") {
            self.embedder.model = Some(v);
        }
        if let Some(v) = var("RAG_LLM") {
            self.llm.kind = v;
        }
        if let Some(v) = var("RAG_LLM_BASE_URL") {
            self.llm.base_url = Some(v);
        }
        if let Some(v) = var("RAG_LLM_MODEL") {
            self.llm.model = Some(v);
        }
        if let Some(v) = var("RAG_RERANKER") {
            self.reranker.kind = v;
        }
        if let Some(v) = var("RAG_RATE_LIMIT_PER_KEY") {
            self.rate_limit.per_key_per_minute = num("RAG_RATE_LIMIT_PER_KEY", &v)?;
        }
        if let Some(v) = var("RAG_RATE_LIMIT_PER_IP") {
            self.rate_limit.per_ip_per_minute = num("RAG_RATE_LIMIT_PER_IP", &v)?;
        }
        if let Some(v) = var("RAG_API_KEYS") {
            // name|sha256:hex|read+ingest|namespace, comma-separated.
            for (i, entry) in v.split(',').enumerate() {
                let parts: Vec<&str> = entry.trim().split('|').collect();
                if !(3..=4).contains(&parts.len()) {
                    return Err(format!(
                        "RAG_API_KEYS entry {i}: expected name|sha256:<hex>|scope+scope[|namespace]"
                    ));
                }
                let scopes = parts[2]
                    .split('+')
                    .map(|s| {
                        Scope::parse(s).ok_or_else(|| {
                            format!(
                                "RAG_API_KEYS entry {i}: unknown scope {s:?} (read, ingest, admin)"
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                self.keys.push(KeyConfig {
                    name: parts[0].to_owned(),
                    hash: parts[1].to_owned(),
                    scopes,
                    namespace: parts.get(3).map(|s| (*s).to_owned()),
                });
            }
        }
        Ok(())
    }

    /// Checks everything that can be checked without connecting anywhere.
    pub fn validate(&self) -> Result<(), String> {
        self.bind.parse::<std::net::SocketAddr>().map_err(|_| {
            format!(
                "bind: {:?} is not an address such as 127.0.0.1:8080",
                self.bind
            )
        })?;
        match self.store.kind.as_str() {
            "memory" | "lance" => {}
            "pgvector" => {
                if self.store.url.is_none() {
                    return Err("store.kind = \"pgvector\" needs store.url (or RAG_PG_URL)".into());
                }
            }
            "qdrant" => {
                return Err(
                    "store.kind = \"qdrant\" is not available in the server yet (the library's \
                            QdrantStore is). Use \"lance\", \"memory\" or \"pgvector\""
                        .into(),
                );
            }
            other => {
                return Err(format!(
                    "store.kind: unknown store {other:?} (memory, pgvector, lance, qdrant)"
                ));
            }
        }
        if !matches!(
            self.embedder.kind.as_str(),
            "auto" | "local" | "bge" | "minilm" | "hash" | "openai"
        ) {
            return Err(format!(
                "embedder.kind: unknown embedder {:?} (auto, local, bge, minilm, hash, openai)",
                self.embedder.kind
            ));
        }
        if !matches!(
            self.llm.kind.as_str(),
            "auto" | "reader" | "local" | "extractive" | "openai" | "groq"
        ) {
            return Err(format!(
                "llm.kind: unknown LLM {:?} (auto, reader, local, extractive, openai, groq)",
                self.llm.kind
            ));
        }
        if !matches!(self.reranker.kind.as_str(), "auto" | "local" | "none") {
            return Err(format!(
                "reranker.kind: unknown reranker {:?} (auto, local, none)",
                self.reranker.kind
            ));
        }
        if !matches!(self.log_format.as_str(), "json" | "pretty") {
            return Err(format!("log_format: {:?} (json, pretty)", self.log_format));
        }
        if self.body_limit_bytes == 0 || self.request_timeout_secs == 0 {
            return Err("body_limit_bytes and request_timeout_secs must be positive".into());
        }
        if self.layers.retry_attempts == 0 {
            return Err("layers.retry_attempts must be at least 1".into());
        }
        crate::auth::KeyRing::new(&self.keys)?;
        for o in &self.cors_origins {
            if axum::http::HeaderValue::from_str(o).is_err() || !o.contains("://") {
                return Err(format!(
                    "cors_origins: {o:?} is not an origin such as https://app.example"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_offline() {
        let c = ServerConfig::default();
        c.validate().unwrap();
        assert_eq!(c.store.kind, "lance");
        assert_eq!(c.embedder.kind, "auto");
        assert_eq!(c.llm.kind, "auto");
        assert_eq!(c.reranker.kind, "none");
    }

    #[test]
    fn model_kinds_from_the_environment_and_unknown_ones_refused() {
        let mut c = ServerConfig::default();
        c.apply_env(|k| match k {
            "RAG_EMBEDDER" => Some("local".into()),
            "RAG_LLM" => Some("extractive".into()),
            "RAG_RERANKER" => Some("none".into()),
            _ => None,
        })
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            (
                c.embedder.kind.as_str(),
                c.llm.kind.as_str(),
                c.reranker.kind.as_str()
            ),
            ("local", "extractive", "none")
        );
        c.reranker.kind = "colbert".into();
        let err = c.validate().unwrap_err();
        assert!(
            err.contains("reranker.kind") && err.contains("colbert"),
            "{err}"
        );
        let c: ServerConfig = toml::from_str("[reranker]\nkind = \"local\"\n").unwrap();
        assert_eq!(c.reranker.kind, "local");
    }

    #[test]
    fn refuses_unlanded_stores_and_bad_values() {
        let mut c = ServerConfig::default();
        c.store.kind = "qdrant".into();
        assert!(
            c.validate()
                .unwrap_err()
                .contains("not available in the server yet")
        );
        c.store.kind = "lance".into();
        c.validate().unwrap();
        let c = ServerConfig {
            bind: "nowhere".into(),
            ..ServerConfig::default()
        };
        assert!(c.validate().unwrap_err().starts_with("bind"));
        assert!(toml::from_str::<ServerConfig>("nonsense = 1").is_err());
    }

    #[test]
    fn env_keys_parse() {
        let mut c = ServerConfig::default();
        let hash = crate::auth::hash_key("k");
        let v = format!("ops|{hash}|read+ingest|acme");
        c.apply_env(|k| (k == "RAG_API_KEYS").then(|| v.clone()))
            .unwrap();
        assert_eq!(c.keys.len(), 1);
        assert_eq!(c.keys[0].scopes, vec![Scope::Read, Scope::Ingest]);
        assert_eq!(c.keys[0].namespace.as_deref(), Some("acme"));
        c.validate().unwrap();
        let mut c = ServerConfig::default();
        assert!(
            c.apply_env(|k| (k == "RAG_API_KEYS").then(|| "x|y|root".into()))
                .is_err()
        );
    }
}
