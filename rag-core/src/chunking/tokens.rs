//! Fast, exact token counts for chunking.
//!
//! tiktoken encodes in two steps: a regular expression cuts the text into
//! pieces (words with their leading space, runs of digits, punctuation,
//! whitespace), then byte-pair encoding turns each piece into tokens, pieces
//! never merging. Two consequences make chunking cheap:
//!
//! - The pieces are found here with `regex-automata` (tiktoken's patterns,
//!   with their one look-ahead emulated as `bpe-openai` does), several times
//!   faster than the backtracking engine tiktoken-rs uses, and each distinct
//!   piece is byte-pair encoded once per thread (a small cache), so counting
//!   costs little more than the regular expression.
//! - [`SpanCounter`] cuts a whole document once and keeps running totals.
//!   A span that does not end in whitespace tokenizes, after its first piece
//!   or two, exactly as the document does until its last piece (the
//!   patterns have no look-behind, and their only look-ahead is at the end of
//!   a whitespace run), so its count is the head's pieces + the running
//!   total between two piece boundaries + the tail's pieces. The splitter
//!   measures thousands of spans per document; each costs a few pieces
//!   instead of a re-tokenization. Spans ending in whitespace are counted
//!   directly.
//!
//! Every count equals `CoreBPE::encode_ordinary(text).len()`; the tests
//! check it on random spans of mixed text.

use std::cell::RefCell;
use std::sync::LazyLock;

use regex_automata::meta::{Cache, Regex};
use regex_automata::{Anchored, Input};

use super::TokenEncoding;

/// tiktoken's cl100k_base pattern, alternative for alternative (possessive
/// quantifiers dropped: here they never change a match), as three patterns
/// tried in order. `\s+(?!\S)` becomes `\s+\s` with its last character given
/// back; the `\s+$` case of it is the first pattern's last alternative.
const CL100K: [(&str, bool); 3] = [
    (
        r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+$|\s*[\r\n]",
        false,
    ),
    (r"\s+\s", true),
    (r"\s", false),
];

/// tiktoken's o200k_base pattern, likewise.
const O200K: [(&str, bool); 3] = [
    (
        concat!(
            r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
            r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
            r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+$",
        ),
        false,
    ),
    (r"\s+\s", true),
    (r"\s+", false),
];

struct Pretokenizer {
    regex: Regex,
    /// Per pattern: whether its last character is a look-ahead to give back.
    lookahead: [bool; 3],
}

impl Pretokenizer {
    fn new(patterns: [(&str, bool); 3]) -> Self {
        let regex =
            Regex::new_many(&patterns.map(|(p, _)| p)).expect("tiktoken's patterns compile");
        Self {
            regex,
            lookahead: patterns.map(|(_, l)| l),
        }
    }

    /// The end of the piece that starts at byte 0 of `text` (non-empty).
    fn piece_end(&self, cache: &mut Cache, text: &str) -> usize {
        let input = Input::new(text).anchored(Anchored::Yes);
        match self.regex.search_with(cache, &input) {
            Some(m) => {
                let mut end = m.end();
                if self.lookahead[m.pattern().as_usize()] {
                    let last = text[..end].chars().next_back().map_or(1, char::len_utf8);
                    end -= last;
                }
                end
            }
            // Unreachable: `\s` or a non-space class matches any character.
            // One character as its own piece keeps the count going.
            None => text.chars().next().map_or(text.len(), char::len_utf8),
        }
    }
}

static CL100K_PRE: LazyLock<Pretokenizer> = LazyLock::new(|| Pretokenizer::new(CL100K));
static O200K_PRE: LazyLock<Pretokenizer> = LazyLock::new(|| Pretokenizer::new(O200K));

/// Distinct pieces cached per thread and encoding before the cache starts
/// over (a few MiB at most).
const PIECE_CACHE_LIMIT: usize = 1 << 16;

thread_local! {
    /// Each thread's search scratch for the two patterns. (The regex's own
    /// pool serves threads other than the first through a mutex: chunking
    /// on several threads would queue on it once per piece.)
    static SCRATCH: RefCell<[Option<Cache>; 2]> = const { RefCell::new([None, None]) };
    static PIECES: RefCell<[foldhash::HashMap<Box<str>, u32>; 2]> = RefCell::new(Default::default());
}

/// Tokens and pieces of one encoding.
#[derive(Clone, Copy)]
pub(crate) struct Counter {
    encoding: TokenEncoding,
    pre: &'static Pretokenizer,
}

impl Counter {
    pub(crate) fn new(encoding: TokenEncoding) -> Self {
        let pre = match encoding {
            TokenEncoding::Cl100k => &*CL100K_PRE,
            TokenEncoding::O200k => &*O200K_PRE,
        };
        Self { encoding, pre }
    }

    fn slot(self) -> usize {
        match self.encoding {
            TokenEncoding::Cl100k => 0,
            TokenEncoding::O200k => 1,
        }
    }

    /// Runs `f` with this thread's search scratch for the encoding's pattern.
    fn with_scratch<R>(self, f: impl FnOnce(&mut Cache) -> R) -> R {
        SCRATCH.with(|cell| {
            let mut caches = cell.borrow_mut();
            let cache = caches[self.slot()].get_or_insert_with(|| self.pre.regex.create_cache());
            f(cache)
        })
    }

    /// The end of the piece starting at byte 0 of `text` (non-empty).
    fn piece_end(self, text: &str) -> usize {
        self.with_scratch(|cache| self.pre.piece_end(cache, text))
    }

    /// Tokens in one piece (byte-pair encoded once per thread).
    fn piece(self, piece: &str) -> u32 {
        let slot = self.slot();
        PIECES.with(|cache| {
            let mut cache = cache.borrow_mut();
            let map = &mut cache[slot];
            if let Some(n) = map.get(piece) {
                return *n;
            }
            let n =
                u32::try_from(self.encoding.bpe().encode_ordinary(piece).len()).unwrap_or(u32::MAX);
            if map.len() >= PIECE_CACHE_LIMIT {
                map.clear();
            }
            map.insert(piece.into(), n);
            n
        })
    }

    /// Calls `f(start, end, tokens)` for each piece of `text`, in order.
    fn for_each_piece(self, text: &str, mut f: impl FnMut(usize, usize, u32)) {
        // Pieces first (one scratch borrow), then their counts: `f` and
        // the byte-pair encoder never run inside the scratch borrow.
        let mut ends = Vec::with_capacity(text.len() / 4 + 1);
        self.with_scratch(|cache| {
            let mut at = 0;
            while at < text.len() {
                at += self.pre.piece_end(cache, &text[at..]);
                ends.push(at);
            }
        });
        let mut at = 0;
        for end in ends {
            f(at, end, self.piece(&text[at..end]));
            at = end;
        }
    }

    /// Tokens in `text`.
    pub(crate) fn count(self, text: &str) -> usize {
        let mut n = 0usize;
        self.for_each_piece(text, |_, _, t| n += t as usize);
        n
    }
}

/// Token counts of any span of one document, from one tokenization of it.
pub(crate) struct SpanCounter<'t> {
    counter: Counter,
    text: &'t str,
    /// Where each piece starts, then `text.len()`.
    bounds: Vec<usize>,
    /// Tokens before each bound.
    before: Vec<usize>,
}

impl<'t> SpanCounter<'t> {
    pub(crate) fn new(encoding: TokenEncoding, text: &'t str) -> Self {
        let counter = Counter::new(encoding);
        let mut bounds = Vec::with_capacity(text.len() / 4 + 1);
        let mut before = Vec::with_capacity(text.len() / 4 + 1);
        let mut total = 0usize;
        counter.for_each_piece(text, |start, _, t| {
            bounds.push(start);
            before.push(total);
            total += t as usize;
        });
        bounds.push(text.len());
        before.push(total);
        Self {
            counter,
            text,
            bounds,
            before,
        }
    }

    /// Tokens of the whole document.
    #[cfg(test)]
    pub(crate) fn total(&self) -> usize {
        self.before.last().copied().unwrap_or(0)
    }

    /// Tokens in `span`: a slice of the document, or any other text (then
    /// counted directly).
    pub(crate) fn count(&self, span: &str) -> usize {
        let base = self.text.as_ptr() as usize;
        let at = (span.as_ptr() as usize).wrapping_sub(base);
        match at.checked_add(span.len()) {
            Some(end) if end <= self.text.len() => self.count_range(at, end),
            _ => self.counter.count(span),
        }
    }

    /// Tokens in `text[start..end]`.
    pub(crate) fn count_range(&self, start: usize, end: usize) -> usize {
        let span = &self.text[start..end];
        // A span ending in whitespace may end its last piece differently
        // (`\s+$`, the look-ahead): count it directly. Chunks are trimmed,
        // so this is rare.
        if span.chars().next_back().is_none_or(char::is_whitespace) {
            return self.counter.count(span);
        }
        // Head: the span's own pieces until one ends on a piece boundary of
        // the document; from there on both cut alike.
        let mut n = 0usize;
        let mut at = start;
        let mut i = loop {
            if at >= end {
                return n;
            }
            if let Ok(i) = self.bounds.binary_search(&at) {
                break i;
            }
            let piece_end = at + self.counter.piece_end(&self.text[at..end]);
            n += self.counter.piece(&self.text[at..piece_end]) as usize;
            at = piece_end;
        };
        // Middle: whole document pieces that end before the span does (the
        // last piece, which `end` may cut, is re-cut below).
        let last = match self.bounds.binary_search(&end) {
            Ok(j) | Err(j) => j - 1,
        };
        if last > i {
            n += self.before[last] - self.before[i];
            i = last;
        }
        // Tail.
        n + self.counter.count(&self.text[self.bounds[i]..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(enc: TokenEncoding, text: &str) -> usize {
        enc.bpe().encode_ordinary(text).len()
    }

    const SAMPLES: &[&str] = &[
        "Alpha beta gamma. Delta épsilon ζeta.\n\nEta theta iota kappa. 東京は大きい。\n",
        "It's we'll THEY'RE don't I'M 12345 3.14159 x=y+z; fn main() { let a = [1, 2]; }\r\n",
        "   leading spaces\t\ttabs\n\n\n   \n  trailing   \n",
        "URLs: https://example.com/a/b?c=d&e=f — em-dash… «quotes» 'single' \"double\"",
        "Numbers 1000000 and 12,345.678 and 007; emoji 😀👍🏽 and combining é (e\u{301}).",
        "MixedCASE camelCase snake_case SCREAMING_CASE Ünïcödé ÀÉÎÕÜ straße",
        "a\n b\n  c\n   d\r\n\r\n  e  \t f\u{a0}g\u{2003}h",
    ];

    #[test]
    fn counts_equal_tiktoken_on_whole_texts() {
        for enc in [TokenEncoding::Cl100k, TokenEncoding::O200k] {
            let counter = Counter::new(enc);
            for s in SAMPLES {
                assert_eq!(counter.count(s), reference(enc, s), "{enc:?} {s:?}");
                assert_eq!(SpanCounter::new(enc, s).total(), reference(enc, s));
            }
            let all = SAMPLES.concat().repeat(3);
            assert_eq!(counter.count(&all), reference(enc, &all));
        }
    }

    #[test]
    fn every_span_counts_as_tiktoken_does() {
        let text = SAMPLES.concat();
        let cuts: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        for enc in [TokenEncoding::Cl100k, TokenEncoding::O200k] {
            let spans = SpanCounter::new(enc, &text);
            // Every span between char boundaries 7 apart and a few lengths
            // (whitespace ends included), then random ones.
            let mut rng = fastrand::Rng::with_seed(7);
            let mut pairs: Vec<(usize, usize)> = Vec::new();
            for (k, &a) in cuts.iter().enumerate().step_by(7) {
                for len in [1, 2, 5, 17, 60, 200] {
                    if let Some(&b) = cuts.get(k + len) {
                        pairs.push((a, b));
                    }
                }
            }
            for _ in 0..2000 {
                let a = cuts[rng.usize(..cuts.len())];
                let b = cuts[rng.usize(..cuts.len())];
                pairs.push((a.min(b), a.max(b)));
            }
            for (a, b) in pairs {
                let want = reference(enc, &text[a..b]);
                assert_eq!(spans.count_range(a, b), want, "{enc:?} {:?}", &text[a..b]);
                assert_eq!(spans.count(&text[a..b]), want);
            }
            // Text from elsewhere is counted directly.
            let elsewhere = "not from the document";
            assert_eq!(spans.count(elsewhere), reference(enc, elsewhere));
        }
    }
}
