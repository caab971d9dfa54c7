//! The contract: the traits every backend implements.
//!
//! All traits are object safe and used as `Arc<dyn Trait>`; `Arc<T>` and
//! `Box<T>` forward to `T`. Async methods use `async-trait`.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::chat::{ChatDelta, ChatRequest, ChatResponse, Message};
use crate::error::Result;
use crate::search::{Capabilities, ScoredChunk, SearchRequest};
use crate::session::{NewSession, Session, SessionId, StoredMessage};
use crate::types::{Chunk, ChunkId, Document, DocumentId, EmbeddedChunk, Namespace};

/// Turns texts into vectors.
#[async_trait]
pub trait Embedder: Send + Sync + Debug {
    /// The model's id; part of every cache key.
    fn model_id(&self) -> &str;

    /// Length of every vector returned.
    fn dimensions(&self) -> usize;

    /// Embeds passages (documents), in input order, one vector each.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;

    /// Embeds a search query. Models trained with a query instruction
    /// (bge, e5) override this; the default embeds it as a passage.
    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        let mut v = self.embed(&[query.to_owned()]).await?;
        v.pop().ok_or_else(|| {
            crate::Error::backend(self.model_id(), false, "embedder returned no vector")
        })
    }
}

/// One page of a document listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DocumentInfo {
    /// The document id.
    pub id: DocumentId,
    /// Its source.
    pub source: String,
    /// Its content hash.
    pub content_hash: String,
    /// How many chunks it has.
    pub chunks: usize,
}

impl DocumentInfo {
    /// A listing entry.
    pub fn new(id: DocumentId, source: String, content_hash: String, chunks: usize) -> Self {
        Self {
            id,
            source,
            content_hash,
            chunks,
        }
    }
}

/// Stores chunks with their vectors and finds them again.
///
/// # Contract
/// * `upsert` replaces, for every document id among `chunks`, all of that
///   document's stored chunks with the given ones, atomically: a concurrent
///   search sees the old version or the new one, never a mix. A document's
///   chunks must all be in one call.
/// * A search never returns a chunk that a returned `upsert` or
///   `delete_document` removed.
/// * Anything the store cannot do natively ([`Capabilities`]) is
///   `Error::Unsupported`; bad input is `Error::InvalidInput` and changes
///   nothing.
/// * Namespaces never see each other's data.
#[async_trait]
pub trait VectorStore: Send + Sync + Debug {
    /// What the store can do.
    fn capabilities(&self) -> Capabilities;

    /// Inserts or replaces documents' chunks (see the contract above).
    async fn upsert(&self, namespace: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()>;

    /// Searches; results best-first, at most `top_k`.
    async fn search(
        &self,
        namespace: &Namespace,
        request: SearchRequest,
    ) -> Result<Vec<ScoredChunk>>;

    /// Removes a document's chunks; returns how many were removed (0 when
    /// it was not there).
    async fn delete_document(&self, namespace: &Namespace, id: &DocumentId) -> Result<usize>;

    /// The stored content hash of each of `ids` that is stored.
    async fn document_hashes(
        &self,
        namespace: &Namespace,
        ids: &[DocumentId],
    ) -> Result<Vec<(DocumentId, String)>>;

    /// The chunks with these ids that exist, in the order asked.
    async fn get_chunks(&self, namespace: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>>;

    /// Documents ordered by id, after `after` (exclusive), at most `limit`.
    async fn list_documents(
        &self,
        namespace: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<DocumentInfo>>;

    /// Reads documents back whole, with their vectors: the documents after
    /// `after` (exclusive) in id order, at most `limit` of them, each with
    /// all its chunks in position order — the order and page boundaries of
    /// [`list_documents`](Self::list_documents), so a page can be upserted
    /// again as it is. A vector is returned as stored (a cosine store may
    /// have normalised it). Backups read namespaces through it
    /// ([`export_namespace`](crate::backup::export_namespace)); a store
    /// that cannot read its vectors back returns `Error::Unsupported`, the
    /// default.
    async fn scan(
        &self,
        namespace: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<EmbeddedChunk>> {
        let _ = (namespace, after, limit);
        Err(crate::Error::unsupported(
            self.capabilities().backend,
            "scan (reading back vectors)",
        ))
    }

    /// Chunks stored in the namespace.
    async fn count(&self, namespace: &Namespace) -> Result<usize>;

    /// Removes the namespace and all its data.
    async fn delete_namespace(&self, namespace: &Namespace) -> Result<()>;

    /// Whether the backend is reachable and ready.
    async fn health(&self) -> Result<()>;
}

/// Splits a document into chunks.
pub trait Chunker: Send + Sync + Debug {
    /// The chunks of `doc`, positions from 0, each with its byte range.
    fn chunk(&self, doc: &Document) -> Result<Vec<Chunk>>;
}

/// Re-orders candidates by relevance to a query.
#[async_trait]
pub trait Reranker: Send + Sync + Debug {
    /// The best `top_n` of `candidates`, best-first, each with
    /// `rerank_score` set and `score` equal to it.
    async fn rerank(
        &self,
        query: &str,
        candidates: Vec<ScoredChunk>,
        top_n: usize,
    ) -> Result<Vec<ScoredChunk>>;
}

/// A stream of chat deltas: text, then one `Finish`, or an error item.
pub type ChatStream = BoxStream<'static, Result<ChatDelta>>;

/// A chat model.
#[async_trait]
pub trait LlmClient: Send + Sync + Debug {
    /// The model's id.
    fn model_id(&self) -> &str;

    /// Tokens the model accepts, prompt and answer together.
    fn context_window(&self) -> usize;

    /// True when no language model writes the replies (the
    /// [`ExtractiveAnswerer`](crate::ExtractiveAnswerer)): the pipeline
    /// then rewrites a follow-up question without a model call. False by
    /// default; a wrapper answers for what it wraps.
    fn model_free(&self) -> bool {
        false
    }

    /// Generates a complete answer.
    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse>;

    /// Generates an answer as a stream. Dropping the stream cancels the
    /// generation.
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream>;
}

/// Stores conversations.
#[async_trait]
pub trait SessionStore: Send + Sync + Debug {
    /// Creates a session.
    async fn create(&self, new: NewSession) -> Result<Session>;

    /// A session's header; `NotFound` when missing or expired.
    async fn get(&self, id: SessionId) -> Result<Session>;

    /// Appends messages in order, refreshing the session's expiry.
    async fn append(&self, id: SessionId, messages: Vec<Message>) -> Result<()>;

    /// The last `window` messages, oldest first.
    async fn history(&self, id: SessionId, window: usize) -> Result<Vec<StoredMessage>>;

    /// Sessions of a namespace, most recently updated first.
    async fn list(&self, namespace: &Namespace, limit: usize) -> Result<Vec<Session>>;

    /// Deletes a session; `NotFound` when missing.
    async fn delete(&self, id: SessionId) -> Result<()>;

    /// Removes expired sessions; returns how many.
    async fn expire(&self) -> Result<usize>;
}

macro_rules! forward_impls {
    ($($ptr:ident),*) => {$(
        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<T: Embedder + ?Sized> Embedder for $ptr<T> {
            fn model_id(&self) -> &str { (**self).model_id() }
            fn dimensions(&self) -> usize { (**self).dimensions() }
            async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> { (**self).embed(texts).await }
            async fn embed_query(&self, query: &str) -> Result<Vec<f32>> { (**self).embed_query(query).await }
        }

        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<T: VectorStore + ?Sized> VectorStore for $ptr<T> {
            fn capabilities(&self) -> Capabilities { (**self).capabilities() }
            async fn upsert(&self, ns: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()> { (**self).upsert(ns, &chunks).await }
            async fn search(&self, ns: &Namespace, req: SearchRequest) -> Result<Vec<ScoredChunk>> { (**self).search(ns, req).await }
            async fn delete_document(&self, ns: &Namespace, id: &DocumentId) -> Result<usize> { (**self).delete_document(ns, id).await }
            async fn document_hashes(&self, ns: &Namespace, ids: &[DocumentId]) -> Result<Vec<(DocumentId, String)>> { (**self).document_hashes(ns, ids).await }
            async fn get_chunks(&self, ns: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>> { (**self).get_chunks(ns, ids).await }
            async fn list_documents(&self, ns: &Namespace, after: Option<&DocumentId>, limit: usize) -> Result<Vec<DocumentInfo>> { (**self).list_documents(ns, after, limit).await }
            async fn scan(&self, ns: &Namespace, after: Option<&DocumentId>, limit: usize) -> Result<Vec<EmbeddedChunk>> { (**self).scan(ns, after, limit).await }
            async fn count(&self, ns: &Namespace) -> Result<usize> { (**self).count(ns).await }
            async fn delete_namespace(&self, ns: &Namespace) -> Result<()> { (**self).delete_namespace(ns).await }
            async fn health(&self) -> Result<()> { (**self).health().await }
        }

        #[deny(clippy::missing_trait_methods)]
        impl<T: Chunker + ?Sized> Chunker for $ptr<T> {
            fn chunk(&self, doc: &Document) -> Result<Vec<Chunk>> { (**self).chunk(doc) }
        }

        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<T: Reranker + ?Sized> Reranker for $ptr<T> {
            async fn rerank(&self, q: &str, c: Vec<ScoredChunk>, n: usize) -> Result<Vec<ScoredChunk>> { (**self).rerank(q, c, n).await }
        }

        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<T: LlmClient + ?Sized> LlmClient for $ptr<T> {
            fn model_id(&self) -> &str { (**self).model_id() }
            fn context_window(&self) -> usize { (**self).context_window() }
            fn model_free(&self) -> bool { (**self).model_free() }
            async fn complete(&self, r: ChatRequest) -> Result<ChatResponse> { (**self).complete(r).await }
            async fn stream(&self, r: ChatRequest) -> Result<ChatStream> { (**self).stream(r).await }
        }

        #[async_trait]
        #[deny(clippy::missing_trait_methods)]
        impl<T: SessionStore + ?Sized> SessionStore for $ptr<T> {
            async fn create(&self, n: NewSession) -> Result<Session> { (**self).create(n).await }
            async fn get(&self, id: SessionId) -> Result<Session> { (**self).get(id).await }
            async fn append(&self, id: SessionId, m: Vec<Message>) -> Result<()> { (**self).append(id, m).await }
            async fn history(&self, id: SessionId, w: usize) -> Result<Vec<StoredMessage>> { (**self).history(id, w).await }
            async fn list(&self, ns: &Namespace, limit: usize) -> Result<Vec<Session>> { (**self).list(ns, limit).await }
            async fn delete(&self, id: SessionId) -> Result<()> { (**self).delete(id).await }
            async fn expire(&self) -> Result<usize> { (**self).expire().await }
        }
    )*};
}

forward_impls!(Arc, Box);

// Pin object safety: these fail to compile if a trait stops being dyn-compatible.
fn _assert_object_safe(
    _: &dyn Embedder,
    _: &dyn VectorStore,
    _: &dyn Chunker,
    _: &dyn Reranker,
    _: &dyn LlmClient,
    _: &dyn SessionStore,
) {
}
