//! Embedders that need no model.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::text::{Analyzer, AnalyzerConfig};
use crate::traits::Embedder;

/// A deterministic offline embedder by feature hashing.
///
/// Each text's word unigrams and bigrams (from the keyword [`Analyzer`]) and
/// character trigrams of each word are hashed (FNV-1a, stable across runs and
/// machines) into `dimensions` signed buckets with sublinear term frequency,
/// then L2-normalised. Texts that share words get similar vectors.
///
/// **It is not a semantic model**: "car" and "automobile" are unrelated to
/// it. Use it for tests, for offline demos, and as the fallback when no real
/// model is configured.
#[derive(Clone, Debug)]
pub struct HashEmbedder {
    dimensions: usize,
    model_id: String,
    analyzer: Analyzer,
}

impl HashEmbedder {
    /// A hash embedder producing `dimensions`-long vectors (at least 1).
    pub fn new(dimensions: usize) -> Self {
        let dimensions = dimensions.max(1);
        Self {
            dimensions,
            model_id: format!("hash-embedder-v1-{dimensions}"),
            analyzer: Analyzer::new(AnalyzerConfig::default()),
        }
    }

    /// Embeds one text synchronously.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dimensions];
        let mut terms: Vec<Arc<str>> = Vec::new();
        self.analyzer
            .for_each_shared_term(text, |t| terms.push(Arc::clone(t)));
        // The keys are already hashes: no need to hash them again.
        let mut counts: HashMap<u64, f32, BuildHasherDefault<Prehashed>> =
            HashMap::with_capacity_and_hasher(terms.len() * 8, BuildHasherDefault::default());
        let mut add = |h: u64, w: f32| *counts.entry(h).or_default() += w;
        let mut wrapped = String::new();
        let mut cuts: Vec<usize> = Vec::new();
        for (i, t) in terms.iter().enumerate() {
            add(fnv1a(&[b"u", t.as_bytes()]), 1.0);
            if let Some(next) = terms.get(i + 1) {
                add(fnv1a(&[b"b", t.as_bytes(), b" ", next.as_bytes()]), 0.5);
            }
            // Character trigrams of `<term>`: byte slices between every
            // third character boundary, hashed in place.
            wrapped.clear();
            wrapped.push('<');
            wrapped.push_str(t);
            wrapped.push('>');
            cuts.clear();
            cuts.extend(wrapped.char_indices().map(|(at, _)| at));
            cuts.push(wrapped.len());
            for w in cuts.windows(4) {
                add(fnv1a(&[b"c", &wrapped.as_bytes()[w[0]..w[3]]]), 0.25);
            }
        }
        if terms.is_empty() {
            // No word terms (emoji, punctuation, only stop words): hash the
            // characters instead, so that such a text does not get a zero
            // vector, to which cosine similarity is undefined.
            let chars: Vec<char> = text
                .chars()
                .filter(|c| !c.is_whitespace())
                .flat_map(char::to_lowercase)
                .collect();
            for c in &chars {
                add(fnv1a(&[b"r", c.to_string().as_bytes()]), 1.0);
            }
            for w in chars.windows(2) {
                let s: String = w.iter().collect();
                add(fnv1a(&[b"s", s.as_bytes()]), 0.5);
            }
        }
        for (h, tf) in counts {
            let bucket = (h % self.dimensions as u64) as usize;
            let sign = if (h >> 63) & 1 == 1 { -1.0 } else { 1.0 };
            v[bucket] += sign * (1.0 + ln_1p(tf));
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        } else if !text.trim().is_empty() {
            // Signed buckets cancelled out exactly (possible with very few
            // dimensions): a deterministic unit vector instead of zeros.
            let h = fnv1a(&[b"z", text.as_bytes()]);
            v[(h % self.dimensions as u64) as usize] = 1.0;
        }
        v
    }
}

impl Default for HashEmbedder {
    /// 384 dimensions, the size of common small sentence models.
    fn default() -> Self {
        Self::new(384)
    }
}

/// `tf.ln_1p()`, read from a table for the common frequencies (weights are
/// quarters, and most features occur a few times): the same values, without
/// a libm call per feature.
fn ln_1p(tf: f32) -> f32 {
    const QUARTERS: usize = 64;
    static TABLE: std::sync::LazyLock<[f32; QUARTERS]> =
        std::sync::LazyLock::new(|| std::array::from_fn(|k| (k as f32 / 4.0).ln_1p()));
    let k = tf * 4.0;
    if k >= 0.0 && k < QUARTERS as f32 && k.fract() == 0.0 {
        TABLE[k as usize]
    } else {
        tf.ln_1p()
    }
}

/// A hasher for keys that are already well-mixed 64-bit hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in.
        for b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    // Final avalanche so low bits (the bucket) depend on every input bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

#[async_trait]
impl Embedder for HashEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(Error::invalid_input(format!("text at index {i} is empty")));
        }
        let bytes: usize = texts.iter().map(String::len).sum();
        if bytes < crate::cpu::OFFLOAD_BYTES {
            return Ok(texts.iter().map(|t| self.embed_one(t)).collect());
        }
        // A large batch is hashed on rayon's pool (`crate::cpu`), so that concurrent
        // batches use several cores.
        let this = self.clone();
        let texts = texts.to_vec();
        Ok(crate::cpu::run(move || texts.iter().map(|t| this.embed_one(t)).collect()).await)
    }

    async fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        if query.trim().is_empty() {
            return Err(Error::invalid_input("query is empty"));
        }
        Ok(self.embed_one(query))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_1p_table_equals_libm() {
        for k in 0..200 {
            let tf = k as f32 * 0.25;
            assert_eq!(ln_1p(tf).to_bits(), tf.ln_1p().to_bits(), "{tf}");
        }
        for tf in [0.1f32, 3.3, 1e6] {
            assert_eq!(ln_1p(tf), tf.ln_1p());
        }
    }

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn similar_texts_are_closer() {
        let e = HashEmbedder::new(256);
        let a = e.embed_one("rotate the api keys every month");
        let b = e.embed_one("api keys are rotated monthly");
        let c = e.embed_one("the cafeteria serves lunch at noon");
        assert!(
            cos(&a, &b) > cos(&a, &c) + 0.1,
            "{} vs {}",
            cos(&a, &b),
            cos(&a, &c)
        );
        assert!((cos(&a, &a) - 1.0).abs() < 1e-5);
        assert_eq!(a, e.embed_one("rotate the api keys every month"));
    }

    #[test]
    fn texts_without_words_get_unit_vectors() {
        for dims in [1, 2, 64] {
            let e = HashEmbedder::new(dims);
            for text in ["🎉🚀✨", "!!! ???", "the and of", "a b", "x"] {
                let v = e.embed_one(text);
                let norm = cos(&v, &v).sqrt();
                assert!(
                    (norm - 1.0).abs() < 1e-5,
                    "{text:?} at {dims} dims: norm {norm}"
                );
            }
        }
        let e = HashEmbedder::new(64);
        assert_ne!(e.embed_one("🎉🚀"), e.embed_one("🚀🎉"));
        assert!(e.embed_one("").iter().all(|x| *x == 0.0));
    }
}
