//! The one error type of the workspace.
//!
//! Every adapter keeps a private error of its own and converts it into
//! [`Error`] with `From`, keeping the original as `source`. Callers match on
//! the variant to decide what to do, and layers such as retry ask
//! [`Error::is_retryable`].

use std::sync::Arc;
use std::time::Duration;

/// A boxed error usable as a `source`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A shared error: the `source` an [`Error`] keeps, so that errors are
/// `Clone` (one failure reported for every document of a batch, a cached
/// outcome handed to several waiters).
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error a `rag` component returns.
///
/// Variants carry meaning, not the backend they came from: a missing session
/// is [`Error::NotFound`] whether it lived in memory or in PostgreSQL. Messages
/// never contain secrets (API keys, passwords) and never contain document text.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller passed something malformed: an empty document, a filter on
    /// an invalid key, a vector of the wrong dimension, an oversized request.
    /// Nothing was changed.
    #[error("invalid input: {message}")]
    InvalidInput {
        /// What was wrong, naming the field or index where possible.
        message: String,
    },

    /// The named thing does not exist.
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for, for example `session 3f2a…`.
        what: String,
    },

    /// The backend cannot do this operation natively. Returned instead of a
    /// silently wrong answer.
    #[error("unsupported by {backend}: {operation}")]
    Unsupported {
        /// The backend that refused.
        backend: String,
        /// What was asked of it.
        operation: String,
    },

    /// A prompt (or an input to embed) is longer than the model accepts.
    #[error("context length exceeded: {tokens} tokens, limit {limit}")]
    ContextLengthExceeded {
        /// Tokens needed.
        tokens: usize,
        /// Tokens allowed.
        limit: usize,
    },

    /// The provider or a client-side limiter asks the caller to slow down.
    #[error("rate limited{}", retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default())]
    RateLimited {
        /// How long the provider asked us to wait, when it said.
        retry_after: Option<Duration>,
    },

    /// Credentials were missing, wrong or lacked permission.
    #[error("unauthorized: {message}")]
    Unauthorized {
        /// What the provider said, with any secret removed.
        message: String,
    },

    /// An operation did not finish in time.
    #[error("timed out after {elapsed:?}: {operation}")]
    Timeout {
        /// The operation that timed out.
        operation: String,
        /// How long it ran.
        elapsed: Duration,
    },

    /// Stored data is corrupt or was written by something else: a persisted
    /// file that fails its checksum, a table with a foreign schema.
    #[error("corrupt or incompatible data in {location}: {message}")]
    Corrupt {
        /// Where: a path, a table name.
        location: String,
        /// What did not match.
        message: String,
    },

    /// A backend (database, HTTP API, model runtime) failed.
    #[error("{backend} error{}: {message}", if *retryable { " (transient)" } else { "" })]
    Backend {
        /// Which backend: `pgvector`, `qdrant`, `openai`, …
        backend: String,
        /// Whether repeating the same call may succeed.
        retryable: bool,
        /// A one-line description.
        message: String,
        /// The backend's own error.
        #[source]
        source: Option<SharedError>,
    },

    /// A retry layer gave up; `last` is the error of the final attempt.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// How many attempts were made.
        attempts: u32,
        /// The last error seen.
        #[source]
        last: Box<Error>,
    },

    /// A circuit breaker is open: the backend behind it failed repeatedly
    /// and calls fail fast until the cool-down ends. Retryable, with the
    /// remaining cool-down as [`Error::retry_after`].
    #[error("circuit breaker {breaker} is open, retry after {retry_after:?}")]
    CircuitOpen {
        /// The breaker's name (usually the backend it guards).
        breaker: String,
        /// Time left until the breaker lets a probe through.
        retry_after: Duration,
    },

    /// The operation was cancelled (a dropped stream, a shutdown).
    #[error("cancelled: {0}")]
    Cancelled(String),

    /// A bounded resource is full: every slot of a local model is
    /// generating and its queue is full. Nothing was started; retry after
    /// `retry_after`.
    #[error(
        "{resource} is busy: {in_use} calls running and {queued} waiting, retry after {retry_after:?}"
    )]
    Overloaded {
        /// What is full (a model id).
        resource: String,
        /// Calls running.
        in_use: usize,
        /// Calls waiting for a slot.
        queued: usize,
        /// A suggested wait before retrying.
        retry_after: Duration,
    },
}

impl Error {
    /// `InvalidInput` with a message.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput {
            message: message.into(),
        }
    }

    /// `NotFound` naming what was looked for.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound { what: what.into() }
    }

    /// `Unsupported` for an operation on a backend.
    pub fn unsupported(backend: impl Into<String>, operation: impl Into<String>) -> Self {
        Self::Unsupported {
            backend: backend.into(),
            operation: operation.into(),
        }
    }

    /// A backend error without a source.
    pub fn backend(
        backend: impl Into<String>,
        retryable: bool,
        message: impl Into<String>,
    ) -> Self {
        Self::Backend {
            backend: backend.into(),
            retryable,
            message: message.into(),
            source: None,
        }
    }

    /// A backend error keeping its source.
    pub fn backend_with_source(
        backend: impl Into<String>,
        retryable: bool,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Backend {
            backend: backend.into(),
            retryable,
            message: message.into(),
            source: Some(Arc::from(source.into())),
        }
    }

    /// Whether the same call may succeed if repeated: rate limits, timeouts
    /// and transient backend failures. Everything else (bad input, missing
    /// things, auth, unsupported operations, corrupt data) will fail again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. }
            | Self::Timeout { .. }
            | Self::CircuitOpen { .. }
            | Self::Overloaded { .. } => true,
            Self::Backend { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// How long the provider asked to wait, for `RateLimited`, the
    /// remaining cool-down of an open circuit breaker, or the suggested wait
    /// of an `Overloaded` resource.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } => *retry_after,
            Self::CircuitOpen { retry_after, .. } | Self::Overloaded { retry_after, .. } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    /// A short stable name of the variant, for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidInput { .. } => "invalid_input",
            Self::NotFound { .. } => "not_found",
            Self::Unsupported { .. } => "unsupported",
            Self::ContextLengthExceeded { .. } => "context_length_exceeded",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Timeout { .. } => "timeout",
            Self::Corrupt { .. } => "corrupt",
            Self::Backend { .. } => "backend",
            Self::RetriesExhausted { .. } => "retries_exhausted",
            Self::CircuitOpen { .. } => "circuit_open",
            Self::Cancelled(_) => "cancelled",
            Self::Overloaded { .. } => "overloaded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cloned_error_keeps_its_variant_message_and_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "peer reset");
        let e = Error::RetriesExhausted {
            attempts: 3,
            last: Box::new(Error::backend_with_source(
                "pgvector",
                true,
                "query failed",
                io,
            )),
        };
        let copy = e.clone();
        assert_eq!(copy.to_string(), e.to_string());
        assert!(copy.is_retryable() == e.is_retryable());
        let Error::RetriesExhausted { last, .. } = &copy else {
            panic!("variant kept: {copy:?}")
        };
        let source = std::error::Error::source(last.as_ref()).expect("the source is kept");
        assert_eq!(source.to_string(), "peer reset");
    }

    #[test]
    fn retryable_classification() {
        assert!(Error::RateLimited { retry_after: None }.is_retryable());
        assert!(
            Error::Timeout {
                operation: "x".into(),
                elapsed: Duration::from_secs(1)
            }
            .is_retryable()
        );
        assert!(Error::backend("pg", true, "reset").is_retryable());
        assert!(!Error::backend("pg", false, "syntax").is_retryable());
        assert!(!Error::invalid_input("bad").is_retryable());
        assert!(!Error::not_found("x").is_retryable());
        let exhausted = Error::RetriesExhausted {
            attempts: 3,
            last: Box::new(Error::RateLimited { retry_after: None }),
        };
        assert!(!exhausted.is_retryable());
        assert!(exhausted.to_string().contains("3 attempts"));
        let open = Error::CircuitOpen {
            breaker: "openai".into(),
            retry_after: Duration::from_secs(5),
        };
        assert!(open.is_retryable());
        assert_eq!(open.retry_after(), Some(Duration::from_secs(5)));
        assert_eq!(open.kind(), "circuit_open");
    }

    #[test]
    fn display_mentions_retry_after() {
        let e = Error::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(e.to_string(), "rate limited, retry after 2s");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    }
}
