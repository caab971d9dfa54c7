//! Citation markers: `[n]`, `[n, m]` in an answer.
//!
//! [`MarkerFilter`] removes markers that point at no source, on the fly over
//! a stream of text deltas (a marker split across deltas is held back until
//! it is complete), so an invalid marker never reaches a consumer.

use super::answer::{Citation, Source};

/// Longest marker considered, in bytes; a longer `[…` is plain text.
const MAX_MARKER_BYTES: usize = 32;
/// Longest number inside a marker, in digits.
const MAX_DIGITS: usize = 6;

enum Parse {
    /// A complete marker of `len` bytes with these numbers.
    Marker { len: usize, numbers: Vec<usize> },
    /// Not a marker: `[` is plain text.
    Text,
    /// Could still become a marker: more input needed.
    Incomplete,
}

/// `[` ws* digits (ws* `,` ws* digits)* ws* `]`, at the start of `s`.
fn parse_marker(s: &str) -> Parse {
    let b = s.as_bytes();
    debug_assert_eq!(b.first(), Some(&b'['));
    let mut i = 1;
    let mut numbers = Vec::new();
    loop {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i - start > MAX_DIGITS {
            return Parse::Text;
        }
        if i == b.len() {
            return if i >= MAX_MARKER_BYTES {
                Parse::Text
            } else {
                Parse::Incomplete
            };
        }
        if i == start {
            return Parse::Text;
        }
        // Digits only, at most MAX_DIGITS of them: parse cannot fail.
        numbers.push(s[start..i].parse::<usize>().unwrap_or(usize::MAX));
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        match b.get(i) {
            None if i >= MAX_MARKER_BYTES => return Parse::Text,
            None => return Parse::Incomplete,
            Some(b']') => {
                return Parse::Marker {
                    len: i + 1,
                    numbers,
                };
            }
            Some(b',') => i += 1,
            Some(_) => return Parse::Text,
        }
        if i >= MAX_MARKER_BYTES {
            return Parse::Text;
        }
    }
}

/// Removes citation markers that point at no source from a text, whole or
/// delta by delta.
///
/// ```
/// use rag_core::pipeline::MarkerFilter;
///
/// let mut f = MarkerFilter::new(2);
/// let mut out = f.push("Keys rotate [1][");
/// out += &f.push("7] monthly [2, 9].");
/// out += &f.finish();
/// assert_eq!(out, "Keys rotate [1] monthly [2].");
/// assert_eq!(f.removed(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct MarkerFilter {
    sources: usize,
    pending: String,
    removed: usize,
}

impl MarkerFilter {
    /// A filter for answers over `sources` numbered sources (valid markers
    /// are `1..=sources`).
    pub fn new(sources: usize) -> Self {
        Self {
            sources,
            pending: String::new(),
            removed: 0,
        }
    }

    /// Markers (numbers) removed so far.
    pub fn removed(&self) -> usize {
        self.removed
    }

    /// Feeds a delta; returns the text that is safe to pass on.
    pub fn push(&mut self, delta: &str) -> String {
        self.pending.push_str(delta);
        let pending = std::mem::take(&mut self.pending);
        let mut out = String::with_capacity(pending.len());
        let mut i = 0;
        while let Some(rel) = pending[i..].find('[') {
            let start = i + rel;
            out.push_str(&pending[i..start]);
            match parse_marker(&pending[start..]) {
                Parse::Marker { len, numbers } => {
                    self.emit(&mut out, &pending[start..start + len], &numbers);
                    i = start + len;
                }
                Parse::Text => {
                    out.push('[');
                    i = start + 1;
                }
                Parse::Incomplete => {
                    self.pending = pending[start..].to_owned();
                    return out;
                }
            }
        }
        out.push_str(&pending[i..]);
        out
    }

    /// Ends the text: a held-back incomplete marker is plain text.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Filters a whole text.
    pub fn filter(&mut self, text: &str) -> String {
        let mut out = self.push(text);
        out.push_str(&self.finish());
        out
    }

    fn emit(&mut self, out: &mut String, raw: &str, numbers: &[usize]) {
        let valid: Vec<usize> = numbers
            .iter()
            .copied()
            .filter(|n| (1..=self.sources).contains(n))
            .collect();
        self.removed += numbers.len() - valid.len();
        if valid.len() == numbers.len() {
            out.push_str(raw);
        } else if !valid.is_empty() {
            out.push('[');
            for (k, n) in valid.iter().enumerate() {
                if k > 0 {
                    out.push_str(", ");
                }
                out.push_str(&n.to_string());
            }
            out.push(']');
        }
    }
}

/// The numbers cited in `text`, distinct, in order of first appearance.
pub(crate) fn cited_numbers(text: &str) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    let mut i = 0;
    while let Some(rel) = text[i..].find('[') {
        let start = i + rel;
        match parse_marker(&text[start..]) {
            Parse::Marker { len, numbers } => {
                for n in numbers {
                    if !out.contains(&n) {
                        out.push(n);
                    }
                }
                i = start + len;
            }
            Parse::Text | Parse::Incomplete => i = start + 1,
        }
    }
    out
}

/// The citations of a (filtered) answer text.
pub(crate) fn citations(text: &str, sources: &[Source]) -> Vec<Citation> {
    cited_numbers(text)
        .into_iter()
        .filter_map(|n| sources.get(n.checked_sub(1)?))
        .map(Citation::from_source)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(sources: usize, deltas: &[&str]) -> (String, usize) {
        let mut f = MarkerFilter::new(sources);
        let mut out = String::new();
        for d in deltas {
            out.push_str(&f.push(d));
        }
        out.push_str(&f.finish());
        (out, f.removed())
    }

    #[test]
    fn filters_invalid_markers_across_deltas() {
        assert_eq!(run(2, &["a [1] b [3] c"]), ("a [1] b  c".into(), 1));
        assert_eq!(run(2, &["a [", "1", "] b [", "0]"]), ("a [1] b ".into(), 1));
        assert_eq!(run(3, &["x [1, 4,", " 3]"]), ("x [1, 3]".into(), 1));
        assert_eq!(run(1, &["[note] [a] [", "]"]), ("[note] [a] []".into(), 0));
        assert_eq!(run(1, &["end [1"]), ("end [1".into(), 0));
        assert_eq!(run(0, &["[1][2]"]), (String::new(), 2));
        let long = format!("[{}]", "1".repeat(40));
        assert_eq!(run(1, &[&long]), (long.clone(), 0));
        assert_eq!(
            run(2, &["日本 [2]語 [", "9] é"]),
            ("日本 [2]語  é".into(), 1)
        );
    }

    #[test]
    fn cited_numbers_in_order() {
        assert_eq!(cited_numbers("a [2] b [1, 2] [x] [3"), vec![2, 1]);
    }

    #[test]
    fn every_split_gives_the_same_text() {
        let text = "Alpha [1] beta [12] gamma [2,3] delta [ 2 ] end [";
        let (whole, removed) = run(2, &[text]);
        for cut in 0..text.len() {
            let (a, b) = text.split_at(cut);
            assert_eq!(run(2, &[a, b]), (whole.clone(), removed), "cut {cut}");
        }
    }
}
