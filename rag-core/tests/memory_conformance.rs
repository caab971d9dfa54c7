//! The in-memory reference store passes the whole conformance kit, directly,
//! through `Arc<dyn VectorStore>` and `Box<dyn VectorStore>`, and with every
//! distance and a fixed dimension.

use std::sync::Arc;

use rag_core::memory::MemoryConfig;
use rag_core::testkit::vector_store;
use rag_core::{Distance, MemoryVectorStore, VectorStore};

#[tokio::test]
async fn memory_store_default() {
    vector_store::run_all(&MemoryVectorStore::default()).await;
}

#[tokio::test]
async fn memory_store_as_arc_and_box() {
    let arc: Arc<dyn VectorStore> = Arc::new(MemoryVectorStore::default());
    vector_store::run_all(&arc).await;
    let boxed: Box<dyn VectorStore> = Box::new(MemoryVectorStore::default());
    vector_store::run_all(&boxed).await;
}

#[tokio::test]
async fn memory_store_dot_euclidean_fixed_dims() {
    for distance in [Distance::Dot, Distance::Euclidean] {
        let store = MemoryVectorStore::new(MemoryConfig::default().with_distance(distance));
        vector_store::run_all(&store).await;
    }
    let fixed = MemoryVectorStore::new(MemoryConfig::default().with_dimensions(384));
    vector_store::run_all(&fixed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_multi_thread_runtime() {
    vector_store::run_all(&MemoryVectorStore::default()).await;
}

/// Broken stores that the kit must catch: proof that the suite can fail.
mod broken {
    use super::*;
    use futures::FutureExt;
    use rag_core::{
        Capabilities, Chunk, ChunkId, DocumentId, DocumentInfo, EmbeddedChunk, Namespace, Result,
        ScoredChunk, SearchRequest, async_trait,
    };

    #[derive(Debug, Clone, Copy)]
    enum Bug {
        DeleteIsNoop,
        IgnoresFilter,
        LeaksNamespaces,
        AppendsInsteadOfReplacing,
        /// Fuses hybrid lists of `top_k` each instead of the pool.
        HybridIgnoresPool,
        /// Scans chunks without their metadata.
        ScanDropsMetadata,
    }

    #[derive(Debug)]
    struct Broken {
        inner: MemoryVectorStore,
        bug: Bug,
    }

    impl Broken {
        fn ns(&self, ns: &Namespace) -> Namespace {
            match self.bug {
                Bug::LeaksNamespaces => Namespace::default(),
                _ => ns.clone(),
            }
        }
    }

    #[async_trait]
    impl VectorStore for Broken {
        fn capabilities(&self) -> Capabilities {
            self.inner.capabilities()
        }
        async fn upsert(&self, ns: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()> {
            if let Bug::AppendsInsteadOfReplacing = self.bug {
                // Give each chunk a fresh document id so old chunks survive.
                let mut renamed = chunks.to_vec();
                for c in &mut renamed {
                    c.chunk.document_id =
                        DocumentId::new(format!("{}#{}", c.chunk.document_id, c.chunk.id))?;
                }
                return self.inner.upsert(&self.ns(ns), &renamed).await;
            }
            self.inner.upsert(&self.ns(ns), chunks).await
        }
        async fn search(&self, ns: &Namespace, mut req: SearchRequest) -> Result<Vec<ScoredChunk>> {
            if let Bug::IgnoresFilter = self.bug {
                req.filter = None;
            }
            if let Bug::HybridIgnoresPool = self.bug {
                req.pool = Some(req.top_k);
            }
            self.inner.search(&self.ns(ns), req).await
        }
        async fn delete_document(&self, ns: &Namespace, id: &DocumentId) -> Result<usize> {
            match self.bug {
                Bug::DeleteIsNoop => Ok(1),
                _ => self.inner.delete_document(&self.ns(ns), id).await,
            }
        }
        async fn document_hashes(
            &self,
            ns: &Namespace,
            ids: &[DocumentId],
        ) -> Result<Vec<(DocumentId, String)>> {
            self.inner.document_hashes(&self.ns(ns), ids).await
        }
        async fn get_chunks(&self, ns: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>> {
            self.inner.get_chunks(&self.ns(ns), ids).await
        }
        async fn list_documents(
            &self,
            ns: &Namespace,
            after: Option<&DocumentId>,
            limit: usize,
        ) -> Result<Vec<DocumentInfo>> {
            self.inner.list_documents(&self.ns(ns), after, limit).await
        }
        async fn scan(
            &self,
            ns: &Namespace,
            after: Option<&DocumentId>,
            limit: usize,
        ) -> Result<Vec<EmbeddedChunk>> {
            let mut page = self.inner.scan(&self.ns(ns), after, limit).await?;
            if let Bug::ScanDropsMetadata = self.bug {
                page.iter_mut().for_each(|c| c.chunk.metadata.clear());
            }
            Ok(page)
        }
        async fn count(&self, ns: &Namespace) -> Result<usize> {
            self.inner.count(&self.ns(ns)).await
        }
        async fn delete_namespace(&self, ns: &Namespace) -> Result<()> {
            self.inner.delete_namespace(&self.ns(ns)).await
        }
        async fn health(&self) -> Result<()> {
            self.inner.health().await
        }
    }

    #[tokio::test]
    async fn the_kit_catches_broken_stores() {
        for bug in [
            Bug::DeleteIsNoop,
            Bug::IgnoresFilter,
            Bug::LeaksNamespaces,
            Bug::AppendsInsteadOfReplacing,
            Bug::HybridIgnoresPool,
            Bug::ScanDropsMetadata,
        ] {
            let store = Broken {
                inner: MemoryVectorStore::default(),
                bug,
            };
            let outcome = std::panic::AssertUnwindSafe(vector_store::run_all(&store))
                .catch_unwind()
                .await;
            assert!(
                outcome.is_err(),
                "the conformance kit passed a store with bug {bug:?}"
            );
        }
    }
}
