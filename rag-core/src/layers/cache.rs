//! [`CachedEmbedder`]: embeddings cached by model id and text hash.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::traits::Embedder;

use super::Layer;
use serde::{Deserialize, Serialize};

/// Bounds of a [`CachedEmbedder`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EmbedCacheConfig {
    /// Most vectors kept; 10,000 by default. Ignored when `max_bytes` is set.
    pub max_entries: u64,
    /// Most bytes of vectors (and keys) kept, instead of an entry count.
    pub max_bytes: Option<u64>,
    /// How long a vector stays valid; `None` (the default) keeps it until
    /// evicted. Measured on tokio's clock.
    pub ttl: Option<Duration>,
}

impl Default for EmbedCacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_bytes: None,
            ttl: None,
        }
    }
}

impl EmbedCacheConfig {
    /// Bounded by entries.
    pub fn entries(n: u64) -> Self {
        Self {
            max_entries: n.max(1),
            ..Self::default()
        }
    }
    /// Bounded by bytes.
    pub fn bytes(n: u64) -> Self {
        Self {
            max_bytes: Some(n.max(1)),
            ..Self::default()
        }
    }
    /// Sets the time to live.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

type Key = [u8; 32];

#[derive(Clone)]
struct Entry {
    vector: Arc<[f32]>,
    inserted: Instant,
}

#[derive(Clone)]
struct Weigh {
    bytes: bool,
}

impl quick_cache::Weighter<Key, Entry> for Weigh {
    fn weight(&self, _: &Key, v: &Entry) -> u64 {
        if self.bytes {
            (32 + 16 + std::mem::size_of_val(&*v.vector)) as u64
        } else {
            1
        }
    }
}

/// Caches an embedder's vectors, keyed by the model id and a SHA-256 of the
/// text (the text itself is not kept).
///
/// A batch embeds only its misses, in one inner call, and duplicates within
/// a batch once. Queries are cached apart from passages, since models with a
/// query instruction embed them differently. The cache is bounded by entries
/// or bytes (S3-FIFO eviction, by `quick_cache`), with an optional TTL; hits
/// and misses are counted ([`stats`](Self::stats) and the
/// `rag_cache_hits_total` / `rag_cache_misses_total` counters with
/// `cache="embeddings"`). Clones share the cache.
///
/// Put it outermost on the embedder side: a hit then costs no rate-limit
/// permit and no provider call.
#[derive(Clone)]
pub struct CachedEmbedder<S> {
    inner: S,
    cache: Arc<quick_cache::sync::Cache<Key, Entry, Weigh>>,
    config: EmbedCacheConfig,
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
}

impl<S> std::fmt::Debug for CachedEmbedder<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedEmbedder")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<S> CachedEmbedder<S> {
    /// Wraps `inner` with an empty cache.
    pub fn new(inner: S, config: EmbedCacheConfig) -> Self {
        let (capacity, items, bytes) = match config.max_bytes {
            Some(b) => (b, (b / 1024).max(16) as usize, true),
            None => (config.max_entries, config.max_entries as usize, false),
        };
        Self {
            inner,
            cache: Arc::new(quick_cache::sync::Cache::with_weighter(
                items,
                capacity,
                Weigh { bytes },
            )),
            config,
            hits: Arc::default(),
            misses: Arc::default(),
        }
    }
    /// The wrapped value.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// Unwraps.
    pub fn into_inner(self) -> S {
        self.inner
    }
    /// Hits, misses and the current size.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.cache.len() as u64,
            weight: self.cache.weight(),
        }
    }
    /// Empties the cache (the counters stay).
    pub fn clear(&self) {
        self.cache.clear();
    }

    fn lookup(&self, key: &Key) -> Option<Arc<[f32]>> {
        let entry = self.cache.get(key)?;
        if let Some(ttl) = self.config.ttl
            && entry.inserted.elapsed() >= ttl
        {
            self.cache.remove(key);
            return None;
        }
        Some(entry.vector)
    }

    fn count(&self, hits: u64, misses: u64) {
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses.fetch_add(misses, Ordering::Relaxed);
        metrics::counter!("rag_cache_hits_total", "cache" => "embeddings").increment(hits);
        metrics::counter!("rag_cache_misses_total", "cache" => "embeddings").increment(misses);
    }
}

fn key(model: &str, kind: &[u8], text: &str) -> Key {
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    h.update([0u8]);
    h.update(kind);
    h.update([0u8]);
    h.update(text.as_bytes());
    h.finalize().into()
}

/// Builds [`CachedEmbedder`]s; each wrapped embedder gets its own cache.
#[derive(Clone, Debug, Default)]
pub struct CachedEmbedderLayer {
    config: EmbedCacheConfig,
}

impl CachedEmbedderLayer {
    /// A layer with these bounds.
    pub fn new(config: EmbedCacheConfig) -> Self {
        Self { config }
    }
}

impl<S> Layer<S> for CachedEmbedderLayer {
    type Service = CachedEmbedder<S>;
    fn layer(&self, inner: S) -> CachedEmbedder<S> {
        CachedEmbedder::new(inner, self.config.clone())
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<S: Embedder> Embedder for CachedEmbedder<S> {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        let model = self.inner.model_id();
        let keys: Vec<Key> = texts.iter().map(|t| key(model, b"p", t)).collect();
        let mut out: Vec<Option<Arc<[f32]>>> = keys.iter().map(|k| self.lookup(k)).collect();
        // The distinct missing texts, each once, and where they go.
        let mut missing: Vec<String> = Vec::new();
        let mut slot_of: HashMap<Key, usize> = HashMap::new();
        for (i, v) in out.iter().enumerate() {
            if v.is_none() && !slot_of.contains_key(&keys[i]) {
                slot_of.insert(keys[i], missing.len());
                missing.push(texts[i].clone());
            }
        }
        let hits = out.iter().filter(|v| v.is_some()).count() as u64;
        self.count(hits, texts.len() as u64 - hits);
        if !missing.is_empty() {
            let vectors = self.inner.embed(&missing).await?;
            if vectors.len() != missing.len() {
                return Err(Error::backend(
                    model,
                    false,
                    format!(
                        "embedder returned {} vectors for {} texts",
                        vectors.len(),
                        missing.len()
                    ),
                ));
            }
            let now = Instant::now();
            let fresh: Vec<Arc<[f32]>> = vectors.into_iter().map(Arc::from).collect();
            for (k, slot) in &slot_of {
                self.cache.insert(
                    *k,
                    Entry {
                        vector: fresh[*slot].clone(),
                        inserted: now,
                    },
                );
            }
            for (i, v) in out.iter_mut().enumerate() {
                if v.is_none() {
                    *v = Some(fresh[slot_of[&keys[i]]].clone());
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|v| v.map(|v| v.to_vec()).unwrap_or_default())
            .collect())
    }

    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        let k = key(self.inner.model_id(), b"q", query);
        if let Some(v) = self.lookup(&k) {
            self.count(1, 0);
            return Ok(v.to_vec());
        }
        self.count(0, 1);
        let v = self.inner.embed_query(query).await?;
        self.cache.insert(
            k,
            Entry {
                vector: Arc::from(v.as_slice()),
                inserted: Instant::now(),
            },
        );
        Ok(v)
    }
}
/// Hit and miss counts and size of a cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that were not.
    pub misses: u64,
    /// Entries held.
    pub entries: u64,
    /// Total weight held (entries, or bytes for a byte-bounded cache).
    pub weight: u64,
}
