//! The answer cache of [`Rag::ask`](crate::Rag::ask), and the per-namespace
//! data versions that invalidate it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::layers::CacheStats;

use super::answer::Answer;
use super::request::Ask;
use crate::types::Namespace;

/// Settings of the answer cache
/// ([`RagBuilder::answer_cache`](crate::RagBuilder::answer_cache)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AnswerCacheConfig {
    /// Most answers kept; 1,000 by default.
    pub max_entries: u64,
    /// How long an answer stays valid; one hour by default. This also
    /// bounds staleness after writes that bypass the pipeline (another
    /// process writing the same store), which no data version can see.
    pub ttl: Option<Duration>,
}

impl Default for AnswerCacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 1000,
            ttl: Some(Duration::from_secs(3600)),
        }
    }
}

impl AnswerCacheConfig {
    /// A cache of at most `n` answers.
    pub fn new(n: u64) -> Self {
        Self {
            max_entries: n.max(1),
            ..Self::default()
        }
    }
    /// Sets the time to live (`None`: until evicted).
    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }
}

/// A counter per namespace that every ingest and delete through the
/// pipeline bumps after writing.
#[derive(Debug, Default)]
pub(crate) struct DataVersions {
    map: Mutex<HashMap<Namespace, u64>>,
}

impl DataVersions {
    pub(crate) fn get(&self, ns: &Namespace) -> u64 {
        self.map.lock().get(ns).copied().unwrap_or(0)
    }
    pub(crate) fn bump(&self, ns: &Namespace) {
        *self.map.lock().entry(ns.clone()).or_insert(0) += 1;
    }
}

type Key = [u8; 32];

/// Answers by (normalised question, namespace, filter, settings, data
/// version).
pub(crate) struct AnswerCache {
    cache: quick_cache::sync::Cache<Key, (Answer, Instant)>,
    config: AnswerCacheConfig,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for AnswerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Lower case, single spaces, no trailing punctuation: "How are keys
/// rotated?" and "how are  keys rotated" share an answer.
pub(crate) fn normalise_question(q: &str) -> String {
    let joined = q.split_whitespace().collect::<Vec<_>>().join(" ");
    joined
        .trim_end_matches(|c: char| c.is_ascii_punctuation() || c.is_whitespace())
        .to_lowercase()
}

impl AnswerCache {
    pub(crate) fn new(config: AnswerCacheConfig) -> Self {
        Self {
            cache: quick_cache::sync::Cache::new(config.max_entries.max(1) as usize),
            config,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The key of a question, or `None` when it must not be cached: a
    /// question in a session depends on the conversation and appends to it.
    pub(crate) fn key(ask: &Ask, data_version: u64) -> Option<Key> {
        if ask.session.is_some() {
            return None;
        }
        let mut settings = ask.clone();
        settings.question = String::new();
        let settings = serde_json::to_vec(&settings).ok()?;
        let mut h = Sha256::new();
        h.update(normalise_question(&ask.question).as_bytes());
        h.update([0u8]);
        h.update(&settings);
        h.update([0u8]);
        h.update(data_version.to_le_bytes());
        Some(h.finalize().into())
    }

    pub(crate) fn get(&self, key: &Key) -> Option<Answer> {
        let hit = self
            .cache
            .get(key)
            .and_then(|(answer, at)| match self.config.ttl {
                Some(ttl) if at.elapsed() >= ttl => {
                    self.cache.remove(key);
                    None
                }
                _ => Some(answer),
            });
        let (counter, name) = match hit {
            Some(_) => (&self.hits, "rag_cache_hits_total"),
            None => (&self.misses, "rag_cache_misses_total"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(name, "cache" => "answers").increment(1);
        hit
    }

    pub(crate) fn put(&self, key: Key, answer: Answer) {
        self.cache.insert(key, (answer, Instant::now()));
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.cache.len() as u64,
            weight: self.cache.weight(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Filter;

    #[test]
    fn key_depends_on_everything_but_case_and_spacing() {
        let base = Ask::new("How are keys rotated?");
        let k = AnswerCache::key(&base, 0).unwrap();
        assert_eq!(
            Some(k),
            AnswerCache::key(&Ask::new("  how ARE keys   rotated "), 0)
        );
        assert_ne!(Some(k), AnswerCache::key(&base, 1), "data version");
        assert_ne!(
            Some(k),
            AnswerCache::key(&base.clone().filter(Filter::eq("team", "ops")), 0)
        );
        assert_ne!(Some(k), AnswerCache::key(&base.clone().top_k(3), 0));
        assert_ne!(
            Some(k),
            AnswerCache::key(&base.clone().namespace(Namespace::new("other").unwrap()), 0)
        );
        assert_ne!(
            Some(k),
            AnswerCache::key(&Ask::new("How are keys revoked?"), 0)
        );
        assert!(AnswerCache::key(&base.session(crate::SessionId::new_v4()), 0).is_none());
    }
}
