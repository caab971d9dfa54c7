#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "candle")]
mod bert;
#[cfg(feature = "candle")]
mod chat;
#[cfg(feature = "candle")]
mod embed;
pub mod error;
#[cfg(feature = "candle")]
mod gguf_tokenizer;
mod models;
#[cfg(feature = "onnx")]
mod onnx_embed;
#[cfg(any(feature = "candle", feature = "onnx"))]
mod pooling;
#[cfg(feature = "onnx")]
mod rerank;
#[cfg(any(feature = "candle", feature = "onnx"))]
mod tokenize;

#[cfg(feature = "candle")]
pub use chat::{GenerationStats, LocalChat, LocalChatConfig, WeightFormat};
#[cfg(feature = "candle")]
pub use embed::{LocalEmbedder, LocalEmbedderConfig};
pub use error::FETCH_COMMAND;
pub use models::{
    BGE_DIR, BGE_QUERY_INSTRUCTION, CHAT_DIR, CHAT_FILE, EMBEDDER_DIR, LocalModels, MODELS_DIR_ENV,
    ONNXRUNTIME_LIBRARY, RERANKER_DIR, default_models_dir,
};
#[cfg(feature = "onnx")]
pub use onnx_embed::{OnnxEmbedder, OnnxEmbedderConfig};
#[cfg(any(feature = "candle", feature = "onnx"))]
pub use pooling::Pooling;
#[cfg(feature = "onnx")]
pub use rerank::{CrossEncoderConfig, CrossEncoderReranker, ScoreMode};

pub use rag_core;
