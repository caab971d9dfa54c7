//! Prompt templates and the source block format.

use serde::{Deserialize, Serialize};

use crate::chat::Message;
use crate::error::{Error, Result};

/// The placeholder for the numbered sources in [`PromptTemplate::system`].
pub(crate) const SOURCES: &str = "{sources}";
/// The placeholder for the question in [`PromptTemplate::user`].
pub(crate) const QUESTION: &str = "{question}";

/// Instructions of the default prompt.
pub(crate) const DEFAULT_SYSTEM: &str = "You answer questions using only the numbered sources below. \
After each statement, cite the sources that support it by their number in square brackets, \
like [1] or [2][3]. Cite only the numbers listed. If the sources do not contain the answer, \
say that you do not know.\n\n{sources}";

/// The prompt around the retrieved sources.
///
/// * `system` is the system message; `{sources}` is replaced by the numbered
///   sources (appended at the end when the placeholder is missing).
/// * `user` is the last user message; `{question}` is replaced by the
///   question (appended when missing).
///
/// The sources are always rendered in one stable format, which the
/// [`ExtractiveAnswerer`](super::ExtractiveAnswerer) reads back:
///
/// ```text
/// <sources>
/// <source n="1" from="handbook.md">
/// …chunk text…
/// </source>
/// </sources>
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PromptTemplate {
    /// The system message template, with `{sources}`.
    pub system: String,
    /// The user message template, with `{question}`.
    pub user: String,
}

impl Default for PromptTemplate {
    fn default() -> Self {
        Self {
            system: DEFAULT_SYSTEM.to_owned(),
            user: QUESTION.to_owned(),
        }
    }
}

impl PromptTemplate {
    /// A template with these messages.
    pub fn new(system: impl Into<String>, user: impl Into<String>) -> Self {
        Self {
            system: system.into(),
            user: user.into(),
        }
    }

    /// Checks that each placeholder appears at most once.
    pub fn validate(&self) -> Result<()> {
        if self.system.matches(SOURCES).count() > 1 {
            return Err(Error::invalid_input(
                "prompt template: {sources} may appear only once",
            ));
        }
        if self.user.matches(QUESTION).count() > 1 {
            return Err(Error::invalid_input(
                "prompt template: {question} may appear only once",
            ));
        }
        Ok(())
    }

    /// The system text around the sources: (before, after).
    pub(crate) fn system_parts(&self) -> (&str, &str) {
        match self.system.split_once(SOURCES) {
            Some((a, b)) => (a, b),
            None => (self.system.as_str(), ""),
        }
    }

    /// The system message with a rendered source block.
    pub(crate) fn render_system(&self, block: &str) -> Message {
        let (before, after) = self.system_parts();
        let mut s = String::with_capacity(before.len() + block.len() + after.len() + 2);
        s.push_str(before);
        if !self.system.contains(SOURCES) && !before.is_empty() {
            s.push_str("\n\n");
        }
        s.push_str(block);
        s.push_str(after);
        Message::system(s)
    }

    /// The user message.
    pub(crate) fn render_user(&self, question: &str) -> Message {
        Message::user(match self.user.split_once(QUESTION) {
            Some((a, b)) => format!("{a}{question}{b}"),
            None if self.user.is_empty() => question.to_owned(),
            None => format!("{}\n\n{question}", self.user),
        })
    }
}

pub(crate) const BLOCK_OPEN: &str = "<sources>\n";
pub(crate) const BLOCK_CLOSE: &str = "</sources>";
pub(crate) const SOURCE_CLOSE: &str = "\n</source>\n";

/// The opening line of one source.
pub(crate) fn source_header(number: usize, source: &str) -> String {
    let name: String = source
        .chars()
        .map(|c| match c {
            '"' => '\'',
            '\n' | '\r' | '<' | '>' => ' ',
            c => c,
        })
        .collect();
    format!("<source n=\"{number}\" from=\"{name}\">\n")
}

/// Reads the sources rendered by [`source_header`] back out of a prompt
/// text (anything malformed is skipped): test fixtures written as prompts.
#[cfg(test)]
pub(crate) fn parse_sources(prompt: &str) -> Vec<crate::chat::PromptSource> {
    const OPEN: &str = "<source n=\"";
    let mut out = Vec::new();
    let mut rest = prompt;
    while let Some(i) = rest.find(OPEN) {
        rest = &rest[i + OPEN.len()..];
        let Some(q) = rest.find('"') else { break };
        let Ok(number) = rest[..q].parse::<usize>() else {
            continue;
        };
        let source = rest[q..]
            .strip_prefix("\" from=\"")
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_owned();
        let Some(nl) = rest.find(">\n") else { break };
        let body = &rest[nl + 2..];
        let Some(end) = body.find(SOURCE_CLOSE) else {
            break;
        };
        out.push(crate::chat::PromptSource {
            number,
            source,
            text: body[..end].to_owned(),
        });
        rest = &body[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_and_parse_round_trip() {
        let mut block = String::from(BLOCK_OPEN);
        for (n, (src, text)) in [("a\".md", "Alpha text."), ("b.md", "Beta\nlines.")]
            .iter()
            .enumerate()
        {
            block.push_str(&source_header(n + 1, src));
            block.push_str(text);
            block.push_str(SOURCE_CLOSE);
        }
        block.push_str(BLOCK_CLOSE);
        let t = PromptTemplate::default();
        let sys = t.render_system(&block);
        let parsed: Vec<(usize, String)> = parse_sources(&sys.content)
            .into_iter()
            .map(|s| (s.number, s.text))
            .collect();
        assert_eq!(
            parsed,
            [
                (1, "Alpha text.".to_owned()),
                (2, "Beta\nlines.".to_owned())
            ]
        );
        let custom = PromptTemplate::new("Be brief.", "Q: {question}?");
        assert!(
            custom
                .render_system(&block)
                .content
                .starts_with("Be brief.\n\n<sources>")
        );
        assert_eq!(custom.render_user("why").content, "Q: why?");
        assert!(
            PromptTemplate::new("{sources}{sources}", "")
                .validate()
                .is_err()
        );
        assert!(parse_sources("<source n=\"x\" from=\"\">\nno").is_empty());
    }
}
