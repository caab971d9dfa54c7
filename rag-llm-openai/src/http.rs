//! The HTTP transport shared by the chat client and the embedder (and by
//! `rag-llm-groq` through them): one `reqwest` client with rustls, the key,
//! timeouts and the error mapping.

use std::sync::Arc;
use std::time::Duration;

use rag_core::{Error, Result};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::OpenAiConfig;
use crate::error::{ErrorMapper, ResponseHeaders};

#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    config: Arc<OpenAiConfig>,
}

impl Http {
    pub(crate) fn new(config: OpenAiConfig) -> Result<Self> {
        if config.base_url.trim().is_empty() {
            return Err(Error::invalid_input(format!(
                "{}: the base URL is empty",
                config.provider
            )));
        }
        // reqwest is built without a default crypto provider (to avoid
        // aws-lc's C build); use ring unless the application installed one.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.request_timeout)
            .user_agent(concat!("rag-llm-openai/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                Error::backend_with_source(
                    config.provider.clone(),
                    false,
                    "cannot build the HTTP client",
                    e,
                )
            })?;
        Ok(Self {
            client,
            config: Arc::new(config),
        })
    }

    pub(crate) fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    pub(crate) fn config_arc(&self) -> Arc<OpenAiConfig> {
        Arc::clone(&self.config)
    }

    pub(crate) fn mapper<'a>(
        &'a self,
        operation: &'a str,
        context: (usize, usize),
    ) -> ErrorMapper<'a> {
        mapper(&self.config, operation, context)
    }

    /// POSTs `body` as JSON to `path`; returns the response of a 2xx status,
    /// or the mapped error. Non-streaming requests are bounded by the request
    /// timeout as a whole; streams by the silence between reads.
    pub(crate) async fn post(
        &self,
        path: &str,
        body: &impl Serialize,
        mapper: &ErrorMapper<'_>,
        streaming: bool,
    ) -> Result<reqwest::Response> {
        let body = serde_json::to_vec(body)
            .map_err(|e| Error::invalid_input(format!("cannot serialize the request: {e}")))?;
        let mut request = self
            .client
            .post(self.config.url(path))
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = self.config.key() {
            request = request.bearer_auth(key);
        }
        request = if streaming {
            request.header(ACCEPT, "text/event-stream")
        } else {
            request
                .header(ACCEPT, "application/json")
                .timeout(self.config.request_timeout)
        };
        let response = request
            .send()
            .await
            .map_err(|e| mapper.transport(&e, self.timeout_of(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        tracing::debug!(
            provider = %self.config.provider,
            status = status.as_u16(),
            operation = mapper.operation,
            "request failed"
        );
        Err(mapper.status(
            status.as_u16(),
            &ResponseHeaders::new(&headers),
            &body,
            self.config.retry_after_parser,
        ))
    }

    /// Reads a whole JSON body.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
        mapper: &ErrorMapper<'_>,
    ) -> Result<T> {
        let bytes = response
            .bytes()
            .await
            .map_err(|e| mapper.transport(&e, self.timeout_of(&e)))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            mapper.protocol(format!(
                "malformed JSON in the response ({e}; {} bytes)",
                bytes.len()
            ))
        })
    }

    pub(crate) fn timeout_of(&self, err: &reqwest::Error) -> Duration {
        if err.is_connect() {
            self.config.connect_timeout
        } else {
            self.config.request_timeout
        }
    }
}

pub(crate) fn mapper<'a>(
    config: &'a OpenAiConfig,
    operation: &'a str,
    context: (usize, usize),
) -> ErrorMapper<'a> {
    ErrorMapper {
        provider: &config.provider,
        operation,
        api_key: config.key(),
        context,
    }
}
