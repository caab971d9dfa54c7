//! Chat messages, requests and responses for [`crate::LlmClient`].

use serde::{Deserialize, Serialize};

/// Tokens counted for each message on top of its content (its role and
/// delimiters: OpenAI's accounting for its chat models counts 3 or 4; 4 is
/// the upper bound).
pub const MESSAGE_OVERHEAD_TOKENS: usize = 4;
/// Tokens counted once per prompt for priming the reply.
pub const REPLY_PRIMING_TOKENS: usize = 3;

/// The tokens a prompt of these messages takes, with `count` counting the
/// tokens of a text: each message's content plus
/// [`MESSAGE_OVERHEAD_TOKENS`], plus [`REPLY_PRIMING_TOKENS`]. The one rule
/// the pipeline packs by, client-side rate limits charge by and the
/// OpenAI-compatible client reports when a server sends no usage.
///
/// ```
/// use rag_core::chat::{Message, prompt_tokens};
///
/// let words = |text: &str| text.split_whitespace().count();
/// let messages = [Message::system("Be brief."), Message::user("Why is the sky blue?")];
/// assert_eq!(prompt_tokens(&messages, words), (2 + 4) + (5 + 4) + 3);
/// ```
pub fn prompt_tokens(messages: &[Message], mut count: impl FnMut(&str) -> usize) -> usize {
    messages
        .iter()
        .map(|m| count(&m.content) + MESSAGE_OVERHEAD_TOKENS)
        .sum::<usize>()
        + REPLY_PRIMING_TOKENS
}

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions.
    System,
    /// The person asking.
    User,
    /// The model.
    Assistant,
}

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// The text.
    pub content: String,
    /// Extra data kept with a stored message (citations of an answer, for
    /// example); never sent to a model.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub metadata: serde_json::Value,
}

impl Message {
    /// A message.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            metadata: serde_json::Value::Null,
        }
    }
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }
    /// Attaches metadata.
    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A request to a chat model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ChatRequest {
    /// The conversation, oldest first.
    pub messages: Vec<Message>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Seed for providers that support reproducible sampling.
    pub seed: Option<u64>,
    /// The numbered sources the messages render, as data: `Some` for a
    /// request to answer from sources (empty when nothing was retrieved),
    /// `None` for any other request (condensing a follow-up, a plain chat).
    /// Answerers that work on the sources themselves (the
    /// [`ExtractiveAnswerer`](crate::ExtractiveAnswerer), the
    /// [`GroundedAnswerer`](crate::GroundedAnswerer)) read them here; a
    /// client of a model API ignores them (the prompt already has them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<PromptSource>>,
}

/// One numbered source of a [`ChatRequest`]: `[number]` cites it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptSource {
    /// Its number in the prompt.
    pub number: usize,
    /// Where it comes from (the document's source).
    pub source: String,
    /// The text given to the model.
    pub text: String,
}

impl ChatRequest {
    /// A request with these messages.
    pub fn new(messages: Vec<Message>) -> Self {
        Self {
            messages,
            ..Self::default()
        }
    }
    /// Sets the temperature.
    pub fn with_temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }
    /// Sets the answer budget.
    pub fn with_max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }
    /// Adds stop sequences.
    pub fn with_stop(mut self, stop: Vec<String>) -> Self {
        self.stop = stop;
        self
    }
    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
    /// Sets the sources the messages render, as data
    /// ([`ChatRequest::sources`]).
    pub fn with_sources(mut self, sources: Vec<PromptSource>) -> Self {
        self.sources = Some(sources);
        self
    }
}

/// Token accounting of one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
}

impl Usage {
    /// Prompt plus completion.
    pub fn total_tokens(&self) -> u32 {
        self.prompt_tokens + self.completion_tokens
    }
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FinishReason {
    /// The model finished.
    #[default]
    Stop,
    /// `max_tokens` was reached.
    Length,
    /// The provider filtered the content.
    ContentFilter,
    /// Something else.
    Other,
}

/// A complete answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The generated text.
    pub text: String,
    /// Token usage.
    pub usage: Usage,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// The model that answered (may differ from the one asked, behind a
    /// fallback).
    pub model: String,
    /// True when no language model wrote `text`: sentences quoted from the
    /// sources (the [`ExtractiveAnswerer`](crate::ExtractiveAnswerer), or a
    /// checked reader that fell back to quoting).
    #[serde(default)]
    pub extractive: bool,
}

/// One event of a streamed answer: text deltas, then exactly one `Finish`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatDelta {
    /// More text.
    Text(String),
    /// The end.
    Finish {
        /// Token usage.
        usage: Usage,
        /// Why it stopped.
        finish_reason: FinishReason,
        /// The model that answered.
        model: String,
        /// True when no language model wrote the text
        /// ([`ChatResponse::extractive`]).
        #[serde(default)]
        extractive: bool,
    },
}
