#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod chat;
mod config;
mod embed;
pub mod error;
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz;
mod http;
mod stream;

pub use chat::OpenAiChat;
pub use config::{
    DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL, OPENAI_BASE_URL, OpenAiConfig, RetryAfterParser,
    encoding_for_model, known_context_window, known_embedding_dimensions,
};
pub use embed::OpenAiEmbedder;
pub use error::{
    ResponseHeaders, default_retry_after, parse_reset_duration, parse_retry_after, ratelimit_reset,
};

pub use rag_core;
