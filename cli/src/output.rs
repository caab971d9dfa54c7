//! Terminal output: styles that appear only on a terminal and never when
//! `NO_COLOR` is set (`anstream` strips them otherwise), snippets and
//! locations of cited passages.

use std::path::Path;

use anstyle::{AnsiColor, Style};

pub(crate) const BOLD: Style = Style::new().bold();
pub(crate) const DIM: Style = Style::new().dimmed();
pub(crate) const CYAN: Style = AnsiColor::Cyan.on_default();
const RED: Style = AnsiColor::Red.on_default().bold();
const GREEN: Style = AnsiColor::Green.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();

/// `error: …` on stderr.
pub(crate) fn error(msg: &str) {
    anstream::eprintln!("{RED}error:{RED:#} {msg}");
}

/// `warning: …` on stderr.
pub(crate) fn warn(msg: &str) {
    anstream::eprintln!("{YELLOW}warning:{YELLOW:#} {msg}");
}

/// A success line on stderr (results go to stdout).
pub(crate) fn ok(msg: &str) {
    anstream::eprintln!("{GREEN}{msg}{GREEN:#}");
}

/// A notice on stderr, unless `--quiet`.
pub(crate) fn note(quiet: bool, msg: &str) {
    if !quiet {
        anstream::eprintln!("{DIM}{msg}{DIM:#}");
    }
}

/// The first `max` characters of `text` on one line.
pub(crate) fn snippet(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    format!("{}…", cut.trim_end())
}

/// Where a passage is: `lines 12-30` when the source is a file here whose
/// text covers the byte range, else `bytes 120-560`.
pub(crate) fn location(source: &str, range: &std::ops::Range<usize>) -> String {
    let lines = std::fs::read_to_string(Path::new(source))
        .ok()
        .filter(|t| {
            range.end <= t.len() && t.is_char_boundary(range.start) && t.is_char_boundary(range.end)
        })
        .map(|t| {
            let first = t[..range.start].matches('\n').count() + 1;
            let last = first + t[range.start..range.end].trim_end().matches('\n').count();
            (first, last)
        });
    match lines {
        Some((a, b)) if a == b => format!("line {a}"),
        Some((a, b)) => format!("lines {a}-{b}"),
        None => format!("bytes {}-{}", range.start, range.end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_one_line_and_bounded() {
        assert_eq!(snippet("a\n  b\tc", 10), "a b c");
        assert_eq!(snippet("abcdefghijkl", 5), "abcd…");
    }

    #[test]
    fn locations_are_lines_of_a_readable_file_else_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.md");
        std::fs::write(&p, "one\ntwo\nthree\nfour\n").unwrap();
        let src = p.to_str().unwrap();
        assert_eq!(location(src, &(4..14)), "lines 2-3");
        assert_eq!(location(src, &(0..3)), "line 1");
        assert_eq!(location("no/such/file.md", &(4..14)), "bytes 4-14");
        assert_eq!(location(src, &(4..400)), "bytes 4-400");
    }
}
