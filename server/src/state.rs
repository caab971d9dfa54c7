//! The shared state of the server, built from a [`ServerConfig`].

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rag::local::{CrossEncoderReranker, LocalChat, LocalModels};
use rag::memory::MemoryConfig;
use rag::{
    AnswerCacheConfig, AutoChunker, ChunkSize, Chunker, Embedder, HashEmbedder, Instrumented,
    LlmClient, MemorySessionStore, MemoryVectorStore, PromptGuard, Rag, RateLimit, RateLimitConfig,
    Reranker, Retry, RetryPolicy, SessionStore, Timeout, TokenEncoding, VectorStore,
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
    /// The embedded reader's llama-server child, for `llm.kind` `reader`
    /// (or `auto` when it is there); it stops when the last state is dropped.
    pub reader: Option<Arc<crate::llama::LlamaServer>>,
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

/// The local embedding models `rag-local` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalEmbedderModel {
    /// BAAI bge-small-en-v1.5, int8, on ONNX Runtime (`OnnxEmbedder`).
    Bge,
    /// sentence-transformers all-MiniLM-L6-v2, fp32, on candle (`LocalEmbedder`).
    MiniLm,
}

/// The embedder of `local` and `auto`: the one that measured best on the
/// SciFact TRAIN split (`docs/evaluation.md`).
pub const DEFAULT_LOCAL_EMBEDDER: LocalEmbedderModel = LocalEmbedderModel::Bge;

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

impl AppState {
    /// Builds the pipeline and its backends; a clear message on failure.
    pub async fn build(config: ServerConfig) -> Result<Self, String> {
        config.validate()?;
        let err = |what: &str| {
            let what = what.to_owned();
            move |e: rag::Error| format!("{what}: {e}")
        };

        // The embedded reader: `reader` requires it; `auto` takes it when
        // llama-server and the reader model are there.
        let mut reader = None;
        if matches!(config.llm.kind.as_str(), "reader" | "auto") {
            let started = match LocalModels::from_env() {
                Ok(models) => crate::llama::start_reader(models.dir())
                    .await
                    .map_err(|e| format!("llm (reader): {e}"))?,
                Err(e) => Err(e.to_string()),
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

        // Local models (off the async threads: loading reads files).
        let local_config = config.clone();
        let local = tokio::task::spawn_blocking(move || load_local_models(&local_config))
            .await
            .map_err(|e| format!("loading local models: {e}"))??;
        let LocalLoaded {
            embedder: local_embedder,
            chunker: local_chunker,
            reranker: local_reranker,
            chat: local_chat,
        } = local;

        // Embedder.
        let embedder: Arc<dyn Embedder> = match (config.embedder.kind.as_str(), local_embedder) {
            ("local" | "auto" | "bge" | "minilm", Some(e)) => layered_embedder(e, &config, false),
            ("openai", _) => {
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
                    let dir = config.store.path.clone().unwrap_or_else(|| {
                        std::path::Path::new("rag-data").join(store_dir_name(embedder.as_ref()))
                    });
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
        let reader_server = reader.as_ref().map(|(server, _)| server.clone());
        let (llm, llm_kind): (Option<Arc<dyn LlmClient>>, &str) =
            match (config.llm.kind.as_str(), local_chat) {
                (_, _) if reader.is_some() => (reader.map(|(_, llm)| llm), "reader"),
                ("local", Some(chat)) => (Some(Arc::new(chat)), "local"),
                ("openai", _) => {
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
                ("groq", _) => {
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
        let reranker: Option<Arc<dyn Reranker>> =
            local_reranker.map(|r| Arc::new(r) as Arc<dyn Reranker>);

        let mut builder = Rag::builder()
            .embedder_arc(embedder)
            .store_arc(store)
            .sessions_arc(sessions);
        if let Some(chunker) = local_chunker {
            builder = builder.chunker_arc(chunker);
        }
        if let Some(llm) = llm {
            builder = builder.llm_arc(layered_llm(llm, &config));
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
            reader: None,
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
