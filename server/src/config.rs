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
    /// How long a client may take to send a request's headers, in seconds;
    /// the connection is closed after (`RAG_HEADER_TIMEOUT_SECS`).
    pub header_timeout_secs: u64,
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
    /// The session store.
    pub sessions: SessionsConfig,
    /// Defaults of every question.
    pub ask: AskDefaults,
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
    /// Backup and restore over HTTP (`/v1/admin/export`, `/v1/admin/import`).
    pub admin: AdminSettings,
    /// The pages the server serves to a browser.
    pub ui: UiSettings,
    /// API keys; none means the server is open (a warning is logged).
    pub keys: Vec<KeyConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            request_timeout_secs: 60,
            shutdown_timeout_secs: 20,
            header_timeout_secs: 10,
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
            sessions: SessionsConfig::default(),
            ask: AskDefaults::default(),
            embedder: EmbedderConfig::default(),
            llm: LlmConfig::default(),
            reranker: RerankerConfig::default(),
            layers: LayersConfig::default(),
            rate_limit: RateLimitSettings::default(),
            admin: AdminSettings::default(),
            ui: UiSettings::default(),
            keys: Vec::new(),
        }
    }
}

/// Which vector store.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `lance` (default: embedded LanceDB on local disk), `memory`,
    /// `pgvector` or `qdrant` (`RAG_STORE`).
    pub kind: String,
    /// For `lance`: the database directory (`RAG_STORE_PATH`; when unset,
    /// `./rag-data/<embedder model>-<dimensions>`, one per embedder, so a
    /// changed embedder never meets vectors of another dimension). For `memory`: a file loaded at startup and saved at
    /// shutdown; none keeps it in memory only.
    pub path: Option<PathBuf>,
    /// For `pgvector`: the database URL (`RAG_PG_URL` or `DATABASE_URL`).
    /// For `qdrant`: the gRPC URL (`RAG_QDRANT_URL`; default
    /// `http://127.0.0.1:6334`); its API key comes from `QDRANT_API_KEY`.
    pub url: Option<String>,
    /// For `pgvector`: the prefix of its tables (`RAG_PG_TABLE_PREFIX`;
    /// the adapter's `rag` by default).
    pub table_prefix: Option<String>,
    /// For `qdrant`: the collection (`RAG_QDRANT_COLLECTION`; the adapter's
    /// `rag_chunks` by default).
    pub collection: Option<String>,
    /// For `pgvector`: the most pooled connections (the adapter's default
    /// when unset).
    pub max_connections: Option<u32>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: "lance".into(),
            path: None,
            url: None,
            table_prefix: None,
            collection: None,
            max_connections: None,
        }
    }
}

/// Where conversation sessions are kept.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// `auto` (default: `postgres` in the vector store's database when the
    /// store is `pgvector`, else `memory`), `memory` (lost at restart,
    /// unless `sessions.path` is set) or `postgres` (durable;
    /// `sessions.url`) (`RAG_SESSIONS`).
    pub kind: String,
    /// For `memory`: a JSON file the sessions are loaded from at start-up
    /// and saved to at shutdown (`RAG_SESSIONS_PATH`); none keeps them in
    /// memory only. The `rag` command line saves after every answer and
    /// uses `rag-data/sessions.json` when this is unset.
    pub path: Option<PathBuf>,
    /// For `postgres`: the database URL (`RAG_SESSIONS_URL`; with
    /// `auto` and pgvector, the store's).
    pub url: Option<String>,
    /// For `postgres`: the prefix of the session tables (default: the
    /// store's `table_prefix`, else `rag`).
    pub table_prefix: Option<String>,
    /// For `postgres` with its own URL: the most pooled connections.
    pub max_connections: u32,
    /// Idle time after which a session expires, in seconds; each question
    /// in it pushes expiry forward; `0` never expires.
    pub ttl_secs: u64,
    /// The most live sessions in one namespace (a tenant, so per key for
    /// keys bound to a namespace); creating one more is `429`; `0` for no
    /// cap.
    pub max_per_namespace: usize,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            kind: "auto".into(),
            path: None,
            url: None,
            table_prefix: None,
            max_connections: 5,
            ttl_secs: 24 * 60 * 60,
            max_per_namespace: 0,
        }
    }
}

impl SessionsConfig {
    /// The kind `auto` resolves to with this vector store.
    pub fn resolved_kind(&self, store: &StoreConfig) -> &str {
        match (self.kind.as_str(), store.kind.as_str()) {
            ("auto", "pgvector") => "postgres",
            ("auto", _) => "memory",
            (k, _) => k,
        }
    }
}

/// Defaults of every question; a request's own values win.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AskDefaults {
    /// Sources given to the model (`Ask`'s default, 8, when unset).
    pub top_k: Option<usize>,
    /// Session messages read for a follow-up question.
    pub history_window: usize,
}

impl Default for AskDefaults {
    fn default() -> Self {
        Self {
            top_k: None,
            history_window: 20,
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
    /// For `openai`: any OpenAI-compatible base URL
    /// (`RAG_EMBEDDER_BASE_URL`; else `OPENAI_BASE_URL`, else OpenAI's).
    pub base_url: Option<String>,
    /// For `openai`: the vector length, for models other than OpenAI's own
    /// (`OPENAI_EMBEDDING_DIMENSIONS`).
    pub dimensions: Option<usize>,
    /// Entries of the embedding cache in front of the embedder (question
    /// embeddings and re-ingested chunks are not paid for twice); `0` off.
    pub cache_entries: u64,
}

impl Default for EmbedderConfig {
    fn default() -> Self {
        Self {
            kind: "auto".into(),
            model: None,
            base_url: None,
            dimensions: None,
            cache_entries: 0,
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
    /// Wrap the model in `rag::GroundedAnswerer`: it reads the best
    /// sentences, answers in a few words and every reply is cited and
    /// checked against its source (for small models; the embedded reader
    /// always is).
    pub grounded: bool,
    /// A second provider for `openai` or `groq`, used when the first fails
    /// with a transient error after its retries (or its breaker is open).
    pub fallback: Option<FallbackLlmConfig>,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            kind: "auto".into(),
            base_url: None,
            model: None,
            grounded: false,
            fallback: None,
        }
    }
}

/// The fallback chat model.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FallbackLlmConfig {
    /// `openai` (any OpenAI-compatible API, key from `OPENAI_API_KEY`) or
    /// `groq` (`GROQ_API_KEY`).
    pub kind: String,
    /// Its base URL (`RAG_LLM_FALLBACK_BASE_URL`).
    pub base_url: Option<String>,
    /// Its model.
    pub model: Option<String>,
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
    /// Consecutive failures of a remote LLM that open its circuit breaker
    /// (calls then fail fast with `503` until `breaker_cool_down_secs`
    /// pass, or go to the fallback); `0` turns the breaker off.
    pub breaker_failures: u32,
    /// Seconds an open breaker waits before letting a probe through.
    pub breaker_cool_down_secs: u64,
    /// Generations of a local model (`reader`, `local`) running at once.
    /// A local model is never retried and gets the whole request deadline:
    /// a retried timeout would run the same CPU-bound generation again.
    pub local_concurrency: usize,
    /// Questions waiting for a local model's slot; beyond them the answer
    /// is `503` with `Retry-After`.
    pub local_queue: usize,
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
            breaker_failures: 5,
            breaker_cool_down_secs: 30,
            local_concurrency: 1,
            local_queue: 4,
        }
    }
}

/// Backup and restore over HTTP. These routes are outside `body_limit_bytes`
/// and `request_timeout_secs`: a backup file is large and a restore into an
/// indexed store takes minutes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// Largest backup file `/v1/admin/import` accepts, in bytes (1 GiB by
    /// default: about 600,000 chunks of 384 dimensions); larger gets `413`.
    pub max_import_bytes: u64,
    /// Deadline of an export or an import, in seconds (one hour by default).
    pub timeout_secs: u64,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            max_import_bytes: 1024 * 1024 * 1024,
            timeout_secs: 3600,
        }
    }
}

/// The pages served to a browser. Their assets are compiled into the
/// binary: nothing is fetched at run time.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiSettings {
    /// The chat page at `/` and its assets under `/ui/` (`RAG_UI_CHAT`,
    /// `true` or `false`); when off, both answer `404`.
    pub chat: bool,
    /// The interactive API documentation: Swagger UI at `/docs` and ReDoc
    /// at `/redoc`, with their assets under `/docs/assets/`
    /// (`RAG_UI_API_DOCS`, `true` or `false`); when off, they answer `404`
    /// and `/openapi.json` does not list them.
    pub api_docs: bool,
}

impl Default for UiSettings {
    fn default() -> Self {
        Self {
            chat: true,
            api_docs: true,
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
    /// Questions per minute in one session (`/v1/ask` and
    /// `/v1/ask/stream` with a `session_id`); `0` for none.
    pub per_session_per_minute: u32,
    /// Questions per minute per key (`/v1/ask`, `/v1/ask/stream`,
    /// `/v1/chat/completions`), on top of `per_key_per_minute`; `0` for
    /// none.
    pub asks_per_key_per_minute: u32,
    /// Requests with a missing or unknown API key allowed per minute from
    /// one client IP; past it the IP gets `429` (whatever key it sends)
    /// until its budget refills; `0` for none.
    pub auth_failures_per_ip_per_minute: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_key_per_minute: 600,
            per_key_burst: 0,
            per_ip_per_minute: 0,
            per_ip_burst: 0,
            per_session_per_minute: 0,
            asks_per_key_per_minute: 0,
            auth_failures_per_ip_per_minute: 10,
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
        if let Some(v) = var("RAG_HEADER_TIMEOUT_SECS") {
            self.header_timeout_secs = num("RAG_HEADER_TIMEOUT_SECS", &v)?;
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
        if let Some(v) = var("RAG_SESSIONS") {
            self.sessions.kind = v;
        }
        if let Some(v) = var("RAG_STORE_PATH") {
            self.store.path = Some(v.into());
        }
        // The PostgreSQL URL goes to whichever part uses PostgreSQL and has
        // none in the file: the pgvector store, else durable sessions.
        if let Some(v) = var("RAG_PG_URL").or_else(|| var("DATABASE_URL")) {
            if self.store.kind == "pgvector" {
                self.store.url = Some(v);
            } else if self.sessions.kind == "postgres" {
                self.sessions.url = Some(v);
            }
        }
        if let Some(v) = var("RAG_PG_TABLE_PREFIX") {
            self.store.table_prefix = Some(v);
        }
        if let Some(v) = var("RAG_QDRANT_URL").filter(|_| self.store.kind == "qdrant") {
            self.store.url = Some(v);
        }
        if let Some(v) = var("RAG_QDRANT_COLLECTION") {
            self.store.collection = Some(v);
        }
        if let Some(v) = var("RAG_SESSIONS_URL") {
            self.sessions.url = Some(v);
        }
        if let Some(v) = var("RAG_SESSIONS_PATH") {
            self.sessions.path = Some(v.into());
        }
        if let Some(v) = var("RAG_EMBEDDER_BASE_URL") {
            self.embedder.base_url = Some(v);
        }
        if let (Some(v), Some(f)) = (var("RAG_LLM_FALLBACK_BASE_URL"), self.llm.fallback.as_mut()) {
            f.base_url = Some(v);
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
        if let Some(v) = var("RAG_UI_CHAT") {
            self.ui.chat = match v.trim() {
                "true" | "1" | "on" => true,
                "false" | "0" | "off" => false,
                _ => return Err(format!("RAG_UI_CHAT must be true or false, got {v:?}")),
            };
        }
        if let Some(v) = var("RAG_UI_API_DOCS") {
            self.ui.api_docs = match v.trim() {
                "true" | "1" | "on" => true,
                "false" | "0" | "off" => false,
                _ => {
                    return Err(format!("RAG_UI_API_DOCS must be true or false, got {v:?}"));
                }
            };
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
            "memory" | "lance" | "qdrant" => {}
            "pgvector" => {
                if self.store.url.is_none() {
                    return Err("store.kind = \"pgvector\" needs store.url (or RAG_PG_URL)".into());
                }
            }
            other => {
                return Err(format!(
                    "store.kind: unknown store {other:?} (memory, pgvector, lance, qdrant)"
                ));
            }
        }
        match self.sessions.kind.as_str() {
            "auto" | "memory" => {}
            "postgres" => {
                if self.sessions.url.is_none() && self.store.kind != "pgvector" {
                    return Err(
                        "sessions.kind = \"postgres\" needs sessions.url (or RAG_SESSIONS_URL) \
                         unless the store is pgvector"
                            .into(),
                    );
                }
                if self.sessions.max_connections == 0 {
                    return Err("sessions.max_connections must be at least 1".into());
                }
            }
            other => {
                return Err(format!(
                    "sessions.kind: unknown session store {other:?} (auto, memory, postgres)"
                ));
            }
        }
        if matches!(self.ask.top_k, Some(k) if !(1..=100).contains(&k)) {
            return Err("ask.top_k must be 1 to 100".into());
        }
        if self.ask.history_window == 0 {
            return Err("ask.history_window must be at least 1".into());
        }
        if let Some(f) = &self.llm.fallback {
            if !matches!(self.llm.kind.as_str(), "openai" | "groq") {
                return Err(format!(
                    "llm.fallback is for a remote model (llm.kind openai or groq), not {:?}",
                    self.llm.kind
                ));
            }
            if !matches!(f.kind.as_str(), "openai" | "groq") {
                return Err(format!(
                    "llm.fallback.kind: unknown LLM {:?} (openai, groq)",
                    f.kind
                ));
            }
        }
        if self.layers.local_concurrency == 0 {
            return Err("layers.local_concurrency must be at least 1".into());
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
        if self.admin.max_import_bytes == 0 || self.admin.timeout_secs == 0 {
            return Err("admin.max_import_bytes and admin.timeout_secs must be positive".into());
        }
        if self.body_limit_bytes == 0
            || self.request_timeout_secs == 0
            || self.header_timeout_secs == 0
        {
            return Err(
                "body_limit_bytes, request_timeout_secs and header_timeout_secs must be positive"
                    .into(),
            );
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
    fn refuses_unknown_stores_and_bad_values() {
        let mut c = ServerConfig::default();
        c.store.kind = "qdrant".into();
        c.validate().unwrap();
        c.store.kind = "milvus".into();
        assert!(
            c.validate()
                .unwrap_err()
                .contains("unknown store \"milvus\"")
        );
        c.store.kind = "lance".into();
        c.sessions.kind = "postgres".into();
        assert!(c.validate().unwrap_err().contains("needs sessions.url"));
        c.sessions.url = Some("postgres://localhost/rag".into());
        c.validate().unwrap();
        c.llm.fallback = Some(FallbackLlmConfig {
            kind: "openai".into(),
            ..FallbackLlmConfig::default()
        });
        assert!(
            c.validate()
                .unwrap_err()
                .contains("llm.fallback is for a remote model")
        );
        c.llm.kind = "groq".into();
        c.validate().unwrap();
        c.ask.top_k = Some(0);
        assert!(c.validate().unwrap_err().contains("ask.top_k"));
        let c = ServerConfig {
            bind: "nowhere".into(),
            ..ServerConfig::default()
        };
        assert!(c.validate().unwrap_err().starts_with("bind"));
        assert!(toml::from_str::<ServerConfig>("nonsense = 1").is_err());
    }

    #[test]
    fn the_postgres_url_goes_where_postgres_is_used() {
        let url = || Some("postgres://db/rag".to_owned());
        let mut c = ServerConfig::default();
        c.store.kind = "qdrant".into();
        c.sessions.kind = "postgres".into();
        c.apply_env(|k| if k == "DATABASE_URL" { url() } else { None })
            .unwrap();
        assert_eq!(c.store.url, None, "a PostgreSQL URL is no Qdrant URL");
        assert_eq!(c.sessions.url, url());
        c.validate().unwrap();
        let mut c = ServerConfig::default();
        c.apply_env(|k| match k {
            "RAG_STORE" => Some("pgvector".into()),
            "RAG_PG_URL" => url(),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.store.url, url());
        assert_eq!(c.sessions.resolved_kind(&c.store), "postgres");
        c.validate().unwrap();
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

    #[test]
    fn the_pages_are_turned_off_from_the_environment() {
        let mut c = ServerConfig::default();
        assert!(c.ui.chat && c.ui.api_docs, "both on by default");
        c.apply_env(|k| match k {
            "RAG_UI_API_DOCS" => Some("false".into()),
            "RAG_UI_CHAT" => Some("0".into()),
            _ => None,
        })
        .unwrap();
        assert!(!c.ui.chat && !c.ui.api_docs);
        let err = ServerConfig::default()
            .apply_env(|k| (k == "RAG_UI_API_DOCS").then(|| "maybe".into()))
            .unwrap_err();
        assert!(err.contains("RAG_UI_API_DOCS"), "{err}");
        let c: ServerConfig = toml::from_str("[ui]\napi_docs = false\n").unwrap();
        assert!(c.ui.chat && !c.ui.api_docs);
    }
}
