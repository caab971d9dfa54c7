//! The retrieve-rerank-generate pipeline and ingestion: [`Rag`].
//!
//! ```text
//! ingest:  Document → (skip if content hash unchanged) → Chunker → Embedder (batched, bounded
//!          concurrency) → VectorStore::upsert (replaces the document's old chunks) → IngestReport
//! ask:     question + session history → condense a follow-up into a standalone query → dense and
//!          keyword search, fused (RRF or weighted) → Reranker → pack numbered sources to a token
//!          budget → LlmClient complete | stream → Answer { text, citations, usage, trace }
//!          → SessionStore::append
//! ```
//!
//! Every part is a trait object with an embedded default, so
//! `Rag::builder().build()` runs with no network and no API key: an in-memory
//! store, the [`HashEmbedder`], an [`AutoChunker`] and the
//! [`ExtractiveAnswerer`].
//!
//! ```
//! use rag_core::{Ask, Document, Rag};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let rag = Rag::builder().build()?;
//! rag.ingest(Document::new("keys.md", "Rotate API keys every month. Revoke old keys at once."))
//!     .await?;
//! let answer = rag.ask(Ask::new("How often are keys rotated?")).await?;
//! assert!(answer.extractive);
//! assert_eq!(answer.citations[0].source, "keys.md");
//! # Ok::<(), rag_core::Error>(())
//! # }).unwrap();
//! ```

mod answer;
mod answer_cache;
mod ask;
mod backup;
mod citations;
pub(crate) mod extractive;
pub(crate) mod grounded;
mod guard;
mod ingest;
mod loader;
mod packing;
mod prompt;
mod request;
mod retrieve;
#[cfg(all(test, feature = "testkit"))]
mod session_tests;
mod stream;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::chunking::{AutoChunker, ChunkSize, TokenEncoding};
use crate::embed::HashEmbedder;
use crate::error::{Error, Result};
use crate::layers::CacheStats;

use crate::memory::MemoryVectorStore;
use crate::session::{NewSession, Session};
use crate::traits::{Chunker, Embedder, LlmClient, Reranker, SessionStore, VectorStore};
use answer_cache::{AnswerCache, DataVersions};

pub use answer::{Answer, AskEvent, AskStream, Citation, Source, StageTimings, Trace};
pub use answer_cache::AnswerCacheConfig;
pub use citations::MarkerFilter;
pub use extractive::ExtractiveAnswerer;
pub use grounded::GroundedAnswerer;
pub use guard::{GuardClassifier, PromptGuard};
pub use ingest::{
    IngestFailure, IngestOptions, IngestOutcome, IngestProgress, IngestReport, ProgressFn,
};
pub use loader::{
    DEFAULT_EXTENSIONS, LoadFailure, LoadOptions, LoadReport, SkipReason, SkippedFile, load_path,
};
pub use packing::{MESSAGE_OVERHEAD_TOKENS, REPLY_PRIMING_TOKENS, count_prompt_tokens};
pub use prompt::PromptTemplate;
pub use request::{Ask, TokenBudget};

/// Tuning of a [`Rag`] pipeline. Per-question settings live in [`Ask`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RagConfig {
    /// Chunks per embedder call; 32 by default.
    pub embed_batch_size: usize,
    /// Embedder calls in flight at once; 4 by default.
    pub embed_concurrency: usize,
    /// Store upserts in flight at once; 4 by default.
    pub upsert_concurrency: usize,
    /// Documents taken from an ingest stream per round (their hashes are
    /// looked up in one call and their chunks embedded in shared batches);
    /// 64 by default.
    pub ingest_window: usize,
    /// The tokenizer for prompt budgets; `cl100k_base` by default.
    pub encoding: TokenEncoding,
    /// Session messages read for condensing and packing (trimmed further to
    /// the history token budget); 20 by default.
    pub history_window: usize,
}

impl Default for RagConfig {
    fn default() -> Self {
        Self {
            embed_batch_size: 32,
            embed_concurrency: 4,
            upsert_concurrency: 4,
            ingest_window: 64,
            encoding: TokenEncoding::Cl100k,
            history_window: 20,
        }
    }
}

impl RagConfig {
    /// Sets the embedding batch size.
    pub fn with_embed_batch_size(mut self, n: usize) -> Self {
        self.embed_batch_size = n;
        self
    }
    /// Sets the embedding concurrency.
    pub fn with_embed_concurrency(mut self, n: usize) -> Self {
        self.embed_concurrency = n;
        self
    }
    /// Sets the upsert concurrency.
    pub fn with_upsert_concurrency(mut self, n: usize) -> Self {
        self.upsert_concurrency = n;
        self
    }
    /// Sets the ingest window.
    pub fn with_ingest_window(mut self, n: usize) -> Self {
        self.ingest_window = n;
        self
    }
    /// Sets the prompt tokenizer.
    pub fn with_encoding(mut self, e: TokenEncoding) -> Self {
        self.encoding = e;
        self
    }
    /// Sets how many session messages are read.
    pub fn with_history_window(mut self, n: usize) -> Self {
        self.history_window = n;
        self
    }

    fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("embed_batch_size", self.embed_batch_size),
            ("embed_concurrency", self.embed_concurrency),
            ("upsert_concurrency", self.upsert_concurrency),
            ("ingest_window", self.ingest_window),
        ] {
            if v == 0 {
                return Err(Error::invalid_input(format!("{name} must be at least 1")));
            }
        }
        Ok(())
    }
}

pub(crate) struct Inner {
    pub(crate) embedder: Arc<dyn Embedder>,
    pub(crate) store: Arc<dyn VectorStore>,
    pub(crate) llm: Arc<dyn LlmClient>,
    pub(crate) chunker: Arc<dyn Chunker>,
    pub(crate) reranker: Option<Arc<dyn Reranker>>,
    pub(crate) sessions: Option<Arc<dyn SessionStore>>,
    pub(crate) config: RagConfig,
    pub(crate) default_prompt: PromptTemplate,
    /// Tokens of the default prompt's text, counted once.
    pub(crate) default_prompt_tokens: usize,
    /// Screens questions before retrieval.
    pub(crate) guard: Option<PromptGuard>,
    /// Answers of `ask`, keyed with the namespace's data version.
    pub(crate) answer_cache: Option<AnswerCache>,
    /// Bumped by every ingest and delete through this pipeline.
    pub(crate) versions: DataVersions,
}

/// A retrieval-augmented generation pipeline: ingestion and question
/// answering over any backends.
///
/// Cheap to clone (the parts are shared `Arc`s) and `Send + Sync`, so it can
/// live in an axum state. Build it with [`Rag::builder`].
#[derive(Clone)]
pub struct Rag {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Rag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("Rag")
            .field("embedder", &i.embedder.model_id())
            .field("store", &i.store.capabilities().backend)
            .field("llm", &i.llm.model_id())
            .field("chunker", &i.chunker)
            .field("reranker", &i.reranker.is_some())
            .field("sessions", &i.sessions.is_some())
            .field("guard", &i.guard.is_some())
            .field("answer_cache", &i.answer_cache.is_some())
            .field("config", &i.config)
            .finish()
    }
}

impl Rag {
    /// A builder; every part not set gets its embedded default.
    pub fn builder() -> RagBuilder {
        RagBuilder::default()
    }

    /// The embedder.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.inner.embedder
    }

    /// The vector store.
    pub fn store(&self) -> &Arc<dyn VectorStore> {
        &self.inner.store
    }

    /// The chat model (the [`ExtractiveAnswerer`] unless one was set).
    pub fn llm(&self) -> &Arc<dyn LlmClient> {
        &self.inner.llm
    }

    /// The chunker.
    pub fn chunker(&self) -> &Arc<dyn Chunker> {
        &self.inner.chunker
    }

    /// The reranker, if any.
    pub fn reranker(&self) -> Option<&Arc<dyn Reranker>> {
        self.inner.reranker.as_ref()
    }

    /// The session store, if any.
    pub fn sessions(&self) -> Option<&Arc<dyn SessionStore>> {
        self.inner.sessions.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &RagConfig {
        &self.inner.config
    }

    /// The prompt guard, if any.
    pub fn guard(&self) -> Option<&PromptGuard> {
        self.inner.guard.as_ref()
    }

    /// Hits and misses of the answer cache, when it is on.
    pub fn answer_cache_stats(&self) -> Option<CacheStats> {
        self.inner.answer_cache.as_ref().map(AnswerCache::stats)
    }

    /// The data version of `namespace`: a counter that every ingest and
    /// delete through this pipeline bumps after writing. Cached answers are
    /// keyed with it, so none is served after the data it came from changed.
    pub fn data_version(&self, namespace: &crate::Namespace) -> u64 {
        self.inner.versions.get(namespace)
    }

    /// Creates a conversation in the session store; `InvalidInput` when the
    /// pipeline has none.
    pub async fn create_session(&self, new: NewSession) -> Result<Session> {
        self.session_store()?.create(new).await
    }

    pub(crate) fn session_store(&self) -> Result<&Arc<dyn SessionStore>> {
        self.inner.sessions.as_ref().ok_or_else(|| {
            Error::invalid_input("this pipeline has no session store; set one with .sessions(..)")
        })
    }
}

/// Builds a [`Rag`]. Each part accepts a value (`.store(MemoryVectorStore::default())`)
/// or, through the `_arc` variant, an existing `Arc<dyn _>` shared with other code.
///
/// | part      | default                                             |
/// |-----------|-----------------------------------------------------|
/// | store     | [`MemoryVectorStore`]                               |
/// | embedder  | [`HashEmbedder::default`] (384 dimensions)          |
/// | llm       | [`ExtractiveAnswerer`] (no model; extractive)       |
/// | chunker   | [`AutoChunker`], 256 tokens of cl100k, 32 of overlap |
/// | reranker  | none                                                |
/// | sessions  | none (an [`Ask`] with a session is `InvalidInput`)  |
/// | guard     | none                                                |
/// | answer cache | off                                              |
#[derive(Default)]
#[must_use]
pub struct RagBuilder {
    embedder: Option<Arc<dyn Embedder>>,
    store: Option<Arc<dyn VectorStore>>,
    llm: Option<Arc<dyn LlmClient>>,
    chunker: Option<Arc<dyn Chunker>>,
    reranker: Option<Arc<dyn Reranker>>,
    sessions: Option<Arc<dyn SessionStore>>,
    config: RagConfig,
    prompt: Option<PromptTemplate>,
    guard: Option<PromptGuard>,
    answer_cache: Option<AnswerCacheConfig>,
}

impl fmt::Debug for RagBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RagBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RagBuilder {
    /// Sets the embedder.
    pub fn embedder(self, embedder: impl Embedder + 'static) -> Self {
        self.embedder_arc(Arc::new(embedder))
    }
    /// Sets a shared embedder.
    pub fn embedder_arc(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }
    /// Sets the vector store.
    pub fn store(self, store: impl VectorStore + 'static) -> Self {
        self.store_arc(Arc::new(store))
    }
    /// Sets a shared vector store.
    pub fn store_arc(mut self, store: Arc<dyn VectorStore>) -> Self {
        self.store = Some(store);
        self
    }
    /// Sets the chat model.
    pub fn llm(self, llm: impl LlmClient + 'static) -> Self {
        self.llm_arc(Arc::new(llm))
    }
    /// Sets a shared chat model.
    pub fn llm_arc(mut self, llm: Arc<dyn LlmClient>) -> Self {
        self.llm = Some(llm);
        self
    }
    /// Sets the chunker.
    pub fn chunker(self, chunker: impl Chunker + 'static) -> Self {
        self.chunker_arc(Arc::new(chunker))
    }
    /// Sets a shared chunker.
    pub fn chunker_arc(mut self, chunker: Arc<dyn Chunker>) -> Self {
        self.chunker = Some(chunker);
        self
    }
    /// Sets the reranker.
    pub fn reranker(self, reranker: impl Reranker + 'static) -> Self {
        self.reranker_arc(Arc::new(reranker))
    }
    /// Sets a shared reranker.
    pub fn reranker_arc(mut self, reranker: Arc<dyn Reranker>) -> Self {
        self.reranker = Some(reranker);
        self
    }
    /// Sets the session store.
    pub fn sessions(self, sessions: impl SessionStore + 'static) -> Self {
        self.sessions_arc(Arc::new(sessions))
    }
    /// Sets a shared session store.
    pub fn sessions_arc(mut self, sessions: Arc<dyn SessionStore>) -> Self {
        self.sessions = Some(sessions);
        self
    }
    /// Sets the configuration.
    pub fn config(mut self, config: RagConfig) -> Self {
        self.config = config;
        self
    }
    /// Sets the prompt used when an [`Ask`] brings none.
    pub fn prompt(mut self, prompt: PromptTemplate) -> Self {
        self.prompt = Some(prompt);
        self
    }
    /// Screens every question with `guard` before anything else (retrieval,
    /// the answer cache, the session): a rejected question is
    /// `InvalidInput` naming the rule.
    pub fn guard(mut self, guard: PromptGuard) -> Self {
        self.guard = Some(guard);
        self
    }
    /// Caches answers of [`Rag::ask`] (not streams, not questions in a
    /// session), keyed by the normalised question, the namespace, the filter,
    /// every other setting of the [`Ask`], and the namespace's
    /// [data version](Rag::data_version), which every ingest and delete
    /// through this pipeline bumps. Writes that bypass the pipeline are not
    /// seen; the TTL bounds how stale those can make an answer.
    pub fn answer_cache(mut self, config: AnswerCacheConfig) -> Self {
        self.answer_cache = Some(config);
        self
    }

    /// The pipeline. Fails with `InvalidInput` on a bad configuration or
    /// when the embedder's dimension differs from the store's fixed one.
    pub fn build(self) -> Result<Rag> {
        self.config.validate()?;
        let embedder = self
            .embedder
            .unwrap_or_else(|| Arc::new(HashEmbedder::default()));
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryVectorStore::default()));
        if let Some(d) = store.capabilities().dimensions
            && d != embedder.dimensions()
        {
            return Err(Error::invalid_input(format!(
                "embedder {} makes {}-dimensional vectors, the store expects {d}",
                embedder.model_id(),
                embedder.dimensions()
            )));
        }
        let chunker = match self.chunker {
            Some(c) => c,
            None => Arc::new(AutoChunker::new(ChunkSize::Tokens {
                encoding: self.config.encoding,
                max: 256,
                overlap: 32,
            })?),
        };
        let prompt = self.prompt.unwrap_or_default();
        prompt.validate()?;
        Ok(Rag {
            inner: Arc::new(Inner {
                embedder,
                store,
                llm: self
                    .llm
                    .unwrap_or_else(|| Arc::new(ExtractiveAnswerer::default())),
                chunker,
                reranker: self.reranker,
                sessions: self.sessions,
                default_prompt_tokens: packing::template_tokens(&prompt, self.config.encoding),
                config: self.config,
                default_prompt: prompt,
                guard: self.guard,
                answer_cache: self.answer_cache.map(AnswerCache::new),
                versions: DataVersions::default(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}

    #[test]
    fn rag_is_shareable_and_builds_with_defaults() {
        assert_send_sync::<Rag>();
        let rag = Rag::builder().build().unwrap();
        assert_eq!(rag.embedder().dimensions(), 384);
        assert!(rag.llm().model_id().starts_with("extractive"));
        assert!(rag.sessions().is_none());
        assert!(
            Rag::builder()
                .config(RagConfig::default().with_embed_batch_size(0))
                .build()
                .is_err()
        );
        let fixed =
            MemoryVectorStore::new(crate::memory::MemoryConfig::default().with_dimensions(8));
        assert!(matches!(
            Rag::builder().store(fixed).build(),
            Err(Error::InvalidInput { .. })
        ));
    }
}
