//! [`OpenAiChat`]: an [`LlmClient`] over `/chat/completions`.

use std::fmt;

use async_openai::types::chat::{
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
    ChatCompletionStreamOptions, CreateChatCompletionRequest, StopConfiguration,
};
use async_trait::async_trait;
use rag_core::{
    ChatRequest, ChatResponse, ChatStream, Error, FinishReason, LlmClient, Message, Result, Role,
    TokenEncoding, Usage,
};
use serde::Deserialize;

use crate::config::OpenAiConfig;
use crate::http::Http;

pub(crate) const CHAT_PATH: &str = "chat/completions";

/// A chat model behind an OpenAI-compatible `/chat/completions` endpoint.
///
/// `complete` sends one request; `stream` reads server-sent events and
/// yields text deltas, then one `Finish` with the usage (from the server's
/// final usage chunk when it sends one, otherwise counted locally with
/// tiktoken). Errors map as described in [`crate::error`].
///
/// ```no_run
/// use rag_llm_openai::OpenAiChat;
/// use rag_core::{ChatRequest, LlmClient, Message};
///
/// # async fn run() -> rag_core::Result<()> {
/// let llm = OpenAiChat::from_env()?; // OPENAI_API_KEY / OPENAI_BASE_URL / OPENAI_CHAT_MODEL
/// let answer = llm
///     .complete(ChatRequest::new(vec![Message::user("Say hi")]).with_max_tokens(16))
///     .await?;
/// println!("{} ({} tokens)", answer.text, answer.usage.total_tokens());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OpenAiChat {
    http: Http,
}

impl fmt::Debug for OpenAiChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiChat")
            .field("config", self.http.config())
            .finish()
    }
}

impl OpenAiChat {
    /// A client with this configuration.
    pub fn new(config: OpenAiConfig) -> Result<Self> {
        Ok(Self {
            http: Http::new(config)?,
        })
    }

    /// A client configured from the environment ([`OpenAiConfig::from_env`]).
    pub fn from_env() -> Result<Self> {
        Self::new(OpenAiConfig::from_env()?)
    }

    /// The configuration.
    pub fn config(&self) -> &OpenAiConfig {
        self.http.config()
    }

    /// Tokens of `messages` as the chat format counts them locally (content
    /// plus a few tokens of framing per message), with the configured
    /// encoding. An estimate for models that are not OpenAI's.
    pub fn count_prompt_tokens(&self, messages: &[Message]) -> usize {
        count_prompt(self.config().chat_encoding(), messages)
    }

    fn wire_request(
        &self,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<CreateChatCompletionRequest> {
        if request.messages.is_empty() {
            return Err(Error::invalid_input(
                "a chat request needs at least one message",
            ));
        }
        let config = self.config();
        let messages = request
            .messages
            .iter()
            .map(|m| match m.role {
                Role::System => ChatCompletionRequestSystemMessage::from(m.content.clone()).into(),
                Role::User => ChatCompletionRequestUserMessage::from(m.content.clone()).into(),
                Role::Assistant => {
                    ChatCompletionRequestAssistantMessage::from(m.content.clone()).into()
                }
            })
            .collect::<Vec<ChatCompletionRequestMessage>>();
        let seed = request
            .seed
            .map(i64::try_from)
            .transpose()
            .map_err(|_| Error::invalid_input("seed must be at most i64::MAX"))?;
        // `seed` is deprecated in OpenAI's schema but still honoured by it
        // and by llama.cpp, vLLM and Ollama.
        #[allow(deprecated)]
        let mut wire = CreateChatCompletionRequest {
            model: config.chat_model.clone(),
            messages,
            temperature: request.temperature,
            seed,
            stop: (!request.stop.is_empty())
                .then(|| StopConfiguration::StringArray(request.stop.clone())),
            ..CreateChatCompletionRequest::default()
        };
        if config.max_completion_tokens_field {
            wire.max_completion_tokens = request.max_tokens;
        } else {
            #[allow(deprecated)]
            {
                wire.max_tokens = request.max_tokens;
            }
        }
        if stream {
            wire.stream = Some(true);
            if config.stream_usage {
                wire.stream_options = Some(ChatCompletionStreamOptions {
                    include_usage: Some(true),
                    include_obfuscation: None,
                });
            }
        }
        Ok(wire)
    }
}

#[async_trait]
impl LlmClient for OpenAiChat {
    fn model_id(&self) -> &str {
        &self.config().chat_model
    }

    fn context_window(&self) -> usize {
        self.config().chat_context_window()
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatResponse> {
        let wire = self.wire_request(&request, false)?;
        let mapper = self.http.mapper(CHAT_PATH, (0, self.context_window()));
        let response = self
            .http
            .post(CHAT_PATH, &wire, &mapper, false)
            .await
            .map_err(|e| self.with_prompt_count(e, &request.messages))?;
        let body: ChatCompletion = self.http.json(response, &mapper).await?;
        let choice = body
            .choices
            .into_iter()
            .next()
            .ok_or_else(|| mapper.protocol("the response has no choices"))?;
        let text = choice.message.and_then(|m| m.content).unwrap_or_default();
        let usage = match body.usage {
            Some(u) => u.into(),
            None => Usage {
                prompt_tokens: saturate(self.count_prompt_tokens(&request.messages)),
                completion_tokens: saturate(self.config().chat_encoding().count(&text)),
            },
        };
        Ok(ChatResponse {
            text,
            usage,
            finish_reason: finish_reason(choice.finish_reason.as_deref()),
            model: body
                .model
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| self.config().chat_model.clone()),
            extractive: false,
        })
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream> {
        let wire = self.wire_request(&request, true)?;
        let mapper = self.http.mapper(CHAT_PATH, (0, self.context_window()));
        let response = self
            .http
            .post(CHAT_PATH, &wire, &mapper, true)
            .await
            .map_err(|e| self.with_prompt_count(e, &request.messages))?;
        Ok(crate::stream::chat_stream(
            response,
            self.http.config_arc(),
            request.messages,
        ))
    }
}

impl OpenAiChat {
    /// Fills in the prompt size of a context-length error whose body named
    /// no numbers.
    fn with_prompt_count(&self, err: Error, messages: &[Message]) -> Error {
        match err {
            Error::ContextLengthExceeded { tokens: 0, limit } => Error::ContextLengthExceeded {
                tokens: self.count_prompt_tokens(messages),
                limit,
            },
            other => other,
        }
    }
}

/// The prompt's tokens by the rule the pipeline packs with
/// ([`rag_core::chat::prompt_tokens`]).
pub(crate) fn count_prompt(encoding: TokenEncoding, messages: &[Message]) -> usize {
    rag_core::chat::prompt_tokens(messages, |text| encoding.count(text))
}

pub(crate) fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

pub(crate) fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        None | Some("stop") | Some("eos") | Some("end_turn") => FinishReason::Stop,
        Some("length") | Some("max_tokens") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        Some(_) => FinishReason::Other,
    }
}

// Lenient response types: async-openai's response structs require fields
// that compatible servers omit (`id`, `created`, `object`) and have closed
// enums (`service_tier`, `finish_reason`) that reject values servers do send
// (Groq's `service_tier: "on_demand"`), so responses are read with these.

#[derive(Debug, Deserialize)]
struct ChatCompletion {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub(crate) struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_the_options() {
        let chat = OpenAiChat::new(OpenAiConfig::new().with_chat_model("m")).unwrap();
        let req = ChatRequest::new(vec![
            Message::system("s"),
            Message::user("u"),
            Message::assistant("a"),
        ])
        .with_temperature(0.2)
        .with_max_tokens(7)
        .with_stop(vec!["END".into()])
        .with_seed(42);
        let wire = serde_json::to_value(chat.wire_request(&req, true).unwrap()).unwrap();
        assert_eq!(wire["model"], "m");
        assert_eq!(wire["messages"][0]["role"], "system");
        assert_eq!(wire["messages"][1]["role"], "user");
        assert_eq!(wire["messages"][2]["role"], "assistant");
        assert_eq!(wire["messages"][1]["content"], "u");
        assert!((wire["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
        assert_eq!(wire["max_tokens"], 7);
        assert_eq!(wire["stop"], serde_json::json!(["END"]));
        assert_eq!(wire["seed"], 42);
        assert_eq!(wire["stream"], true);
        assert_eq!(wire["stream_options"]["include_usage"], true);

        let plain = serde_json::to_value(
            chat.wire_request(&ChatRequest::new(vec![Message::user("u")]), false)
                .unwrap(),
        )
        .unwrap();
        for absent in [
            "stream",
            "stream_options",
            "stop",
            "seed",
            "max_tokens",
            "temperature",
        ] {
            assert!(plain.get(absent).is_none(), "{absent} sent: {plain}");
        }

        let chat = OpenAiChat::new(
            OpenAiConfig::new()
                .with_max_completion_tokens_field(true)
                .with_stream_usage(false),
        )
        .unwrap();
        let wire = serde_json::to_value(chat.wire_request(&req, true).unwrap()).unwrap();
        assert_eq!(wire["max_completion_tokens"], 7);
        assert!(wire.get("max_tokens").is_none());
        assert!(wire.get("stream_options").is_none());

        assert!(matches!(
            chat.wire_request(&ChatRequest::new(vec![]), false),
            Err(Error::InvalidInput { .. })
        ));
        assert!(matches!(
            chat.wire_request(
                &ChatRequest::new(vec![Message::user("u")]).with_seed(u64::MAX),
                false
            ),
            Err(Error::InvalidInput { .. })
        ));
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason(None), FinishReason::Stop);
        assert_eq!(finish_reason(Some("stop")), FinishReason::Stop);
        assert_eq!(finish_reason(Some("length")), FinishReason::Length);
        assert_eq!(
            finish_reason(Some("content_filter")),
            FinishReason::ContentFilter
        );
        assert_eq!(finish_reason(Some("tool_calls")), FinishReason::Other);
    }
}
