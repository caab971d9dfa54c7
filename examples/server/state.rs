//! The shared state of the server, built from a [`ServerConfig`].

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rag::memory::MemoryConfig;
use rag::{
    AnswerCacheConfig, Embedder, HashEmbedder, Instrumented, LlmClient, MemorySessionStore,
    MemoryVectorStore, PromptGuard, Rag, RateLimit, RateLimitConfig, Retry, RetryPolicy,
    SessionStore, Timeout, VectorStore,
};

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
    /// A name for the LLM backend, for `/ready` and `/v1/models`.
    pub llm_kind: Arc<str>,
    /// The last LLM readiness probe and when it ran (probes are cached for
    /// 30 s so that frequent `/ready` polls do not each call the model).
    pub llm_probe: Arc<tokio::sync::Mutex<Option<Probe>>>,
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

fn layered_llm(llm: Arc<dyn LlmClient>, cfg: &ServerConfig) -> Arc<dyn LlmClient> {
    let l = &cfg.layers;
    let mut llm: Arc<dyn LlmClient> =
        Arc::new(Timeout::new(llm, Duration::from_secs(l.call_timeout_secs)));
    if l.llm_requests_per_minute > 0 {
        llm = Arc::new(RateLimit::new(
            llm,
            RateLimitConfig::new("llm").requests_per_minute(l.llm_requests_per_minute),
        ));
    }
    if l.retry_attempts > 1 {
        llm = Arc::new(Retry::new(
            llm,
            RetryPolicy::default().max_attempts(l.retry_attempts),
        ));
    }
    if l.instrument {
        llm = Arc::new(Instrumented::new(llm));
    }
    llm
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
    if l.instrument {
        e = Arc::new(Instrumented::new(e));
    }
    e
}

impl AppState {
    /// Builds the pipeline and its backends; a clear message on failure.
    pub async fn build(config: ServerConfig) -> Result<Self, String> {
        config.validate()?;
        let err = |what: &str| {
            let what = what.to_owned();
            move |e: rag::Error| format!("{what}: {e}")
        };

        // Embedder.
        let embedder: Arc<dyn Embedder> = match config.embedder.kind.as_str() {
            "openai" => {
                let mut c = rag::openai::OpenAiConfig::from_env().map_err(err("embedder"))?;
                if let Some(m) = &config.embedder.model {
                    c = c.with_embedding_model(m.as_str());
                }
                let e = rag::openai::OpenAiEmbedder::new(c).map_err(err("embedder"))?;
                layered_embedder(Arc::new(e), &config, true)
            }
            _ => layered_embedder(Arc::new(HashEmbedder::default()), &config, false),
        };

        // Store and sessions.
        let mut persist = None;
        let (store, sessions): (Arc<dyn VectorStore>, Arc<dyn SessionStore>) =
            match config.store.kind.as_str() {
                "pgvector" => {
                    use rag::pgvector::{
                        PgSessionConfig, PgSessionStore, PgVectorConfig, PgVectorStore,
                    };
                    let url = config.store.url.clone().unwrap_or_default();
                    let mut pc = PgVectorConfig::default().with_dimensions(embedder.dimensions());
                    let mut sc = PgSessionConfig::default();
                    if let Some(prefix) = &config.store.table_prefix {
                        pc = pc.with_table_prefix(prefix.as_str());
                        sc = sc.with_table_prefix(prefix.as_str());
                    }
                    let store = PgVectorStore::connect(&url, pc)
                        .await
                        .map_err(err("store (pgvector)"))?;
                    let sessions = PgSessionStore::with_config(store.pool().clone(), sc)
                        .map_err(err("session store (pgvector)"))?;
                    sessions
                        .migrate()
                        .await
                        .map_err(err("session store (pgvector)"))?;
                    (Arc::new(store), Arc::new(sessions))
                }
                "lance" => {
                    use rag::lance::{LanceConfig, LanceVectorStore};
                    let dir = config
                        .store
                        .path
                        .clone()
                        .unwrap_or_else(|| std::path::PathBuf::from("rag-data"));
                    let uri = dir.to_string_lossy().into_owned();
                    let store =
                        LanceVectorStore::open(LanceConfig::new(uri, embedder.dimensions()))
                            .await
                            .map_err(err(&format!("store (lance, {})", dir.display())))?;
                    (Arc::new(store), Arc::new(MemorySessionStore::default()))
                }
                _ => {
                    let mc = MemoryConfig::default().with_dimensions(embedder.dimensions());
                    let store = match &config.store.path {
                        Some(p) if p.exists() => MemoryVectorStore::load(p, mc)
                            .map_err(err(&format!("store (memory, {})", p.display())))?,
                        _ => MemoryVectorStore::new(mc),
                    };
                    let store = Arc::new(store);
                    if let Some(p) = &config.store.path {
                        persist = Some((store.clone(), p.clone()));
                    }
                    (store, Arc::new(MemorySessionStore::default()))
                }
            };

        // LLM.
        let (llm, llm_kind): (Option<Arc<dyn LlmClient>>, &str) = match config.llm.kind.as_str() {
            "openai" => {
                // The file's settings take precedence over `OPENAI_*`.
                let (base, model) = (config.llm.base_url.clone(), config.llm.model.clone());
                let c = rag::openai::OpenAiConfig::from_lookup(|k| match k {
                    "OPENAI_BASE_URL" if base.is_some() => base.clone(),
                    "OPENAI_CHAT_MODEL" if model.is_some() => model.clone(),
                    _ => std::env::var(k).ok().filter(|v| !v.is_empty()),
                })
                .map_err(err("llm (openai)"))?;
                let chat = rag::openai::OpenAiChat::new(c).map_err(err("llm (openai)"))?;
                (Some(Arc::new(chat)), "openai")
            }
            "groq" => {
                let key = std::env::var("GROQ_API_KEY")
                    .map_err(|_| "llm (groq): GROQ_API_KEY is not set".to_owned())?;
                let model = config
                    .llm
                    .model
                    .clone()
                    .unwrap_or_else(|| "llama-3.3-70b-versatile".to_owned());
                let chat = rag::groq::GroqChat::new(key, model).map_err(err("llm (groq)"))?;
                (Some(Arc::new(chat)), "groq")
            }
            _ => (None, "extractive"),
        };

        let mut builder = Rag::builder()
            .embedder_arc(embedder)
            .store_arc(store)
            .sessions_arc(sessions);
        if let Some(llm) = llm {
            builder = builder.llm_arc(layered_llm(llm, &config));
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
        );
        Ok(Self {
            rag,
            keys: Arc::new(keys),
            limits: Arc::new(limits),
            metrics: metrics_handle(),
            feedback: Arc::new(Mutex::new(Vec::new())),
            persist: None,
            llm_kind: llm_kind.into(),
            llm_probe: Arc::default(),
            config: Arc::new(config),
        })
    }

    /// Saves the in-memory store to its file, when configured.
    pub fn persist(&self) -> Result<(), String> {
        if let Some((store, path)) = &self.persist {
            store
                .save(path)
                .map_err(|e| format!("saving the store to {}: {e}", path.display()))?;
        }
        Ok(())
    }
}
