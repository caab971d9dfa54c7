//! How failures of an OpenAI-compatible server map into [`rag_core::Error`].
//!
//! | what happened | `rag_core::Error` |
//! |---|---|
//! | HTTP 429 | `RateLimited { retry_after }` from the headers (`retry-after-ms`, `Retry-After`, `x-ratelimit-reset-*`); `Backend { retryable: false }` for `insufficient_quota` |
//! | HTTP 408, 5xx, connection refused or reset | `Backend { retryable: true }` |
//! | a timeout (connect, request, silence in a stream) | `Timeout` (retryable) |
//! | HTTP 400/413/422 saying the context is too long | `ContextLengthExceeded { tokens, limit }` |
//! | other HTTP 400/413/422 | `InvalidInput` |
//! | HTTP 401/403 | `Unauthorized` |
//! | HTTP 404 (unknown model, wrong base URL) | `NotFound` |
//! | malformed JSON, a stream without `[DONE]`, a response missing its parts | `Backend { retryable: false }`, a protocol error saying what was wrong |
//! | an error event inside a stream | mapped by its `code`/`type` as above, as an error item after the deltas already delivered |
//!
//! Every message coming from the server passes through a redaction that
//! removes the API key, so a server echoing the key never leaks it into
//! `Display`, `Debug` or logs.

use std::time::Duration;

use rag_core::Error;
use serde_json::Value;

/// Response headers, as seen by a [`crate::RetryAfterParser`].
#[derive(Clone, Copy, Debug)]
pub struct ResponseHeaders<'a> {
    inner: Inner<'a>,
}

#[derive(Clone, Copy, Debug)]
enum Inner<'a> {
    Map(&'a reqwest::header::HeaderMap),
    Pairs(&'a [(&'a str, &'a str)]),
}

impl<'a> ResponseHeaders<'a> {
    pub(crate) fn new(map: &'a reqwest::header::HeaderMap) -> Self {
        Self {
            inner: Inner::Map(map),
        }
    }

    /// Headers from name/value pairs (for tests of a parser).
    pub fn from_pairs(pairs: &'a [(&'a str, &'a str)]) -> Self {
        Self {
            inner: Inner::Pairs(pairs),
        }
    }

    /// The value of a header (name case-insensitive), when present and text.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        match self.inner {
            Inner::Map(map) => map.get(name).and_then(|v| v.to_str().ok()),
            Inner::Pairs(pairs) => pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v),
        }
    }
}

/// The default [`crate::RetryAfterParser`]: `retry-after-ms`, then
/// `Retry-After` (seconds or an HTTP date), then [`ratelimit_reset`].
pub fn default_retry_after(headers: &ResponseHeaders<'_>) -> Option<Duration> {
    headers
        .get("retry-after-ms")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| headers.get("retry-after").and_then(parse_retry_after))
        .or_else(|| ratelimit_reset(headers))
}

/// The wait from the `x-ratelimit-reset-requests` / `x-ratelimit-reset-tokens`
/// headers that OpenAI and Groq send: the reset of the exhausted limit (its
/// `x-ratelimit-remaining-*` is 0), the longer one when both or neither are
/// known to be exhausted.
pub fn ratelimit_reset(headers: &ResponseHeaders<'_>) -> Option<Duration> {
    let limits = ["requests", "tokens"].map(|kind| {
        let reset = headers
            .get(&format!("x-ratelimit-reset-{kind}"))
            .and_then(parse_reset_duration);
        let exhausted = headers
            .get(&format!("x-ratelimit-remaining-{kind}"))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .is_some_and(|n| n <= 0.0);
        (reset, exhausted)
    });
    let exhausted = limits
        .iter()
        .filter(|(_, ex)| *ex)
        .filter_map(|(r, _)| *r)
        .max();
    exhausted.or_else(|| limits.iter().filter_map(|(r, _)| *r).max())
}

/// Parses a `Retry-After` value: whole or decimal seconds, or an HTTP date
/// (the wait until then, 0 if past).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Parses a Go-style duration as in `x-ratelimit-reset-*` headers:
/// `2m59.56s`, `7.66s`, `120ms`, `1h2m3s`, `6m0s`; a bare number is seconds.
pub fn parse_reset_duration(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0f64;
    let mut rest = value;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    total.is_finite().then(|| Duration::from_secs_f64(total))
}

/// The adapter's own error, kept as the `source` of the mapped
/// [`rag_core::Error`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenAiError {
    /// The server answered with an error status.
    #[error("HTTP {status} from {operation}: {message}")]
    Status {
        status: u16,
        operation: String,
        message: String,
    },
    /// The request did not get through (connect, reset, body read).
    #[error("{operation} failed: {message}")]
    Transport { operation: String, message: String },
    /// The server spoke something other than the protocol.
    #[error("protocol error in {operation}: {message}")]
    Protocol { operation: String, message: String },
    /// An error event in a stream.
    #[error("error event in the stream of {operation}: {message}")]
    StreamEvent { operation: String, message: String },
}

/// What the server said in an error body.
#[derive(Debug, Default)]
pub(crate) struct ErrorInfo {
    pub(crate) message: String,
    pub(crate) code: Option<String>,
    pub(crate) kind: Option<String>,
    /// llama.cpp's `n_prompt_tokens` / `n_ctx`.
    pub(crate) tokens: Option<usize>,
    pub(crate) limit: Option<usize>,
    /// A numeric `code` inside the error object (llama.cpp puts the status
    /// there, also in stream error events).
    pub(crate) status: Option<u16>,
}

impl ErrorInfo {
    /// Reads `{"error": {...}}`, `{"error": "..."}`, `{"message": ...}` or
    /// `{"detail": ...}`, falling back to the raw text.
    pub(crate) fn parse(body: &[u8]) -> Self {
        let text = || {
            let s = String::from_utf8_lossy(body);
            let s = s.trim();
            if s.is_empty() {
                "(empty body)".to_owned()
            } else {
                truncate(s, 300)
            }
        };
        match serde_json::from_slice::<Value>(body) {
            Ok(v) => Self::from_value(&v).unwrap_or_else(|| Self {
                message: text(),
                ..Self::default()
            }),
            Err(_) => Self {
                message: text(),
                ..Self::default()
            },
        }
    }

    pub(crate) fn from_value(v: &Value) -> Option<Self> {
        let obj = match v.get("error") {
            Some(Value::String(s)) => {
                return Some(Self {
                    message: s.clone(),
                    ..Self::default()
                });
            }
            Some(e @ Value::Object(_)) => e,
            _ if v.get("message").is_some() || v.get("detail").is_some() => v,
            _ => return None,
        };
        let string = |key: &str| match obj.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let number = |key: &str| obj.get(key).and_then(Value::as_u64).map(|n| n as usize);
        let message = string("message")
            .or_else(|| obj.get("detail").map(|d| truncate(&d.to_string(), 300)))
            .unwrap_or_else(|| truncate(&obj.to_string(), 300));
        Some(Self {
            message,
            code: string("code"),
            kind: string("type"),
            tokens: number("n_prompt_tokens"),
            limit: number("n_ctx"),
            status: obj
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok()),
        })
    }

    fn has(&self, needle: &str) -> bool {
        [self.code.as_deref(), self.kind.as_deref()]
            .into_iter()
            .flatten()
            .any(|s| s.contains(needle))
    }

    fn is_context_length(&self) -> bool {
        let m = self.message.to_ascii_lowercase();
        self.has("context_length_exceeded")
            || self.has("exceed_context_size")
            || m.contains("maximum context length")
            || m.contains("context_length_exceeded")
            || (m.contains("context") && (m.contains("exceed") || m.contains("too long")))
    }

    /// `(tokens, limit)` from the fields or the message ("maximum context
    /// length is 8192 tokens. However, your messages resulted in 9000
    /// tokens").
    fn context_numbers(&self) -> (Option<usize>, Option<usize>) {
        let m = self.message.to_ascii_lowercase();
        let after = |marker: &str| {
            let i = m.find(marker)? + marker.len();
            let digits: String = m[i..]
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == ',')
                .filter(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        let limit = self
            .limit
            .or_else(|| after("maximum context length is"))
            .or_else(|| after("context length is"))
            .or_else(|| after("context size"));
        let tokens = self
            .tokens
            .or_else(|| after("resulted in"))
            .or_else(|| after("you requested"))
            .or_else(|| after("requested"));
        (tokens, limit)
    }
}

/// Maps server failures for one operation of one client.
#[derive(Clone, Debug)]
pub(crate) struct ErrorMapper<'a> {
    pub(crate) provider: &'a str,
    pub(crate) operation: &'a str,
    pub(crate) api_key: Option<&'a str>,
    /// Local estimate of the prompt tokens and the configured window, for a
    /// context-length error whose message carries no numbers.
    pub(crate) context: (usize, usize),
}

impl ErrorMapper<'_> {
    pub(crate) fn redact(&self, text: &str) -> String {
        match self.api_key {
            Some(key) if !key.is_empty() => text.replace(key, "[REDACTED]"),
            _ => text.to_owned(),
        }
    }

    /// An error HTTP status with its body and headers.
    pub(crate) fn status(
        &self,
        status: u16,
        headers: &ResponseHeaders<'_>,
        body: &[u8],
        retry_after: crate::RetryAfterParser,
    ) -> Error {
        let mut info = ErrorInfo::parse(body);
        info.message = self.redact(&info.message);
        let source = OpenAiError::Status {
            status,
            operation: self.operation.to_owned(),
            message: info.message.clone(),
        };
        match status {
            429 if info.has("insufficient_quota") => Error::backend_with_source(
                self.provider,
                false,
                format!("insufficient quota (HTTP 429): {}", info.message),
                source,
            ),
            429 => Error::RateLimited {
                retry_after: retry_after(headers),
            },
            401 | 403 => Error::Unauthorized {
                message: format!("{} (HTTP {status}): {}", self.provider, info.message),
            },
            400 | 413 | 422 if info.is_context_length() => self.context_length(&info),
            400 | 413 | 422 => Error::invalid_input(format!(
                "{} rejected the request (HTTP {status}): {}",
                self.provider, info.message
            )),
            404 => Error::not_found(format!(
                "{} {} (HTTP 404): {}",
                self.provider, self.operation, info.message
            )),
            408 | 500..=599 => Error::backend_with_source(
                self.provider,
                true,
                format!("HTTP {status} from {}: {}", self.operation, info.message),
                source,
            ),
            _ => Error::backend_with_source(
                self.provider,
                false,
                format!("HTTP {status} from {}: {}", self.operation, info.message),
                source,
            ),
        }
    }

    fn context_length(&self, info: &ErrorInfo) -> Error {
        let (tokens, limit) = info.context_numbers();
        Error::ContextLengthExceeded {
            tokens: tokens.unwrap_or(self.context.0),
            limit: limit.unwrap_or(self.context.1),
        }
    }

    /// An error event inside a stream (`data: {"error": …}`).
    pub(crate) fn stream_event(&self, value: &Value) -> Error {
        let mut info = ErrorInfo::from_value(value).unwrap_or_default();
        info.message = self.redact(&info.message);
        let source = OpenAiError::StreamEvent {
            operation: self.operation.to_owned(),
            message: info.message.clone(),
        };
        if info.is_context_length() {
            return self.context_length(&info);
        }
        if info.has("rate_limit") || info.status == Some(429) {
            return Error::RateLimited { retry_after: None };
        }
        let transient = info.has("server_error")
            || info.has("overloaded")
            || info.has("internal")
            || info.has("unavailable")
            || info.has("timeout")
            || info.status.is_some_and(|s| s == 408 || s >= 500);
        Error::backend_with_source(
            self.provider,
            transient,
            format!(
                "error event in the stream of {}: {}",
                self.operation, info.message
            ),
            source,
        )
    }

    /// A transport failure from reqwest.
    pub(crate) fn transport(&self, err: &reqwest::Error, timeout: std::time::Duration) -> Error {
        let message = self.redact(&error_chain(err));
        if err.is_timeout() {
            return Error::Timeout {
                operation: format!("{} {}", self.provider, self.operation),
                elapsed: timeout,
            };
        }
        if err.is_builder() {
            return Error::invalid_input(format!(
                "{}: cannot build the request: {message}",
                self.provider
            ));
        }
        let source = OpenAiError::Transport {
            operation: self.operation.to_owned(),
            message: message.clone(),
        };
        Error::backend_with_source(
            self.provider,
            true,
            format!("{} failed: {message}", self.operation),
            source,
        )
    }

    /// A protocol violation: malformed JSON, a missing `[DONE]`, …
    pub(crate) fn protocol(&self, message: impl Into<String>) -> Error {
        let message = self.redact(&message.into());
        let source = OpenAiError::Protocol {
            operation: self.operation.to_owned(),
            message: message.clone(),
        };
        Error::backend_with_source(
            self.provider,
            false,
            format!("protocol error in {}: {message}", self.operation),
            source,
        )
    }
}

/// An error and its sources on one line (reqwest's own `Display` hides the
/// cause, like "connection refused").
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

pub(crate) fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max_chars).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let d = |s| parse_reset_duration(s);
        assert_eq!(d("2m59.56s"), Some(Duration::from_secs_f64(179.56)));
        assert_eq!(d("7.66s"), Some(Duration::from_secs_f64(7.66)));
        assert_eq!(d("120ms"), Some(Duration::from_millis(120)));
        assert_eq!(d("1h2m3s"), Some(Duration::from_secs(3723)));
        assert_eq!(d("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(d("3"), Some(Duration::from_secs(3)));
        assert_eq!(d(""), None);
        assert_eq!(d("soon"), None);
        assert_eq!(d("5x"), None);
        assert_eq!(d("m5"), None);
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(parse_retry_after("12"), Some(Duration::from_secs(12)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let future = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let wait = parse_retry_after(&future).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("later"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn default_parser_precedence() {
        let h = [("Retry-After", "3"), ("retry-after-ms", "1500")];
        assert_eq!(
            default_retry_after(&ResponseHeaders::from_pairs(&h)),
            Some(Duration::from_millis(1500))
        );
        let h = [("Retry-After", "3"), ("x-ratelimit-reset-tokens", "9s")];
        assert_eq!(
            default_retry_after(&ResponseHeaders::from_pairs(&h)),
            Some(Duration::from_secs(3))
        );
        let h = [
            ("x-ratelimit-remaining-requests", "10"),
            ("x-ratelimit-reset-requests", "2m59.56s"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "7.66s"),
        ];
        assert_eq!(
            default_retry_after(&ResponseHeaders::from_pairs(&h)),
            Some(Duration::from_secs_f64(7.66))
        );
        let h = [
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-reset-tokens", "120ms"),
        ];
        assert_eq!(
            default_retry_after(&ResponseHeaders::from_pairs(&h)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(default_retry_after(&ResponseHeaders::from_pairs(&[])), None);
    }

    fn mapper() -> ErrorMapper<'static> {
        ErrorMapper {
            provider: "openai",
            operation: "chat/completions",
            api_key: Some("sk-secret-key-1"),
            context: (111, 222),
        }
    }

    fn map(status: u16, body: &str) -> Error {
        mapper().status(
            status,
            &ResponseHeaders::from_pairs(&[("retry-after", "2")]),
            body.as_bytes(),
            default_retry_after,
        )
    }

    #[test]
    fn status_mapping() {
        assert!(matches!(
            map(429, r#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#),
            Error::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(2)
        ));
        let quota = map(
            429,
            r#"{"error":{"message":"You exceeded your quota","code":"insufficient_quota"}}"#,
        );
        assert!(!quota.is_retryable(), "{quota:?}");
        assert!(matches!(map(401, "{}"), Error::Unauthorized { .. }));
        assert!(matches!(map(403, "forbidden"), Error::Unauthorized { .. }));
        assert!(matches!(
            map(404, r#"{"error":"model not found"}"#),
            Error::NotFound { .. }
        ));
        for s in [408, 500, 502, 503, 504] {
            let e = map(s, "oops");
            assert!(
                matches!(
                    e,
                    Error::Backend {
                        retryable: true,
                        ..
                    }
                ),
                "{s}: {e:?}"
            );
        }
        assert!(matches!(
            map(
                400,
                r#"{"error":{"message":"bad temperature","code":null}}"#
            ),
            Error::InvalidInput { .. }
        ));
        assert!(matches!(
            map(418, "teapot"),
            Error::Backend {
                retryable: false,
                ..
            }
        ));
    }

    #[test]
    fn context_length_mapping() {
        let openai = r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9,000 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#;
        assert!(matches!(
            map(400, openai),
            Error::ContextLengthExceeded {
                tokens: 9000,
                limit: 8192
            }
        ));
        let llama = r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":3000,"n_ctx":2048}}"#;
        assert!(matches!(
            map(400, llama),
            Error::ContextLengthExceeded {
                tokens: 3000,
                limit: 2048
            }
        ));
        let bare = r#"{"error":{"message":"prompt too long","code":"context_length_exceeded"}}"#;
        assert!(matches!(
            map(400, bare),
            Error::ContextLengthExceeded {
                tokens: 111,
                limit: 222
            }
        ));
    }

    #[test]
    fn messages_never_contain_the_key() {
        let body = r#"{"error":{"message":"Incorrect API key provided: sk-secret-key-1. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        for status in [400, 401, 404, 500, 418] {
            let e = map(status, body);
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("sk-secret-key-1"), "{shown}");
        }
        let e = mapper().protocol("echo sk-secret-key-1");
        assert!(!format!("{e} {e:?}").contains("sk-secret-key-1"));
        let e =
            mapper().stream_event(&serde_json::json!({"error": {"message": "sk-secret-key-1"}}));
        assert!(!format!("{e} {e:?}").contains("sk-secret-key-1"));
    }

    #[test]
    fn stream_events() {
        let m = mapper();
        let e = m.stream_event(
            &serde_json::json!({"error": {"message": "overloaded", "type": "server_error"}}),
        );
        assert!(e.is_retryable(), "{e:?}");
        let e = m.stream_event(
            &serde_json::json!({"error": {"message": "bad", "type": "invalid_request_error"}}),
        );
        assert!(!e.is_retryable(), "{e:?}");
        let e = m.stream_event(&serde_json::json!({"error": {"message": "x", "code": 503}}));
        assert!(e.is_retryable(), "{e:?}");
        let e = m.stream_event(
            &serde_json::json!({"error": {"message": "x", "code": "rate_limit_exceeded"}}),
        );
        assert!(matches!(e, Error::RateLimited { .. }));
    }
}
