//! [`ExtractiveAnswerer`]: answers without a language model.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use unicode_segmentation::UnicodeSegmentation;

use crate::chat::{ChatDelta, ChatRequest, ChatResponse, FinishReason, Role, Usage};
use crate::error::{Error, Result};
use crate::text::Analyzer;
use crate::traits::{ChatStream, LlmClient};

/// An [`LlmClient`] that needs no model: it answers with the sentences of
/// the prompt's numbered sources that best match the question (BM25 over
/// sentences), each followed by its `[n]` citation.
///
/// It is the pipeline's default when no model is configured. It reads the
/// sources as data ([`ChatRequest::sources`], which the pipeline fills),
/// not from the prompt, so any prompt template works; with no sources it
/// says so instead of failing. It is
/// [`model_free`](LlmClient::model_free): the pipeline rewrites follow-ups
/// without calling it, and a request that is not about sources (`sources`
/// is `None`: condensing, a plain chat) is `Error::Unsupported` rather
/// than an answer made up of nothing. Its replies are marked
/// [`extractive`](ChatResponse::extractive), and so are the
/// [`Answer`](super::Answer)s it writes.
///
/// ```
/// use rag_core::chat::PromptSource;
/// use rag_core::pipeline::ExtractiveAnswerer;
/// use rag_core::{ChatRequest, LlmClient, Message};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let source = PromptSource {
///     number: 1,
///     source: "keys.md".into(),
///     text: "The office opens at nine. API keys are rotated every month.".into(),
/// };
/// let req = ChatRequest::new(vec![Message::user("When are keys rotated?")])
///     .with_sources(vec![source]);
/// let answer = ExtractiveAnswerer::default().complete(req).await.unwrap();
/// assert_eq!(answer.text, "API keys are rotated every month. [1]");
/// assert!(answer.extractive);
/// # });
/// ```
#[derive(Clone)]
pub struct ExtractiveAnswerer {
    model_id: String,
    max_sentences: usize,
    context_window: usize,
    analyzer: Analyzer,
    /// Sentences and terms of recently seen source texts, keyed by a hash of
    /// the text: the same chunks come back question after question, and
    /// analysing them (sentence splitting, stemming) is most of the cost.
    analysed: Arc<quick_cache::sync::Cache<[u8; 32], Arc<Vec<Analysed>>>>,
}

/// One analysed sentence of a source text.
#[derive(Debug)]
struct Analysed {
    text: String,
    terms: Vec<String>,
}

impl std::fmt::Debug for ExtractiveAnswerer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtractiveAnswerer")
            .field("model_id", &self.model_id)
            .field("max_sentences", &self.max_sentences)
            .field("context_window", &self.context_window)
            .field("cached_sources", &self.analysed.len())
            .finish()
    }
}

/// Source texts whose analysis is kept.
const ANALYSED_SOURCES: usize = 4096;

impl Default for ExtractiveAnswerer {
    fn default() -> Self {
        Self {
            model_id: format!("{}-v1", Self::MODEL_ID_PREFIX),
            max_sentences: 3,
            context_window: 32_768,
            analyzer: Analyzer::default(),
            analysed: Arc::new(quick_cache::sync::Cache::new(ANALYSED_SOURCES)),
        }
    }
}

/// A sentence of a source, ranked against a question.
#[derive(Clone, Debug)]
pub(crate) struct RankedSentence {
    /// The source's number.
    pub(crate) source: usize,
    /// Its position among all the sentences of the request's sources.
    pub(crate) order: usize,
    /// The sentence.
    pub(crate) text: String,
}

/// A candidate sentence.
struct Sentence<'a> {
    source: usize,
    order: usize,
    text: &'a str,
    terms: &'a [String],
}

impl ExtractiveAnswerer {
    /// Every model id of this answerer starts with this.
    pub const MODEL_ID_PREFIX: &'static str = "extractive";

    /// The answer when the request has no sources.
    pub const NO_SOURCES: &'static str = "No sources were found to answer this question.";

    /// The answer when no source sentence matches the question.
    pub const NO_MATCH: &'static str = "The sources found do not appear to answer this question.";

    /// An answerer with the defaults (3 sentences).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how many sentences an answer has at most (at least 1).
    pub fn with_max_sentences(mut self, n: usize) -> Self {
        self.max_sentences = n.max(1);
        self
    }

    /// Sets the context window reported to the pipeline.
    pub fn with_context_window(mut self, tokens: usize) -> Self {
        self.context_window = tokens;
        self
    }

    /// A request that is not about sources cannot be answered by quoting
    /// them.
    fn check_request(&self, request: &ChatRequest) -> Result<()> {
        match request.sources {
            Some(_) => Ok(()),
            None => Err(Error::unsupported(
                self.model_id.clone(),
                "a request without sources (this answerer only quotes sources; it cannot \
                 rewrite a question or chat)",
            )),
        }
    }

    /// The answer text for a request.
    pub fn answer(&self, request: &ChatRequest) -> String {
        let ranked = self.ranked_sentences(request);
        match ranked {
            None => Self::NO_SOURCES.to_owned(),
            Some(r) if r.is_empty() => Self::NO_MATCH.to_owned(),
            Some(r) => r
                .into_iter()
                .take(self.max_sentences)
                .map(|s| format!("{} [{}]", s.text, s.source))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// The sentences of the request's sources that match its question (the
    /// last user message), best first (BM25 over sentences; ties by source
    /// number, then position), each distinct text once. `None` when the
    /// request has no readable sources.
    pub(crate) fn ranked_sentences(&self, request: &ChatRequest) -> Option<Vec<RankedSentence>> {
        let question = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.as_str())
            .unwrap_or_default();
        let analysed: Vec<(usize, Arc<Vec<Analysed>>)> = request
            .sources
            .iter()
            .flatten()
            .map(|s| (s.number, self.analyse(&s.text)))
            .collect();
        let mut sentences = Vec::new();
        for (number, list) in &analysed {
            for a in list.iter() {
                sentences.push(Sentence {
                    source: *number,
                    order: sentences.len(),
                    text: a.text.as_str(),
                    terms: &a.terms,
                });
            }
        }
        if sentences.is_empty() {
            return None;
        }
        let query: HashSet<String> = self.analyzer.terms(question).into_iter().collect();
        let scores = bm25(&sentences, &query);
        let mut ranked: Vec<(f32, &Sentence<'_>)> = scores
            .into_iter()
            .zip(&sentences)
            .filter(|(s, _)| *s > 0.0)
            .collect();
        ranked.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(a.1.source.cmp(&b.1.source))
                .then(a.1.order.cmp(&b.1.order))
        });
        let mut seen = HashSet::new();
        Some(
            ranked
                .into_iter()
                .filter(|(_, s)| seen.insert(s.text))
                .map(|(_, s)| RankedSentence {
                    source: s.source,
                    order: s.order,
                    text: s.text.to_owned(),
                })
                .collect(),
        )
    }

    /// The sentences of a source text with their terms, from the cache when
    /// this text was seen before.
    fn analyse(&self, text: &str) -> Arc<Vec<Analysed>> {
        use sha2::{Digest, Sha256};
        let key: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if let Some(hit) = self.analysed.get(&key) {
            return hit;
        }
        let mut out = Vec::new();
        split_sentences(text, |sentence| {
            let terms = self.analyzer.terms(&sentence);
            if !terms.is_empty() {
                out.push(Analysed {
                    text: sentence,
                    terms,
                });
            }
        });
        let out = Arc::new(out);
        self.analysed.insert(key, out.clone());
        out
    }

    fn usage(request: &ChatRequest, answer: &str) -> Usage {
        let words = |s: &str| u32::try_from(s.split_whitespace().count()).unwrap_or(u32::MAX);
        Usage {
            prompt_tokens: request.messages.iter().map(|m| words(&m.content)).sum(),
            completion_tokens: words(answer),
        }
    }
}

/// Calls `f` with each sentence of `text`, whitespace collapsed, Markdown
/// line markers (`#`, `-`, `*`, `>`) and fenced code blocks removed.
fn split_sentences(text: &str, mut f: impl FnMut(String)) {
    // `None` outside a fenced block; else whether it is a shell block.
    let mut fence: Option<bool> = None;
    let mut prose = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            fence = match fence {
                Some(_) => None,
                None => Some(matches!(
                    info.trim(),
                    "sh" | "bash" | "shell" | "console" | "zsh"
                )),
            };
            prose.push('\n');
            continue;
        }
        match fence {
            // A command line of a shell block is an answer to "how do I…"
            // (`scripts/test   # the whole test suite`): each is a unit of
            // its own. Other code is left out.
            Some(true) => {
                let command = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
                if !command.is_empty() && !command.starts_with('#') {
                    prose.push_str("\n\n");
                    prose.push_str(&command.split_whitespace().collect::<Vec<_>>().join(" "));
                    prose.push_str("\n\n");
                }
            }
            Some(false) => prose.push('\n'),
            // Headings are titles, not statements.
            None if trimmed.starts_with('#') => prose.push_str("\n\n"),
            None => {
                prose.push_str(line);
                prose.push('\n');
            }
        }
    }
    for block in prose.split("\n\n") {
        let lines: Vec<&str> = block
            .lines()
            .map(|l| {
                l.trim()
                    .trim_start_matches(['#', '-', '*', '>', '|'])
                    .trim()
            })
            .filter(|l| !l.is_empty())
            .collect();
        let joined = lines.join(" ");
        for s in joined.split_sentence_bounds() {
            let s = s.trim();
            if s.split_whitespace().count() >= 2 && !looks_like_code(s) {
                f(s.to_owned());
            }
        }
    }
}

/// Whether a sentence is more likely code than prose (a chunk can start
/// inside a code block, where fences cannot tell).
fn looks_like_code(s: &str) -> bool {
    let symbols = s.chars().filter(|c| "{}();=<>&|".contains(*c)).count();
    symbols * 12 > s.chars().count() || s.contains("```")
}

/// BM25 of each sentence against the query terms.
fn bm25(sentences: &[Sentence<'_>], query: &HashSet<String>) -> Vec<f32> {
    const K1: f32 = 1.2;
    const B: f32 = 0.75;
    let n = sentences.len() as f32;
    let avg = sentences.iter().map(|s| s.terms.len()).sum::<usize>() as f32 / n.max(1.0);
    let mut df: HashMap<&str, f32> = HashMap::new();
    for s in sentences {
        let distinct: HashSet<&str> = s.terms.iter().map(String::as_str).collect();
        for t in distinct {
            if query.contains(t) {
                *df.entry(t).or_default() += 1.0;
            }
        }
    }
    sentences
        .iter()
        .map(|s| {
            let mut tf: HashMap<&str, f32> = HashMap::new();
            for t in s.terms {
                if query.contains(t) {
                    *tf.entry(t.as_str()).or_default() += 1.0;
                }
            }
            let len = s.terms.len() as f32;
            tf.into_iter()
                .map(|(t, tf)| {
                    let d = df.get(t).copied().unwrap_or(1.0);
                    let idf = (1.0 + (n - d + 0.5) / (d + 0.5)).ln();
                    idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg.max(1.0)))
                })
                .sum()
        })
        .collect()
}

/// Splits a text into word deltas, each with its following space.
pub(crate) fn word_deltas(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_owned).collect()
}

#[async_trait]
impl LlmClient for ExtractiveAnswerer {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn context_window(&self) -> usize {
        self.context_window
    }

    fn model_free(&self) -> bool {
        true
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse> {
        self.check_request(&request)?;
        let text = self.answer(&request);
        Ok(ChatResponse {
            usage: Self::usage(&request, &text),
            text,
            finish_reason: FinishReason::Stop,
            model: self.model_id.clone(),
            extractive: true,
        })
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        self.check_request(&request)?;
        let text = self.answer(&request);
        let usage = Self::usage(&request, &text);
        let mut items: Vec<Result<ChatDelta>> = word_deltas(&text)
            .into_iter()
            .map(|d| Ok(ChatDelta::Text(d)))
            .collect();
        items.push(Ok(ChatDelta::Finish {
            usage,
            finish_reason: FinishReason::Stop,
            model: self.model_id.clone(),
            extractive: true,
        }));
        Ok(futures::stream::iter(items).boxed())
    }
}

#[cfg(test)]
mod tests {

    #[tokio::test]
    async fn cached_analysis_gives_the_same_answer() {
        let prompt = "<sources>\n<source n=\"1\" from=\"a.md\">\nThe office opens at nine. \
                      API keys are rotated every month.\n</source>\n<source n=\"2\" from=\"b.md\">\n\
                      Keys of the admin account rotate weekly. Lunch is at noon.\n</source>\n</sources>";
        let req = |q: &str| req(prompt, q);
        let warm = ExtractiveAnswerer::default();
        let first = warm
            .complete(req("When are keys rotated?"))
            .await
            .unwrap()
            .text;
        assert_eq!(warm.analysed.len(), 2, "both sources analysed and kept");
        let second = warm
            .complete(req("When are keys rotated?"))
            .await
            .unwrap()
            .text;
        assert_eq!(first, second);
        assert_eq!(
            warm.analysed.len(),
            2,
            "no new entries for the same sources"
        );
        // A fresh answerer (empty cache) agrees, for another question too.
        let other = warm.complete(req("When is lunch?")).await.unwrap().text;
        let cold = ExtractiveAnswerer::default();
        assert_eq!(
            cold.complete(req("When is lunch?")).await.unwrap().text,
            other
        );
        assert!(other.contains("Lunch is at noon. [2]"), "{other}");
    }

    use super::*;
    use crate::chat::Message;

    /// A request as the pipeline sends it: the sources rendered in the
    /// system message and given as data.
    fn req(system: &str, user: &str) -> ChatRequest {
        ChatRequest::new(vec![Message::system(system), Message::user(user)])
            .with_sources(crate::pipeline::prompt::parse_sources(system))
    }

    #[tokio::test]
    async fn picks_matching_sentences_and_streams_the_same_text() {
        let sys = "<sources>\n<source n=\"1\" from=\"a.md\">\n# Title\n\nCats sleep a lot. \
                   Dogs bark at night.\n\n```\nlet dogs = bark();\n```\n</source>\n<source n=\"2\" from=\"b.md\">\nThe dog \
                   barks loudly when strangers come.\n</source>\n</sources>";
        let e = ExtractiveAnswerer::default().with_max_sentences(2);
        let r = req(sys, "Why do dogs bark?");
        let text = e.complete(r.clone()).await.unwrap().text;
        assert!(text.contains("Dogs bark at night. [1]"), "{text}");
        assert!(text.contains("[2]"), "{text}");
        assert!(!text.contains("Cats"), "{text}");
        assert!(
            !text.contains("let dogs"),
            "code blocks are not quoted: {text}"
        );
        assert!(!text.contains("Title"), "headings are not quoted: {text}");
        assert!(looks_like_code("let x = f(a); g(&x);"));
        assert!(!looks_like_code(
            "Run the tests (all of them) with cargo test."
        ));
        let streamed: Vec<ChatDelta> = e
            .stream(r)
            .await
            .unwrap()
            .map(|d| d.unwrap())
            .collect()
            .await;
        let joined: String = streamed
            .iter()
            .filter_map(|d| match d {
                ChatDelta::Text(t) => Some(t.as_str()),
                ChatDelta::Finish { .. } => None,
            })
            .collect();
        assert_eq!(joined, text);
        assert!(matches!(streamed.last(), Some(ChatDelta::Finish { .. })));
    }

    #[test]
    fn shell_command_lines_are_sentences_other_code_is_not() {
        let text = "Two commands:\n\n```sh\n$ scripts/quickstart    # the main job\n\
                    scripts/test          # the whole test suite\n# a comment line\n```\n\n\
                    ```rust\nlet suite = test();\n```\nThe suite runs in CI.";
        let mut got = Vec::new();
        split_sentences(text, |s| got.push(s));
        assert_eq!(
            got,
            [
                "Two commands:",
                "scripts/quickstart # the main job",
                "scripts/test # the whole test suite",
                "The suite runs in CI.",
            ]
        );
    }

    #[tokio::test]
    async fn no_sources_or_no_match_is_said_not_panicked() {
        let e = ExtractiveAnswerer::default();
        assert_eq!(
            e.answer(&req("Be nice.", "q?")),
            ExtractiveAnswerer::NO_SOURCES
        );
        assert_eq!(
            e.answer(&ChatRequest::default()),
            ExtractiveAnswerer::NO_SOURCES
        );
        // Not a request about sources: refused, not answered with nothing.
        let condense = ChatRequest::new(vec![Message::user("Rewrite: and the second one?")]);
        assert!(matches!(
            e.complete(condense.clone()).await,
            Err(Error::Unsupported { .. })
        ));
        assert!(e.stream(condense).await.is_err());
        assert!(e.model_free());
        let sys = "<source n=\"1\" from=\"a\">\nCats sleep a lot.\n</source>\n";
        assert_eq!(
            e.answer(&req(sys, "quantum flux?")),
            ExtractiveAnswerer::NO_MATCH
        );
        assert!(
            e.model_id()
                .starts_with(ExtractiveAnswerer::MODEL_ID_PREFIX)
        );
    }
}
