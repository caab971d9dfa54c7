//! [`GroundedAnswerer`]: a small language model reads the best sentences
//! and answers in a few words, with a checked citation.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;

use crate::chat::{ChatDelta, ChatRequest, ChatResponse, FinishReason, Message, Role};
use crate::error::Result;
use crate::text::Analyzer;
use crate::traits::{ChatStream, LlmClient};

use super::extractive::{ExtractiveAnswerer, RankedSentence, word_deltas};

/// The instructions the model reads; the excerpts follow.
const INSTRUCTIONS: &str = "Answer the question using only the excerpts below. Reply with the \
answer only: the shortest phrase copied from an excerpt that answers the question (a name, a \
number, a date, a command or a few words), followed by that excerpt's number in square brackets, \
like: Denver Broncos [2]. If no excerpt answers the question, reply: I do not know.\n\nExcerpts:\n";

/// An [`LlmClient`] that puts a small language model to work as a reader:
/// from the sources the pipeline packed, it keeps the sentences that best
/// match the question (BM25 over sentences, as the [`ExtractiveAnswerer`]
/// ranks them), asks the model for the shortest phrase of those sentences
/// that answers, and checks the reply before returning it:
///
/// * a reply is cited to the best-ranked excerpt that contains it, whatever
///   number the model wrote (a small model often cites a neighbour); else to
///   the existing sources it cites; else to the source sharing most of its
///   words;
/// * a reply whose content words are not found in the source it cites (a
///   share below [`with_min_support`](Self::with_min_support)), or that
///   declines to answer, is replaced by the extractive answer: the best
///   sentence, quoted and cited. The response's model is then the
///   extractive answerer's, so [`Answer::extractive`](super::Answer::extractive)
///   says so, and a `rag_grounded_fallbacks_total` counter (label `reason`)
///   counts it.
///
/// The model sees a prompt of a few hundred tokens whatever the pipeline
/// packed, which is what makes a 0.5B-parameter model on two CPU cores
/// answer in a second or two. Requests without sources (condensing a
/// follow-up) go to the model unchanged. Streaming answers are generated
/// whole, checked, then sent as word deltas.
#[derive(Clone)]
pub struct GroundedAnswerer {
    model: Arc<dyn LlmClient>,
    extractive: ExtractiveAnswerer,
    fallback: ExtractiveAnswerer,
    model_id: String,
    excerpt_sentences: usize,
    max_answer_tokens: u32,
    min_support: f64,
    analyzer: Analyzer,
}

impl std::fmt::Debug for GroundedAnswerer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroundedAnswerer")
            .field("model_id", &self.model_id)
            .field("excerpt_sentences", &self.excerpt_sentences)
            .field("max_answer_tokens", &self.max_answer_tokens)
            .field("min_support", &self.min_support)
            .finish()
    }
}

/// Why a reply was replaced by the extractive answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fallback {
    Declined,
    Unsupported,
}

impl Fallback {
    fn label(self) -> &'static str {
        match self {
            Self::Declined => "declined",
            Self::Unsupported => "unsupported",
        }
    }
}

impl GroundedAnswerer {
    /// Every model id of this answerer starts with this.
    pub const MODEL_ID_PREFIX: &'static str = "grounded";

    /// A reader on `model`: 8 excerpt sentences, answers of at most 48
    /// tokens, at least 0.75 of the answer's content words in the cited
    /// source.
    pub fn new(model: Arc<dyn LlmClient>) -> Self {
        let model_id = format!("{}/{}", Self::MODEL_ID_PREFIX, model.model_id());
        Self {
            model,
            extractive: ExtractiveAnswerer::default(),
            fallback: ExtractiveAnswerer::default().with_max_sentences(1),
            model_id,
            excerpt_sentences: 8,
            max_answer_tokens: 48,
            min_support: 0.75,
            analyzer: Analyzer::default(),
        }
    }

    /// Sets how many of the best sentences the model reads (at least 1).
    pub fn with_excerpt_sentences(mut self, n: usize) -> Self {
        self.excerpt_sentences = n.max(1);
        self
    }

    /// Sets the most tokens the model may write.
    pub fn with_max_answer_tokens(mut self, n: u32) -> Self {
        self.max_answer_tokens = n.max(1);
        self
    }

    /// Sets the share (0–1) of the answer's content words that must occur in
    /// the cited source.
    pub fn with_min_support(mut self, share: f64) -> Self {
        self.min_support = share.clamp(0.0, 1.0);
        self
    }

    /// The model that reads.
    pub fn model(&self) -> &Arc<dyn LlmClient> {
        &self.model
    }

    /// The excerpts (best sentences, best first) and the request the model
    /// gets, which shows them grouped by source in document order; `None`
    /// without sources.
    fn reader_request(&self, request: &ChatRequest) -> Option<(Vec<RankedSentence>, ChatRequest)> {
        let mut best = self.extractive.ranked_sentences(request)?;
        best.truncate(self.excerpt_sentences);
        // The model reads them by source, in document order; `best` stays
        // best first for the citation check.
        let mut shown = best.clone();
        shown.sort_by_key(|s| (s.source, s.order));
        let question = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let mut system = INSTRUCTIONS.to_owned();
        let mut last = None;
        for s in &shown {
            if last == Some(s.source) {
                system.push(' ');
            } else {
                if last.is_some() {
                    system.push('\n');
                }
                let _ = write!(system, "[{}] ", s.source);
            }
            system.push_str(&s.text);
            last = Some(s.source);
        }
        let mut req = ChatRequest::new(vec![Message::system(system), Message::user(question)]);
        req.max_tokens = Some(
            request
                .max_tokens
                .map_or(self.max_answer_tokens, |m| m.min(self.max_answer_tokens)),
        );
        req.temperature = Some(0.0);
        Some((best, req))
    }

    /// The reply checked and cited, or why it must be replaced.
    fn check(
        &self,
        reply: &str,
        excerpts: &[RankedSentence],
        sources: &[(usize, &str)],
    ) -> std::result::Result<String, Fallback> {
        let line = reply
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        let (text, cited) = split_markers(line);
        let text = text
            .trim()
            .trim_start_matches(['"', '\'', '*'])
            .trim_end_matches(['"', '\'', '*'])
            .trim();
        if text.is_empty() || crate::eval::answers::is_abstention(text) {
            return Err(Fallback::Declined);
        }
        let terms = self.analyzer.terms(text);
        let support = |n: usize| -> f64 {
            let Some((_, body)) = sources.iter().find(|(m, _)| *m == n) else {
                return 0.0;
            };
            if terms.is_empty() {
                return 1.0;
            }
            let known: HashSet<String> = self.analyzer.terms(body).into_iter().collect();
            terms.iter().filter(|t| known.contains(*t)).count() as f64 / terms.len() as f64
        };
        // The source of the best-ranked excerpt that contains the reply
        // (a small model often cites a neighbouring excerpt); else the
        // cited sources that exist; else the source that supports it best.
        let lower = text.to_lowercase();
        let containing = excerpts
            .iter()
            .find(|s| s.text.to_lowercase().contains(&lower))
            .map(|s| s.source);
        let mut valid: Vec<usize> = match containing {
            Some(n) => vec![n],
            None => cited
                .into_iter()
                .filter(|n| sources.iter().any(|(m, _)| m == n))
                .collect(),
        };
        valid.dedup();
        if valid.is_empty() {
            valid.extend(
                sources
                    .iter()
                    .map(|(n, _)| (*n, support(*n)))
                    .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                    .map(|(n, _)| n),
            );
        }
        let supported = valid.iter().map(|n| support(*n)).fold(0.0, f64::max);
        if supported < self.min_support {
            return Err(Fallback::Unsupported);
        }
        let markers: String = valid.iter().map(|n| format!("[{n}]")).collect();
        Ok(format!(
            "{} {markers}",
            text.trim_end_matches(['.', ',', ';'])
        ))
    }

    async fn answer(&self, request: ChatRequest) -> Result<ChatResponse> {
        let Some((excerpts, reader)) = self.reader_request(&request) else {
            return match &request.sources {
                // Not about sources (condensing, a plain chat): the model's.
                None => self.model.complete(request).await,
                // Nothing retrieved, or sources with no sentence to read:
                // the extractive answer says so.
                Some(_) => self.fallback.complete(request).await,
            };
        };
        if excerpts.is_empty() {
            // Sources, but no sentence shares a word with the question.
            return self.fallback.complete(request).await;
        }
        let reply = self.model.complete(reader).await?;
        let sources: Vec<(usize, &str)> = request
            .sources
            .iter()
            .flatten()
            .map(|s| (s.number, s.text.as_str()))
            .collect();
        match self.check(&reply.text, &excerpts, &sources) {
            Ok(text) => Ok(ChatResponse {
                text,
                usage: reply.usage,
                finish_reason: FinishReason::Stop,
                model: format!("{}/{}", Self::MODEL_ID_PREFIX, reply.model),
                extractive: false,
            }),
            Err(why) => {
                metrics::counter!("rag_grounded_fallbacks_total", "reason" => why.label())
                    .increment(1);
                tracing::debug!(
                    reason = why.label(),
                    "reader reply replaced by the extractive answer"
                );
                let mut out = self.fallback.complete(request).await?;
                out.usage = reply.usage;
                Ok(out)
            }
        }
    }
}

/// The text without its `[n]` markers, and the numbers they cite in order.
fn split_markers(line: &str) -> (String, Vec<usize>) {
    static MARKER: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]").expect("a valid regex")
    });
    let mut cited = Vec::new();
    for c in MARKER.captures_iter(line) {
        for n in c[1].split(',') {
            if let Ok(n) = n.trim().parse() {
                cited.push(n);
            }
        }
    }
    let text = MARKER.replace_all(line, "");
    (text.split_whitespace().collect::<Vec<_>>().join(" "), cited)
}

#[async_trait]
impl LlmClient for GroundedAnswerer {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Large: the pipeline may pack many sources; the model reads only the
    /// excerpts.
    fn context_window(&self) -> usize {
        32_768
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse> {
        self.answer(request).await
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        let answer = self.answer(request).await?;
        let mut items: Vec<Result<ChatDelta>> = word_deltas(&answer.text)
            .into_iter()
            .map(|d| Ok(ChatDelta::Text(d)))
            .collect();
        items.push(Ok(ChatDelta::Finish {
            usage: answer.usage,
            finish_reason: answer.finish_reason,
            model: answer.model,
            extractive: answer.extractive,
        }));
        Ok(futures::stream::iter(items).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::Usage;
    use parking_lot::Mutex;

    /// Replies with a fixed text and keeps the requests it got.
    #[derive(Debug, Default)]
    struct Canned {
        reply: String,
        seen: Mutex<Vec<ChatRequest>>,
    }

    #[async_trait]
    impl LlmClient for Canned {
        fn model_id(&self) -> &str {
            "canned"
        }
        fn context_window(&self) -> usize {
            2048
        }
        async fn complete(&self, request: ChatRequest) -> Result<ChatResponse> {
            self.seen.lock().push(request);
            Ok(ChatResponse {
                text: self.reply.clone(),
                usage: Usage {
                    prompt_tokens: 100,
                    completion_tokens: 4,
                },
                finish_reason: FinishReason::Stop,
                model: "canned".into(),
                extractive: false,
            })
        }
        async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
            let r = self.complete(request).await?;
            Ok(futures::stream::iter(vec![
                Ok(ChatDelta::Text(r.text)),
                Ok(ChatDelta::Finish {
                    usage: r.usage,
                    finish_reason: r.finish_reason,
                    model: r.model,
                    extractive: false,
                }),
            ])
            .boxed())
        }
    }

    const PROMPT: &str = "<sources>\n<source n=\"1\" from=\"a.md\">\nThe office opens at nine. \
        Lunch is at noon.\n</source>\n<source n=\"2\" from=\"b.md\">\nThe Denver Broncos won \
        Super Bowl 50. They beat the Carolina Panthers.\n</source>\n</sources>";

    fn ask(reply: &str, question: &str) -> (Arc<Canned>, GroundedAnswerer, ChatRequest) {
        let model = Arc::new(Canned {
            reply: reply.into(),
            ..Canned::default()
        });
        let answerer = GroundedAnswerer::new(model.clone());
        let req = ChatRequest::new(vec![Message::system(PROMPT), Message::user(question)])
            .with_sources(crate::pipeline::prompt::parse_sources(PROMPT));
        (model, answerer, req)
    }

    #[tokio::test]
    async fn the_model_reads_excerpts_and_its_cited_reply_is_kept() {
        let (model, a, req) = ask("Denver Broncos [2]", "Who won Super Bowl 50?");
        let out = a.complete(req).await.unwrap();
        assert_eq!(out.text, "Denver Broncos [2]");
        assert_eq!(out.model, "grounded/canned");
        let seen = model.seen.lock();
        let system = &seen[0].messages[0].content;
        assert!(
            system.contains("[2] The Denver Broncos won Super Bowl 50."),
            "{system}"
        );
        assert!(
            !system.contains("<source"),
            "the model gets excerpts, not the packed sources"
        );
        assert_eq!(seen[0].messages[1].content, "Who won Super Bowl 50?");
        assert_eq!(seen[0].max_tokens, Some(48));
    }

    #[tokio::test]
    async fn a_reply_is_cited_to_the_excerpt_that_contains_it() {
        for reply in [
            "Denver Broncos",
            "\"Denver Broncos.\"",
            "Denver Broncos [7]",
            "Denver Broncos [1]",
        ] {
            let (_, a, req) = ask(reply, "Who won Super Bowl 50?");
            assert_eq!(
                a.complete(req).await.unwrap().text,
                "Denver Broncos [2]",
                "{reply}"
            );
        }
    }

    #[tokio::test]
    async fn unsupported_or_declined_replies_fall_back_to_the_best_sentence() {
        for reply in ["Green Bay Packers [2]", "I do not know.", ""] {
            let (_, a, req) = ask(reply, "Who won Super Bowl 50?");
            let out = a.complete(req).await.unwrap();
            assert_eq!(
                out.text, "The Denver Broncos won Super Bowl 50. [2]",
                "{reply}"
            );
            assert!(out.model.starts_with(ExtractiveAnswerer::MODEL_ID_PREFIX));
        }
    }

    #[tokio::test]
    async fn requests_without_sources_go_to_the_model_unchanged() {
        let model = Arc::new(Canned {
            reply: "What time does the office open?".into(),
            ..Canned::default()
        });
        let a = GroundedAnswerer::new(model.clone());
        let req = ChatRequest::new(vec![
            Message::system("Rewrite the follow-up."),
            Message::user("and it?"),
        ]);
        let out = a.complete(req.clone()).await.unwrap();
        assert_eq!(out.text, "What time does the office open?");
        assert_eq!(model.seen.lock()[0], req);
    }

    #[tokio::test]
    async fn streams_the_checked_answer() {
        let (_, a, req) = ask("Denver Broncos", "Who won Super Bowl 50?");
        let events: Vec<ChatDelta> = a
            .stream(req)
            .await
            .unwrap()
            .map(|e| e.unwrap())
            .collect()
            .await;
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                ChatDelta::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "Denver Broncos [2]");
        assert!(matches!(events.last(), Some(ChatDelta::Finish { .. })));
    }
}
