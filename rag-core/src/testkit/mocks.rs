//! [`mockall`] mocks of every trait of the contract.
//!
//! Each mock implements `Debug` and its trait, so it can stand wherever the
//! pipeline expects an `Arc<dyn Trait>`. Every method of the trait is mocked,
//! the provided ones too (`Embedder::embed_query`): a call without a matching
//! expectation panics, so a test states everything it relies on.
//!
//! Methods returning `&str` (`model_id`) take their value from
//! `return_const(String)`. [`predicate`] and [`Sequence`] are re-exported so
//! tests need no `mockall` dependency of their own (and so use the same
//! version as the mocks).

use async_trait::async_trait;
use mockall::mock;

use crate::chat::{ChatRequest, ChatResponse, Message};
use crate::error::Result;
use crate::search::{Capabilities, ScoredChunk, SearchRequest};
use crate::session::{NewSession, Session, SessionId, StoredMessage};
use crate::traits::{
    ChatStream, Chunker, DocumentInfo, Embedder, LlmClient, Reranker, SessionStore, VectorStore,
};
use crate::types::{Chunk, ChunkId, Document, DocumentId, EmbeddedChunk, Namespace};

pub use mockall::Sequence;
pub use mockall::predicate;

mock! {
    /// A mock [`Embedder`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rag_core::testkit::mocks::MockEmbedder;
    /// use rag_core::{Embedder, Error};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let mut mock = MockEmbedder::new();
    /// mock.expect_model_id().return_const("mock-embedder".to_owned());
    /// mock.expect_dimensions().return_const(2usize);
    /// mock.expect_embed()
    ///     .times(1)
    ///     .returning(|texts| Ok(texts.iter().map(|_| vec![0.6, 0.8]).collect()));
    /// mock.expect_embed_query()
    ///     .returning(|_| Err(Error::RateLimited { retry_after: None }));
    ///
    /// let embedder: Arc<dyn Embedder> = Arc::new(mock);
    /// assert_eq!(embedder.model_id(), "mock-embedder");
    /// let vectors = embedder.embed(&["a".into(), "b".into()]).await.unwrap();
    /// assert_eq!(vectors, vec![vec![0.6, 0.8]; 2]);
    /// assert!(embedder.embed_query("q").await.unwrap_err().is_retryable());
    /// # });
    /// ```
    #[derive(Debug)]
    pub Embedder {}

    #[async_trait]
    impl Embedder for Embedder {
        fn model_id(&self) -> &str;
        fn dimensions(&self) -> usize;
        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;
        async fn embed_query(&self, query: &str) -> Result<Vec<f32>>;
    }
}

mock! {
    /// A mock [`VectorStore`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rag_core::testkit::mocks::{predicate, MockVectorStore};
    /// use rag_core::{Error, Namespace, SearchRequest, VectorStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let mut mock = MockVectorStore::new();
    /// mock.expect_search()
    ///     .with(predicate::eq(Namespace::default()), predicate::always())
    ///     .returning(|_, _| Err(Error::unsupported("mock", "dense search")));
    /// mock.expect_health().returning(|| Ok(()));
    ///
    /// let store: Arc<dyn VectorStore> = Arc::new(mock);
    /// store.health().await.unwrap();
    /// let err = store
    ///     .search(&Namespace::default(), SearchRequest::dense(vec![1.0], 3))
    ///     .await
    ///     .unwrap_err();
    /// assert!(matches!(err, Error::Unsupported { .. }));
    /// # });
    /// ```
    ///
    /// `list_documents` is mocked with an owned `after: Option<DocumentId>`
    /// (mockall cannot store a reference inside an `Option`); the trait
    /// method clones the id before calling the expectation.
    #[derive(Debug)]
    pub VectorStore {}

    impl VectorStoreCalls for VectorStore {
        fn capabilities(&self) -> Capabilities;
        fn upsert(&self, namespace: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()>;
        fn search(&self, namespace: &Namespace, request: SearchRequest) -> Result<Vec<ScoredChunk>>;
        fn delete_document(&self, namespace: &Namespace, id: &DocumentId) -> Result<usize>;
        fn document_hashes(
            &self,
            namespace: &Namespace,
            ids: &[DocumentId],
        ) -> Result<Vec<(DocumentId, String)>>;
        fn get_chunks(&self, namespace: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>>;
        fn list_documents(
            &self,
            namespace: &Namespace,
            after: Option<DocumentId>,
            limit: usize,
        ) -> Result<Vec<DocumentInfo>>;
        fn scan(
            &self,
            namespace: &Namespace,
            after: Option<DocumentId>,
            limit: usize,
        ) -> Result<Vec<EmbeddedChunk>>;
        fn count(&self, namespace: &Namespace) -> Result<usize>;
        fn delete_namespace(&self, namespace: &Namespace) -> Result<()>;
        fn health(&self) -> Result<()>;
    }
}

/// The calls of [`VectorStore`] in a shape mockall can mock (owned
/// `Option<DocumentId>`); [`MockVectorStore`]'s `VectorStore` impl forwards
/// to it.
trait VectorStoreCalls {
    fn capabilities(&self) -> Capabilities;
    fn upsert(&self, namespace: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()>;
    fn search(&self, namespace: &Namespace, request: SearchRequest) -> Result<Vec<ScoredChunk>>;
    fn delete_document(&self, namespace: &Namespace, id: &DocumentId) -> Result<usize>;
    fn document_hashes(
        &self,
        namespace: &Namespace,
        ids: &[DocumentId],
    ) -> Result<Vec<(DocumentId, String)>>;
    fn get_chunks(&self, namespace: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>>;
    fn list_documents(
        &self,
        namespace: &Namespace,
        after: Option<DocumentId>,
        limit: usize,
    ) -> Result<Vec<DocumentInfo>>;
    fn scan(
        &self,
        namespace: &Namespace,
        after: Option<DocumentId>,
        limit: usize,
    ) -> Result<Vec<EmbeddedChunk>>;
    fn count(&self, namespace: &Namespace) -> Result<usize>;
    fn delete_namespace(&self, namespace: &Namespace) -> Result<()>;
    fn health(&self) -> Result<()>;
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl VectorStore for MockVectorStore {
    fn capabilities(&self) -> Capabilities {
        VectorStoreCalls::capabilities(self)
    }
    async fn upsert(&self, namespace: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()> {
        VectorStoreCalls::upsert(self, namespace, chunks)
    }
    async fn search(
        &self,
        namespace: &Namespace,
        request: SearchRequest,
    ) -> Result<Vec<ScoredChunk>> {
        VectorStoreCalls::search(self, namespace, request)
    }
    async fn delete_document(&self, namespace: &Namespace, id: &DocumentId) -> Result<usize> {
        VectorStoreCalls::delete_document(self, namespace, id)
    }
    async fn document_hashes(
        &self,
        namespace: &Namespace,
        ids: &[DocumentId],
    ) -> Result<Vec<(DocumentId, String)>> {
        VectorStoreCalls::document_hashes(self, namespace, ids)
    }
    async fn get_chunks(&self, namespace: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>> {
        VectorStoreCalls::get_chunks(self, namespace, ids)
    }
    async fn list_documents(
        &self,
        namespace: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<DocumentInfo>> {
        VectorStoreCalls::list_documents(self, namespace, after.cloned(), limit)
    }
    async fn scan(
        &self,
        namespace: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<EmbeddedChunk>> {
        VectorStoreCalls::scan(self, namespace, after.cloned(), limit)
    }
    async fn count(&self, namespace: &Namespace) -> Result<usize> {
        VectorStoreCalls::count(self, namespace)
    }
    async fn delete_namespace(&self, namespace: &Namespace) -> Result<()> {
        VectorStoreCalls::delete_namespace(self, namespace)
    }
    async fn health(&self) -> Result<()> {
        VectorStoreCalls::health(self)
    }
}

mock! {
    /// A mock [`Chunker`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rag_core::testkit::mocks::MockChunker;
    /// use rag_core::{Chunk, Chunker, Document};
    ///
    /// let mut mock = MockChunker::new();
    /// // One chunk covering the whole document.
    /// mock.expect_chunk()
    ///     .returning(|doc| Ok(vec![Chunk::from_document(doc, 0, 0..doc.text().len())]));
    ///
    /// let chunker: Arc<dyn Chunker> = Arc::new(mock);
    /// let chunks = chunker.chunk(&Document::new("a.txt", "Whole text.")).unwrap();
    /// assert_eq!(chunks[0].text, "Whole text.");
    /// ```
    #[derive(Debug)]
    pub Chunker {}

    impl Chunker for Chunker {
        fn chunk(&self, doc: &Document) -> Result<Vec<Chunk>>;
    }
}

mock! {
    /// A mock [`Reranker`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rag_core::testkit::mocks::MockReranker;
    /// use rag_core::Reranker;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let mut mock = MockReranker::new();
    /// // Keeps the given order, cut to `top_n`.
    /// mock.expect_rerank().returning(|_, mut candidates, top_n| {
    ///     candidates.truncate(top_n);
    ///     Ok(candidates)
    /// });
    ///
    /// let reranker: Arc<dyn Reranker> = Arc::new(mock);
    /// assert!(reranker.rerank("query", Vec::new(), 5).await.unwrap().is_empty());
    /// # });
    /// ```
    #[derive(Debug)]
    pub Reranker {}

    #[async_trait]
    impl Reranker for Reranker {
        async fn rerank(
            &self,
            query: &str,
            candidates: Vec<ScoredChunk>,
            top_n: usize,
        ) -> Result<Vec<ScoredChunk>>;
    }
}

mock! {
    /// A mock [`LlmClient`]. For scripted answers and streams,
    /// [`super::ScriptedLlm`] is usually shorter.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use futures::StreamExt;
    /// use rag_core::testkit::mocks::MockLlmClient;
    /// use rag_core::{ChatDelta, ChatRequest, Error, FinishReason, LlmClient, Message, Usage};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let mut mock = MockLlmClient::new();
    /// mock.expect_model_id().return_const("mock-llm".to_owned());
    /// mock.expect_context_window().return_const(4096usize);
    /// mock.expect_complete()
    ///     .returning(|_| Err(Error::ContextLengthExceeded { tokens: 5000, limit: 4096 }));
    /// mock.expect_stream().returning(|_| {
    ///     let items = vec![
    ///         Ok(ChatDelta::Text("Hi".into())),
    ///         Ok(ChatDelta::Finish {
    ///             usage: Usage::default(),
    ///             finish_reason: FinishReason::Stop,
    ///             model: "mock-llm".into(),
    ///             extractive: false,
    ///         }),
    ///     ];
    ///     Ok(futures::stream::iter(items).boxed())
    /// });
    ///
    /// let llm: Arc<dyn LlmClient> = Arc::new(mock);
    /// let req = ChatRequest::new(vec![Message::user("hello")]);
    /// assert!(llm.complete(req.clone()).await.is_err());
    /// let deltas: Vec<_> = llm.stream(req).await.unwrap().collect().await;
    /// assert_eq!(deltas.len(), 2);
    /// # });
    /// ```
    #[derive(Debug)]
    pub LlmClient {}

    #[async_trait]
    impl LlmClient for LlmClient {
        fn model_id(&self) -> &str;
        fn context_window(&self) -> usize;
        async fn complete(&self, request: ChatRequest) -> Result<ChatResponse>;
        async fn stream(&self, request: ChatRequest) -> Result<ChatStream>;
    }
}

mock! {
    /// A mock [`SessionStore`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rag_core::testkit::mocks::MockSessionStore;
    /// use rag_core::{Error, SessionStore};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let mut mock = MockSessionStore::new();
    /// mock.expect_expire().times(1).returning(|| Ok(3));
    /// mock.expect_delete().returning(|id| Err(Error::not_found(format!("session {id}"))));
    ///
    /// let sessions: Arc<dyn SessionStore> = Arc::new(mock);
    /// assert_eq!(sessions.expire().await.unwrap(), 3);
    /// # });
    /// ```
    #[derive(Debug)]
    pub SessionStore {}

    #[async_trait]
    impl SessionStore for SessionStore {
        async fn create(&self, new: NewSession) -> Result<Session>;
        async fn get(&self, id: SessionId) -> Result<Session>;
        async fn append(&self, id: SessionId, messages: Vec<Message>) -> Result<()>;
        async fn history(&self, id: SessionId, window: usize) -> Result<Vec<StoredMessage>>;
        async fn list(&self, namespace: &Namespace, limit: usize) -> Result<Vec<Session>>;
        async fn delete(&self, id: SessionId) -> Result<()>;
        async fn expire(&self) -> Result<usize>;
    }
}
