//! The shared state of the server, built from a [`ServerConfig`].

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
#[cfg(feature = "local")]
use rag::local::{CrossEncoderReranker, LocalChat, LocalModels};
use rag::memory::{MemoryConfig, MemorySessionConfig};
use rag::{
    AnswerCacheConfig, BreakerConfig, CachedEmbedder, Chunker, CircuitBreaker, ConcurrencyLimit,
    EmbedCacheConfig, Embedder, Fallback, GroundedAnswerer, HashEmbedder, Instrumented, LlmClient,
    MemorySessionStore, MemoryVectorStore, PromptGuard, Rag, RagConfig, RateLimit, RateLimitConfig,
    Reranker, Retry, RetryPolicy, SessionStore, Timeout, VectorStore,
};
#[cfg(feature = "local")]
use rag::{AutoChunker, ChunkSize, TokenEncoding};

use crate::auth::{KeyRing, Limits};
use crate::config::ServerConfig;
use crate::routes::feedback::FeedbackRecord;

/// A readiness probe's result and when it ran.
pub type Probe = (std::time::Instant, Result<(), String>);

/// Everything a handler needs; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The pipeline.
    pub rag: Rag,
    /// The configuration it was built from.
    pub config: Arc<ServerConfig>,
    /// Valid API keys.
    pub keys: Arc<KeyRing>,
    /// Per-key and per-IP limits.
    pub limits: Arc<Limits>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Feedback received (most recent last, bounded).
    pub feedback: Arc<Mutex<Vec<FeedbackRecord>>>,
    /// The in-memory store, when it is persisted to a file on shutdown.
    pub persist: Option<(Arc<MemoryVectorStore>, std::path::PathBuf)>,
    /// The in-memory session store, when it is saved to a file
    /// (`sessions.path`).
    pub persist_sessions: Option<(Arc<MemorySessionStore>, std::path::PathBuf)>,
    /// A name for the LLM backend, for `/ready` and `/v1/models`.
    pub llm_kind: Arc<str>,
    /// The last LLM readiness probe and when it ran (probes are cached for
    /// 30 s so that frequent `/ready` polls do not each call the model).
    pub llm_probe: Arc<tokio::sync::Mutex<Option<Probe>>>,
    /// The embedded reader's llama-server child, for `llm.kind` `reader`
    /// (or `auto` when it is there); it stops when the last state is dropped.
    pub reader: Option<Arc<crate::llama::LlamaServer>>,
    /// Held while a session is counted and created under
    /// `sessions.max_per_namespace`, so concurrent requests cannot
    /// overshoot the cap between the count and the creation.
    pub session_creation: Arc<tokio::sync::Mutex<()>>,
}

/// The process-wide Prometheus recorder (installed once).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding apps):
            // then /metrics shows only what this one records.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Layers of a model that runs on this machine (the embedded reader, the
/// candle model): a bound on generations at once with a short queue (then
/// `503` with `Retry-After`), one attempt with the whole request deadline,
/// never a retry — a retried timeout would run the same CPU-bound
/// generation again while the first one still holds the cores.
fn local_layers(llm: Arc<dyn LlmClient>, cfg: &ServerConfig) -> Arc<dyn LlmClient> {
    let l = &cfg.layers;
    let llm: Arc<dyn LlmClient> = Arc::new(Timeout::new(
        llm,
        Duration::from_secs(cfg.request_timeout_secs),
    ));
    let mut llm: Arc<dyn LlmClient> = Arc::new(ConcurrencyLimit::new(
        llm,
        l.local_concurrency,
        l.local_queue,
    ));
    if l.instrument {
        llm = Arc::new(Instrumented::new(llm));
    }
    llm
}

/// Layers of a remote model, innermost first: a deadline per attempt, the
/// client-side rate limit, the circuit breaker (named `name`), retries of
/// transient errors.
fn remote_layers(llm: Arc<dyn LlmClient>, name: &str, cfg: &ServerConfig) -> Arc<dyn LlmClient> {
    let l = &cfg.layers;
    let mut llm: Arc<dyn LlmClient> =
        Arc::new(Timeout::new(llm, Duration::from_secs(l.call_timeout_secs)));
    if l.llm_requests_per_minute > 0 {
        llm = Arc::new(RateLimit::new(
            llm,
            RateLimitConfig::new("llm").requests_per_minute(l.llm_requests_per_minute),
        ));
    }
    if l.breaker_failures > 0 {
        llm = Arc::new(CircuitBreaker::new(
            llm,
            BreakerConfig::new(format!("llm-{name}"))
                .failure_threshold(l.breaker_failures)
                .cool_down(Duration::from_secs(l.breaker_cool_down_secs)),
        ));
    }
    if l.retry_attempts > 1 {
        llm = Arc::new(Retry::new(
            llm,
            RetryPolicy::default().max_attempts(l.retry_attempts),
        ));
    }
    llm
}

/// An `openai` or `groq` chat client; the file's base URL and model take
/// precedence over the provider's variables.
fn remote_llm(
    kind: &str,
    base_url: Option<&str>,
    model: Option<&str>,
    env: &(impl Fn(&str) -> Option<String> + Clone),
) -> rag::Result<Arc<dyn LlmClient>> {
    let (base, model) = (base_url.map(str::to_owned), model.map(str::to_owned));
    if kind == "groq" {
        let key = env("GROQ_API_KEY")
            .ok_or_else(|| rag::Error::invalid_input("GROQ_API_KEY is not set"))?;
        let model = model
            .or_else(|| env("GROQ_MODEL"))
            .unwrap_or_else(|| rag::groq::DEFAULT_MODEL.to_owned());
        let mut c = rag::groq::groq_config(key, model);
        if let Some(url) = base.or_else(|| env("GROQ_BASE_URL")) {
            c = c.with_base_url(url);
        }
        return Ok(Arc::new(rag::groq::GroqChat::with_config(c)?));
    }
    let env = env.clone();
    let c = rag::openai::OpenAiConfig::from_lookup(move |k| match k {
        "OPENAI_BASE_URL" if base.is_some() => base.clone(),
        "OPENAI_CHAT_MODEL" if model.is_some() => model.clone(),
        _ => env(k),
    })?;
    Ok(Arc::new(rag::openai::OpenAiChat::new(c)?))
}

/// The `openai` embedder: the file's base URL, model and dimensions take
/// precedence over the `OPENAI_*` variables.
fn openai_embedder(
    cfg: &ServerConfig,
    env: impl Fn(&str) -> Option<String>,
) -> rag::Result<rag::openai::OpenAiEmbedder> {
    let e = &cfg.embedder;
    let (base, model, dims) = (
        e.base_url.clone(),
        e.model.clone(),
        e.dimensions.map(|d| d.to_string()),
    );
    let c = rag::openai::OpenAiConfig::from_lookup(move |k| match k {
        "OPENAI_BASE_URL" if base.is_some() => base.clone(),
        "OPENAI_EMBEDDING_MODEL" if model.is_some() => model.clone(),
        "OPENAI_EMBEDDING_DIMENSIONS" if dims.is_some() => dims.clone(),
        _ => env(k),
    })?;
    rag::openai::OpenAiEmbedder::new(c)
}

/// A PostgreSQL pool shared by the pgvector store and the sessions (none
/// can exist in a server built without the `pgvector` feature).
#[cfg(feature = "pgvector")]
type PgPool = rag::pgvector::PgPool;
#[cfg(not(feature = "pgvector"))]
type PgPool = std::convert::Infallible;

/// The error of a configuration that names a backend this server was built
/// without.
#[allow(dead_code, reason = "unused when every backend is built in")]
fn not_built(what: &str, kind: &str) -> String {
    format!("{what} ({kind}): this server was built without the `{kind}` feature of rag-server")
}

/// The vector store of `config`, and its PostgreSQL pool when it has one.
async fn build_store(
    config: &ServerConfig,
    embedder: &dyn Embedder,
    #[cfg_attr(not(feature = "qdrant"), allow(unused_variables))] env: &impl Fn(&str) -> Option<String>,
    persist: &mut Option<(Arc<MemoryVectorStore>, std::path::PathBuf)>,
) -> Result<(Arc<dyn VectorStore>, Option<PgPool>), String> {
    let err = |what: String| move |e: rag::Error| format!("{what}: {e}");
    let s = &config.store;
    Ok(match s.kind.as_str() {
        #[cfg(feature = "pgvector")]
        "pgvector" => {
            use rag::pgvector::{PgVectorConfig, PgVectorStore, PoolConfig};
            let url = s.url.clone().unwrap_or_default();
            let mut pc = PgVectorConfig::default().with_dimensions(embedder.dimensions());
            if let Some(prefix) = &s.table_prefix {
                pc = pc.with_table_prefix(prefix.as_str());
            }
            if let Some(n) = s.max_connections {
                pc = pc.with_pool(PoolConfig::default().with_max_connections(n));
            }
            let store = PgVectorStore::connect(&url, pc)
                .await
                .map_err(err("store (pgvector)".into()))?;
            let pool = store.pool().clone();
            (Arc::new(store), Some(pool))
        }
        #[cfg(feature = "qdrant")]
        "qdrant" => {
            use rag::qdrant::{QdrantConfig, QdrantStore};
            let url = s
                .url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:6334".to_owned());
            let mut qc = QdrantConfig::new(url.as_str(), embedder.dimensions());
            if let Some(c) = &s.collection {
                qc = qc.with_collection(c.as_str());
            }
            if let Some(key) = env("QDRANT_API_KEY") {
                qc = qc.with_api_key(key);
            }
            let store = QdrantStore::connect(qc)
                .await
                .map_err(err(format!("store (qdrant, {url})")))?;
            (Arc::new(store), None)
        }
        #[cfg(feature = "lance")]
        "lance" => {
            use rag::lance::{LanceConfig, LanceVectorStore};
            let dir = s
                .path
                .clone()
                .unwrap_or_else(|| std::path::Path::new("rag-data").join(store_dir_name(embedder)));
            let uri = dir.to_string_lossy().into_owned();
            let store = LanceVectorStore::open(LanceConfig::new(uri, embedder.dimensions()))
                .await
                .map_err(err(format!("store (lance, {})", dir.display())))?;
            (Arc::new(store), None)
        }
        #[cfg(not(feature = "pgvector"))]
        "pgvector" => return Err(not_built("store", "pgvector")),
        #[cfg(not(feature = "qdrant"))]
        "qdrant" => return Err(not_built("store", "qdrant")),
        #[cfg(not(feature = "lance"))]
        "lance" => return Err(not_built("store", "lance")),
        _ => {
            let mc = MemoryConfig::default().with_dimensions(embedder.dimensions());
            let store = match &s.path {
                Some(p) if p.exists() => MemoryVectorStore::load(p, mc)
                    .map_err(err(format!("store (memory, {})", p.display())))?,
                _ => MemoryVectorStore::new(mc),
            };
            let store = Arc::new(store);
            if let Some(p) = &s.path {
                *persist = Some((store.clone(), p.clone()));
            }
            (store, None)
        }
    })
}

/// The session store of `config`: in memory, or in PostgreSQL (its own
/// database, or the pgvector store's pool).
async fn build_sessions(
    config: &ServerConfig,
    store_pool: Option<PgPool>,
    persist: &mut Option<(Arc<MemorySessionStore>, std::path::PathBuf)>,
) -> Result<Arc<dyn SessionStore>, String> {
    let c = &config.sessions;
    let ttl = (c.ttl_secs > 0).then(|| Duration::from_secs(c.ttl_secs));
    if c.resolved_kind(&config.store) != "postgres" {
        let mc = MemorySessionConfig::default().with_default_ttl(ttl);
        let store = match &c.path {
            Some(p) if p.exists() => MemorySessionStore::load(p, mc)
                .map_err(|e| format!("session store (memory, {}): {e}", p.display()))?,
            _ => MemorySessionStore::new(mc),
        };
        let store = Arc::new(store);
        if let Some(p) = &c.path {
            *persist = Some((store.clone(), p.clone()));
        }
        return Ok(store);
    }
    postgres_sessions(config, ttl, store_pool).await
}

#[cfg(not(feature = "pgvector"))]
async fn postgres_sessions(
    _: &ServerConfig,
    _: Option<Duration>,
    _: Option<PgPool>,
) -> Result<Arc<dyn SessionStore>, String> {
    Err(not_built("session store", "pgvector"))
}

#[cfg(feature = "pgvector")]
async fn postgres_sessions(
    config: &ServerConfig,
    ttl: Option<Duration>,
    store_pool: Option<PgPool>,
) -> Result<Arc<dyn SessionStore>, String> {
    let c = &config.sessions;
    use rag::pgvector::{PgSessionConfig, PgSessionStore, PoolConfig};
    let err = |e: rag::Error| format!("session store (postgres): {e}");
    let mut sc = PgSessionConfig::default().with_default_ttl(ttl);
    if let Some(prefix) = c
        .table_prefix
        .as_ref()
        .or(config.store.table_prefix.as_ref())
    {
        sc = sc.with_table_prefix(prefix.as_str());
    }
    let sessions = match (&c.url, store_pool) {
        (Some(url), _) => {
            let pool = PoolConfig::default().with_max_connections(c.max_connections);
            PgSessionStore::connect_with_pool(url, sc, &pool)
                .await
                .map_err(err)?
        }
        (None, Some(pool)) => {
            let s = PgSessionStore::with_config(pool, sc).map_err(err)?;
            s.migrate().await.map_err(err)?;
            s
        }
        (None, None) => return Err("session store (postgres): no sessions.url".into()),
    };
    Ok(Arc::new(sessions))
}

fn layered_embedder(e: Arc<dyn Embedder>, cfg: &ServerConfig, remote: bool) -> Arc<dyn Embedder> {
    let l = &cfg.layers;
    let mut e = e;
    if remote {
        e = Arc::new(Timeout::new(e, Duration::from_secs(l.call_timeout_secs)));
        if l.retry_attempts > 1 {
            e = Arc::new(Retry::new(
                e,
                RetryPolicy::default().max_attempts(l.retry_attempts),
            ));
        }
    }
    // The cache outside the attempts: a hit costs no call, no retry.
    if cfg.embedder.cache_entries > 0 {
        e = Arc::new(CachedEmbedder::new(
            e,
            EmbedCacheConfig::entries(cfg.embedder.cache_entries),
        ));
    }
    if l.instrument {
        e = Arc::new(Instrumented::new(e));
    }
    e
}

/// A directory name for an embedder's store: its model id and dimensions
/// (`all-minilm-l6-v2-384`), so that each embedder gets its own LanceDB
/// directory under `rag-data` and switching embedders never meets vectors
/// of another dimension.
pub fn store_dir_name(embedder: &dyn Embedder) -> String {
    let id: String = embedder
        .model_id()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let mut slug = String::with_capacity(id.len());
    for c in id.chars() {
        if !(c == '-' && (slug.is_empty() || slug.ends_with('-'))) {
            slug.push(c);
        }
    }
    format!("{}-{}", slug.trim_end_matches('-'), embedder.dimensions())
}

#[cfg(feature = "local")]
/// The local models (rag-local) that the configuration asks for, loaded.
#[derive(Default)]
pub struct LocalLoaded {
    /// The embedder, for `embedder.kind` `local`, `auto`, `bge` or `minilm`.
    pub embedder: Option<Arc<dyn Embedder>>,
    /// The chunker that suits that embedder's input window (see
    /// [`LocalEmbedderModel::chunk_tokens`]).
    pub chunker: Option<Arc<dyn Chunker>>,
    /// The cross-encoder, for `reranker.kind` `local` or `auto`.
    pub reranker: Option<CrossEncoderReranker>,
    /// The chat model, for `llm.kind` `local` or `auto`.
    pub chat: Option<LocalChat>,
}

#[cfg(feature = "local")]
/// The local embedding models `rag-local` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalEmbedderModel {
    /// BAAI bge-small-en-v1.5, int8, on ONNX Runtime (`OnnxEmbedder`).
    Bge,
    /// sentence-transformers all-MiniLM-L6-v2, fp32, on candle (`LocalEmbedder`).
    MiniLm,
}

#[cfg(feature = "local")]
/// The embedder of `local` and `auto`: the one that measured best on the
/// SciFact TRAIN split (`docs/evaluation.md`).
pub const DEFAULT_LOCAL_EMBEDDER: LocalEmbedderModel = LocalEmbedderModel::Bge;

#[cfg(feature = "local")]
impl LocalEmbedderModel {
    fn other(self) -> Self {
        match self {
            Self::Bge => Self::MiniLm,
            Self::MiniLm => Self::Bge,
        }
    }

    fn present(self, models: &LocalModels) -> bool {
        match self {
            Self::Bge => models.has_bge_embedder(),
            Self::MiniLm => models.has_embedder(),
        }
    }

    /// Chunk size and overlap in cl100k tokens for this model's input
    /// window: 512 and 64 for bge-small (a 512-token window; on SciFact
    /// train, whole-abstract chunks scored nDCG@10 0.851 against 0.841 at
    /// 256), 256 and 32 for all-MiniLM-L6-v2 (a 256-token window), the
    /// pipeline's default.
    pub fn chunk_tokens(self) -> (usize, usize) {
        match self {
            Self::Bge => (512, 64),
            Self::MiniLm => (256, 32),
        }
    }

    /// [`LocalEmbedderModel::chunk_tokens`] as a chunker (Markdown-aware
    /// for `.md` sources, like the pipeline's default).
    pub fn chunker(self) -> Arc<dyn Chunker> {
        let (max, overlap) = self.chunk_tokens();
        Arc::new(
            AutoChunker::new(ChunkSize::Tokens {
                encoding: TokenEncoding::Cl100k,
                max,
                overlap,
            })
            .expect("a valid chunk size"),
        )
    }

    fn load(self, models: &LocalModels) -> rag::Result<Arc<dyn Embedder>> {
        Ok(match self {
            Self::Bge => Arc::new(models.bge_embedder()?),
            Self::MiniLm => Arc::new(models.embedder()?),
        })
    }
}

#[cfg(feature = "local")]
/// Loads the local models that `config` asks for from the models directory
/// (`RAG_MODELS_DIR`, else `~/.cache/rag/models`). `local` requires the
/// model: missing or damaged is an error that names the file and
/// `scripts/fetch-models`. `auto` takes the model when its files are there
/// (a damaged file is still an error, never a silent fallback) and
/// otherwise leaves it out with one warning. Blocking: reads up to a few
/// hundred MB.
pub fn load_local_models(config: &ServerConfig) -> Result<LocalLoaded, String> {
    // The candle chat model only when asked for: `auto` prefers the reader,
    // then extractive answers (SmolLM2-135M writing freely measured worse
    // than either; docs/answers.md).
    let llm = if config.llm.kind == "local" {
        "local"
    } else {
        "none"
    };
    load_local(&config.embedder.kind, &config.reranker.kind, llm)
}

#[cfg(feature = "local")]
/// [`load_local_models`] for the three kinds (`local`, `auto` or anything
/// else for "not local") of the embedder, the reranker and the LLM.
pub fn load_local(embedder: &str, reranker: &str, llm: &str) -> Result<LocalLoaded, String> {
    // Kinds that require a local model; `auto` takes one when it is there.
    let required = |k: &str| matches!(k, "local" | "bge" | "minilm");
    let kinds = [("embedder", embedder), ("reranker", reranker), ("llm", llm)];
    if kinds.iter().all(|(_, k)| !required(k) && *k != "auto") {
        return Ok(LocalLoaded::default());
    }
    let models = match LocalModels::from_env() {
        Ok(m) => m,
        Err(e) => {
            if let Some((what, _)) = kinds.iter().find(|(_, k)| required(k)) {
                return Err(format!("{what} (local): {e}"));
            }
            tracing::warn!(
                error = %e,
                "no local models: using the HashEmbedder, no reranker and extractive answers \
                 (run scripts/fetch-models for real local RAG)"
            );
            return Ok(LocalLoaded::default());
        }
    };
    let missing = |what: &str| {
        tracing::warn!(
            models_dir = %models.dir().display(),
            "no local {what} model in the models directory: leaving it out \
             (run scripts/fetch-models)"
        );
    };
    let wanted = |kind: &str, what: &str, present: bool| -> bool {
        match kind {
            "local" => true,
            "auto" if present => true,
            "auto" => {
                missing(what);
                false
            }
            _ => false,
        }
    };
    let err = |what: &'static str| move |e: rag::Error| format!("{what} (local): {e}");
    let mut loaded = LocalLoaded::default();
    let model = match embedder {
        "bge" => Some(LocalEmbedderModel::Bge),
        "minilm" => Some(LocalEmbedderModel::MiniLm),
        "local" => Some(DEFAULT_LOCAL_EMBEDDER),
        // `auto`: the default model when it is there, else the other one.
        "auto" => [DEFAULT_LOCAL_EMBEDDER, DEFAULT_LOCAL_EMBEDDER.other()]
            .into_iter()
            .find(|m| m.present(&models))
            .or_else(|| {
                missing("embedding");
                None
            }),
        _ => None,
    };
    if let Some(m) = model {
        loaded.embedder = Some(m.load(&models).map_err(err("embedder"))?);
        loaded.chunker = Some(m.chunker());
    }
    if wanted(reranker, "reranker", models.has_reranker()) {
        loaded.reranker = Some(models.reranker().map_err(err("reranker"))?);
    }
    if wanted(llm, "chat", models.has_chat()) {
        loaded.chat = Some(models.chat().map_err(err("llm"))?);
    }
    Ok(loaded)
}

/// The local models directory (`RAG_MODELS_DIR`, else
/// `~/.cache/rag/models`), where the embedded reader's model is too.
#[cfg(feature = "local")]
fn models_dir() -> Result<std::path::PathBuf, String> {
    LocalModels::from_env()
        .map(|m| m.dir().to_path_buf())
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "local"))]
fn models_dir() -> Result<std::path::PathBuf, String> {
    Err("this server was built without the `local` feature of rag-server".into())
}

/// The local models the configuration asks for, as the pipeline takes them:
/// embedder, its chunker, reranker, chat model.
type LocalParts = (
    Option<Arc<dyn Embedder>>,
    Option<Arc<dyn Chunker>>,
    Option<Arc<dyn Reranker>>,
    Option<Arc<dyn LlmClient>>,
);

/// [`load_local_models`], off the async threads (loading reads files).
#[cfg(feature = "local")]
async fn local_parts(config: &ServerConfig) -> Result<LocalParts, String> {
    let local_config = config.clone();
    let local = tokio::task::spawn_blocking(move || load_local_models(&local_config))
        .await
        .map_err(|e| format!("loading local models: {e}"))??;
    Ok((
        local.embedder,
        local.chunker,
        local.reranker.map(|r| Arc::new(r) as Arc<dyn Reranker>),
        local.chat.map(|c| Arc::new(c) as Arc<dyn LlmClient>),
    ))
}

/// Without the `local` feature: a kind that requires a local model is an
/// error, `auto` goes without.
#[cfg(not(feature = "local"))]
async fn local_parts(config: &ServerConfig) -> Result<LocalParts, String> {
    let required = [
        (
            "embedder",
            config.embedder.kind.as_str(),
            ["local", "bge", "minilm"].as_slice(),
        ),
        (
            "reranker",
            config.reranker.kind.as_str(),
            ["local"].as_slice(),
        ),
        ("llm", config.llm.kind.as_str(), ["local"].as_slice()),
    ];
    for (what, kind, local) in required {
        if local.contains(&kind) {
            return Err(not_built(what, "local"));
        }
    }
    Ok((None, None, None, None))
}

impl AppState {
    /// Builds the pipeline and its backends; a clear message on failure.
    /// Secrets (`OPENAI_API_KEY`, `GROQ_API_KEY`, `QDRANT_API_KEY`) come
    /// from the environment.
    pub async fn build(config: ServerConfig) -> Result<Self, String> {
        Self::build_with_env(config, |k| std::env::var(k).ok().filter(|v| !v.is_empty())).await
    }

    /// [`AppState::build`] reading the provider variables (`OPENAI_*`,
    /// `GROQ_*`, `QDRANT_API_KEY`) through `env` instead of the process
    /// environment: for tests, and for programs that keep secrets elsewhere.
    pub async fn build_with_env(
        config: ServerConfig,
        env: impl Fn(&str) -> Option<String> + Clone + Send + Sync + 'static,
    ) -> Result<Self, String> {
        config.validate()?;
        let err = |what: &str| {
            let what = what.to_owned();
            move |e: rag::Error| format!("{what}: {e}")
        };

        // The embedded reader: `reader` requires it; `auto` takes it when
        // llama-server and the reader model are there.
        let mut reader = None;
        if matches!(config.llm.kind.as_str(), "reader" | "auto") {
            let started = match models_dir() {
                Ok(dir) => crate::llama::start_reader(&dir)
                    .await
                    .map_err(|e| format!("llm (reader): {e}"))?,
                Err(e) => Err(e),
            };
            match started {
                Ok((server, llm)) => {
                    tracing::info!(url = server.base_url(), "the embedded reader is up");
                    reader = Some((Arc::new(server), llm));
                }
                Err(why) if config.llm.kind == "reader" => {
                    return Err(format!("llm (reader): {why}"));
                }
                Err(why) => tracing::warn!(
                    reason = %why,
                    "no embedded reader: answers are extractive (sentences quoted from the sources)"
                ),
            }
        }

        let (local_embedder, local_chunker, local_reranker, local_chat) =
            local_parts(&config).await?;

        // Embedder.
        let embedder: Arc<dyn Embedder> = match (config.embedder.kind.as_str(), local_embedder) {
            ("local" | "auto" | "bge" | "minilm", Some(e)) => layered_embedder(e, &config, false),
            ("openai", _) => {
                let e = openai_embedder(&config, env.clone()).map_err(err("embedder (openai)"))?;
                layered_embedder(Arc::new(e), &config, true)
            }
            _ => layered_embedder(Arc::new(HashEmbedder::default()), &config, false),
        };

        let mut persist = None;
        let (store, pg_pool) = build_store(&config, embedder.as_ref(), &env, &mut persist).await?;
        let mut persist_sessions = None;
        let sessions = build_sessions(&config, pg_pool, &mut persist_sessions).await?;

        // LLM.
        let reader_server = reader.as_ref().map(|(server, _)| server.clone());
        let (llm, llm_kind): (Option<Arc<dyn LlmClient>>, &str) =
            match (config.llm.kind.as_str(), local_chat) {
                (_, _) if reader.is_some() => {
                    (reader.map(|(_, llm)| local_layers(llm, &config)), "reader")
                }
                ("local", Some(chat)) => (Some(local_layers(chat, &config)), "local"),
                (kind @ ("openai" | "groq"), _) => {
                    let l = &config.llm;
                    let primary = remote_llm(kind, l.base_url.as_deref(), l.model.as_deref(), &env)
                        .map_err(|e| format!("llm ({kind}): {e}"))?;
                    let mut llm = remote_layers(primary, kind, &config);
                    if let Some(f) = &l.fallback {
                        let secondary =
                            remote_llm(&f.kind, f.base_url.as_deref(), f.model.as_deref(), &env)
                                .map_err(|e| format!("llm.fallback ({}): {e}", f.kind))?;
                        let secondary = remote_layers(secondary, "fallback", &config);
                        llm = Arc::new(Fallback::new(llm, secondary));
                    }
                    if l.grounded {
                        llm = Arc::new(GroundedAnswerer::new(llm));
                    }
                    if config.layers.instrument {
                        llm = Arc::new(Instrumented::new(llm));
                    }
                    (Some(llm), if kind == "openai" { "openai" } else { "groq" })
                }
                _ => (None, "extractive"),
            };
        let reranker = local_reranker;

        let mut builder = Rag::builder()
            .embedder_arc(embedder)
            .store_arc(store)
            .sessions_arc(sessions)
            .config(RagConfig::default().with_history_window(config.ask.history_window));
        if let Some(chunker) = local_chunker {
            builder = builder.chunker_arc(chunker);
        }
        if let Some(llm) = llm {
            builder = builder.llm_arc(llm);
        }
        if let Some(reranker) = reranker {
            builder = builder.reranker_arc(reranker);
        }
        if config.layers.prompt_guard {
            builder = builder.guard(PromptGuard::default());
        }
        if config.layers.answer_cache_entries > 0 {
            builder =
                builder.answer_cache(AnswerCacheConfig::new(config.layers.answer_cache_entries));
        }
        let rag = builder.build().map_err(err("pipeline"))?;
        let mut state = Self::from_rag(rag, config, llm_kind)?;
        state.persist = persist;
        state.persist_sessions = persist_sessions;
        state.reader = reader_server;
        Ok(state)
    }

    /// Serves an existing pipeline (your own store, models and layers) with
    /// the server settings of `config`; its `store`, `embedder`, `llm` and
    /// `layers` sections are ignored. `llm_kind` names the model backend in
    /// `/ready` and `/v1/models`; `"extractive"` skips the readiness probe.
    pub fn from_rag(rag: Rag, config: ServerConfig, llm_kind: &str) -> Result<Self, String> {
        config.validate()?;
        let keys = KeyRing::new(&config.keys)?;
        let r = &config.rate_limit;
        let limits = Limits::new(
            r.per_key_per_minute,
            r.per_key_burst,
            r.per_ip_per_minute,
            r.per_ip_burst,
        )
        .with_per_session(r.per_session_per_minute)
        .with_asks_per_key(r.asks_per_key_per_minute)
        .with_auth_failures_per_ip(r.auth_failures_per_ip_per_minute);
        Ok(Self {
            rag,
            keys: Arc::new(keys),
            limits: Arc::new(limits),
            metrics: metrics_handle(),
            feedback: Arc::new(Mutex::new(Vec::new())),
            persist: None,
            persist_sessions: None,
            llm_kind: llm_kind.into(),
            llm_probe: Arc::default(),
            reader: None,
            session_creation: Arc::default(),
            config: Arc::new(config),
        })
    }

    /// Saves the in-memory store and the in-memory sessions to their
    /// files, when configured.
    pub fn persist(&self) -> Result<(), String> {
        if let Some((store, path)) = &self.persist {
            store
                .save(path)
                .map_err(|e| format!("saving the store to {}: {e}", path.display()))?;
        }
        self.persist_sessions()
    }

    /// Saves the in-memory sessions to their file (`sessions.path`), when
    /// configured.
    pub fn persist_sessions(&self) -> Result<(), String> {
        if let Some((sessions, path)) = &self.persist_sessions {
            sessions
                .save(path)
                .map_err(|e| format!("saving the sessions to {}: {e}", path.display()))?;
        }
        Ok(())
    }
}
