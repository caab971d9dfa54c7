//! Context packing: sources and history into a prompt that fits the model.

use crate::chat::{Message, Role};
use crate::chunking::TokenEncoding;
use crate::error::{Error, Result};
use crate::search::ScoredChunk;

use super::answer::{Source, Trace};
use super::prompt::{self, PromptTemplate};
use super::request::TokenBudget;

pub use crate::chat::{MESSAGE_OVERHEAD_TOKENS, REPLY_PRIMING_TOKENS};
/// Slack added per separately counted piece, because tokens of a
/// concatenation can differ slightly from the sum of the pieces' tokens.
const PIECE_SLACK: usize = 2;

/// The tokens a prompt of these messages takes with `encoding`, by the rule
/// the pipeline packs with ([`crate::chat::prompt_tokens`]).
pub fn count_prompt_tokens(messages: &[Message], encoding: TokenEncoding) -> usize {
    crate::chat::prompt_tokens(messages, |text| encoding.count(text))
}

/// What goes into packing.
pub(crate) struct PackInput<'a> {
    pub(crate) template: &'a PromptTemplate,
    /// Tokens of the template's system text without sources, when known.
    pub(crate) template_tokens: Option<usize>,
    pub(crate) question: &'a str,
    /// Oldest first.
    pub(crate) history: Vec<Message>,
    /// Best first.
    pub(crate) candidates: Vec<ScoredChunk>,
    pub(crate) budget: TokenBudget,
    pub(crate) context_window: usize,
    pub(crate) encoding: TokenEncoding,
}

/// A packed prompt.
#[derive(Debug)]
pub(crate) struct Packed {
    pub(crate) messages: Vec<Message>,
    pub(crate) sources: Vec<Source>,
    /// Estimated prompt tokens (an upper bound of [`count_prompt_tokens`]).
    pub(crate) prompt_tokens: usize,
    pub(crate) dropped_sources: usize,
    pub(crate) history_used: usize,
    pub(crate) history_dropped: usize,
}

impl Packed {
    /// Writes packing's part of the trace.
    pub(crate) fn write_trace(&self, trace: &mut Trace) {
        trace.packed_sources = self.sources.len();
        trace.dropped_sources = self.dropped_sources;
        trace.history_messages = self.history_used;
        trace.history_dropped = self.history_dropped;
        trace.prompt_tokens = self.prompt_tokens;
    }
}

/// Tokens of the system text of `template` without sources.
pub(crate) fn template_tokens(template: &PromptTemplate, encoding: TokenEncoding) -> usize {
    let (before, after) = template.system_parts();
    encoding.count(before)
        + encoding.count(after)
        + encoding.count(prompt::BLOCK_OPEN)
        + encoding.count(prompt::BLOCK_CLOSE)
        + 4 * PIECE_SLACK
}

/// The prompt budget left after the answer: `context_window - answer`.
pub(crate) fn available(budget: &TokenBudget, context_window: usize) -> Result<usize> {
    let answer = budget.answer as usize;
    if answer >= context_window {
        return Err(Error::invalid_input(format!(
            "answer budget ({answer} tokens) must be smaller than the model's context window \
             ({context_window})"
        )));
    }
    Ok(context_window - answer)
}

/// Keeps the most recent messages whose tokens fit `budget`; returns them
/// oldest first with their token total.
pub(crate) fn trim_history(
    history: Vec<Message>,
    budget: usize,
    encoding: TokenEncoding,
) -> (Vec<Message>, usize, usize) {
    let total = history.len();
    let mut used = 0;
    let mut keep = 0;
    for m in history.iter().rev() {
        let cost = encoding.count(&m.content) + MESSAGE_OVERHEAD_TOKENS + PIECE_SLACK;
        if used + cost > budget {
            break;
        }
        used += cost;
        keep += 1;
    }
    let kept: Vec<Message> = history.into_iter().skip(total - keep).collect();
    (kept, used, total - keep)
}

/// Packs sources (in rank order) and history into a prompt that never
/// exceeds `context_window - budget.answer`; `ContextLengthExceeded` when the
/// question and instructions alone would.
pub(crate) fn pack(input: PackInput<'_>) -> Result<Packed> {
    let enc = input.encoding;
    let available = available(&input.budget, input.context_window)?;
    let user = input.template.render_user(input.question);
    let system_tokens = input
        .template_tokens
        .unwrap_or_else(|| template_tokens(input.template, enc));
    let fixed = system_tokens
        + enc.count(&user.content)
        + PIECE_SLACK
        + 2 * MESSAGE_OVERHEAD_TOKENS
        + REPLY_PRIMING_TOKENS;
    if fixed > available {
        return Err(Error::ContextLengthExceeded {
            tokens: fixed,
            limit: available,
        });
    }

    let history_budget = input.budget.history.min(available - fixed);
    let (history, history_tokens, history_dropped) =
        trim_history(input.history, history_budget, enc);

    let source_budget = input.budget.context.min(available - fixed - history_tokens);
    let mut used = 0;
    let mut dropped = 0;
    let mut sources: Vec<Source> = Vec::new();
    let mut block = String::from(prompt::BLOCK_OPEN);
    for cand in input.candidates {
        let number = sources.len() + 1;
        let header = prompt::source_header(number, &cand.chunk.source);
        let text_tokens = match cand.chunk.token_count {
            Some(n) => n as usize,
            None => enc.count(&cand.chunk.text),
        };
        let cost =
            enc.count(&header) + text_tokens + enc.count(prompt::SOURCE_CLOSE) + 3 * PIECE_SLACK;
        if used + cost > source_budget {
            dropped += 1;
            continue;
        }
        used += cost;
        block.push_str(&header);
        block.push_str(&cand.chunk.text);
        block.push_str(prompt::SOURCE_CLOSE);
        sources.push(Source::from_scored(number, cand));
    }
    block.push_str(prompt::BLOCK_CLOSE);

    let history_used = history.len();
    let mut messages = Vec::with_capacity(history_used + 2);
    messages.push(input.template.render_system(&block));
    messages.extend(history);
    messages.push(user);
    Ok(Packed {
        messages,
        sources,
        prompt_tokens: fixed + history_tokens + used,
        dropped_sources: dropped,
        history_used,
        history_dropped,
    })
}

/// History messages as sent to a model: user and assistant turns only, no
/// stored metadata.
pub(crate) fn history_for_prompt(history: Vec<crate::session::StoredMessage>) -> Vec<Message> {
    history
        .into_iter()
        .filter(|m| matches!(m.message.role, Role::User | Role::Assistant))
        .map(|m| Message::new(m.message.role, m.message.content))
        .collect()
}
