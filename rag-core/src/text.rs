//! Text analysis for keyword search: the tokenizer that BM25 here and sparse
//! vectors in adapters share, so that every backend tokenizes alike.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use rust_stemmers::{Algorithm, Stemmer};
use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;

/// English stop words (the list used by Lucene's English analyzer, extended
/// with a few pronouns).
pub const ENGLISH_STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with", "i", "me", "my", "we", "our", "you", "your", "he",
    "she", "his", "her", "its", "what", "which", "who", "whom", "do", "does", "did", "have", "has",
    "had", "been", "being", "were", "am", "from", "so", "than", "too", "very", "can", "just",
    "should", "would", "could", "about", "how", "when", "where", "why",
];

/// How text becomes terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AnalyzerConfig {
    /// Lowercase terms (Unicode-aware).
    pub lowercase: bool,
    /// Drop English stop words.
    pub stop_words: bool,
    /// Stem with the English Snowball stemmer.
    pub stem: bool,
    /// Drop terms longer than this many bytes.
    pub max_term_bytes: usize,
}

impl Default for AnalyzerConfig {
    fn default() -> Self {
        Self {
            lowercase: true,
            stop_words: true,
            stem: true,
            max_term_bytes: 64,
        }
    }
}

impl AnalyzerConfig {
    /// Sets lowercasing.
    pub fn with_lowercase(mut self, on: bool) -> Self {
        self.lowercase = on;
        self
    }
    /// Sets stop-word removal.
    pub fn with_stop_words(mut self, on: bool) -> Self {
        self.stop_words = on;
        self
    }
    /// Sets stemming.
    pub fn with_stem(mut self, on: bool) -> Self {
        self.stem = on;
        self
    }
    /// Sets the longest term kept, in bytes.
    pub fn with_max_term_bytes(mut self, n: usize) -> Self {
        self.max_term_bytes = n;
        self
    }
}

/// Splits text on Unicode word boundaries (UAX #29), lowercases, drops stop
/// words and stems, per its [`AnalyzerConfig`].
///
/// ```
/// use rag_core::text::Analyzer;
/// let a = Analyzer::default();
/// assert_eq!(a.terms("The Keys are rotated monthly"), ["key", "rotat", "month"]);
/// ```
#[derive(Clone)]
pub struct Analyzer {
    config: AnalyzerConfig,
    stemmer: Option<Arc<Stemmer>>,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("config", &self.config)
            .finish()
    }
}

impl Default for Analyzer {
    fn default() -> Self {
        Self::new(AnalyzerConfig::default())
    }
}

fn stop_words() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| ENGLISH_STOP_WORDS.iter().copied().collect())
}

impl Analyzer {
    /// An analyzer with this configuration.
    pub fn new(config: AnalyzerConfig) -> Self {
        let stemmer = config
            .stem
            .then(|| Arc::new(Stemmer::create(Algorithm::English)));
        Self { config, stemmer }
    }

    /// The configuration.
    pub fn config(&self) -> &AnalyzerConfig {
        &self.config
    }

    /// The terms of `text`, in order, with repeats.
    pub fn terms(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.for_each_term(text, |t| out.push(t.to_owned()));
        out
    }

    /// Calls `f` with each term of `text`, in order, with repeats.
    pub fn for_each_term(&self, text: &str, mut f: impl FnMut(&str)) {
        self.for_each_shared_term(text, |t| f(t));
    }

    /// As [`for_each_term`](Self::for_each_term), each term shared: a
    /// word's analysis (lowercase, stop word, length, stem) is cached per
    /// thread and configuration, so a repeated word costs one lookup.
    pub(crate) fn for_each_shared_term(&self, text: &str, mut f: impl FnMut(&Arc<str>)) {
        TERMS.with(|cell| {
            let slot = {
                let mut caches = cell.borrow_mut();
                match caches.iter().position(|(c, _)| *c == self.config) {
                    Some(i) => i,
                    None => {
                        caches.push((self.config.clone(), foldhash::HashMap::default()));
                        caches.len() - 1
                    }
                }
            };
            let mut lower = String::new();
            for word in text.unicode_words() {
                // `f` runs with the cache released: it may analyze text.
                let hit = cell.borrow()[slot].1.get(word).cloned();
                let term = match hit {
                    Some(term) => term,
                    None => {
                        let term = self.analyze_word(word, &mut lower);
                        let mut caches = cell.borrow_mut();
                        let map = &mut caches[slot].1;
                        if map.len() >= TERM_CACHE_LIMIT {
                            map.clear();
                        }
                        map.insert(word.into(), term.clone());
                        term
                    }
                };
                if let Some(t) = &term {
                    f(t);
                }
            }
        });
    }

    /// One word's term, or `None` when it is dropped.
    fn analyze_word(&self, word: &str, lower: &mut String) -> Option<Arc<str>> {
        let w: &str = if self.config.lowercase {
            lower.clear();
            lower.extend(word.chars().flat_map(char::to_lowercase));
            lower
        } else {
            word
        };
        if self.config.stop_words && stop_words().contains(w) {
            return None;
        }
        if w.len() > self.config.max_term_bytes {
            return None;
        }
        Some(match &self.stemmer {
            Some(s) => s.stem(w).into(),
            None => w.into(),
        })
    }
}

/// Distinct words whose terms are kept per thread and configuration before
/// the cache starts over (a few MiB at most).
const TERM_CACHE_LIMIT: usize = 1 << 16;

/// Word → term (`None`: dropped), per analyzer configuration.
type TermCache = foldhash::HashMap<Box<str>, Option<Arc<str>>>;

thread_local! {
    /// Analysis (Unicode lowercasing, Snowball) is most of the cost of
    /// indexing a chunk, and prose repeats its words: a corpus has a few
    /// tens of thousands of distinct ones. Usually one configuration.
    static TERMS: RefCell<Vec<(AnalyzerConfig, TermCache)>> = const { RefCell::new(Vec::new()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_and_options() {
        let a = Analyzer::new(AnalyzerConfig {
            stem: false,
            stop_words: false,
            ..AnalyzerConfig::default()
        });
        assert_eq!(
            a.terms("Straße, ÉCOLE! 東京 can't"),
            ["straße", "école", "東", "京", "can't"]
        );
        let b = Analyzer::default();
        assert_eq!(b.terms("the running of the dogs"), ["run", "dog"]);
        assert!(b.terms("").is_empty());
        assert!(b.terms(&"x".repeat(100)).is_empty());
    }
}
