//! Qdrant errors → [`rag_core::Error`].

use std::time::Duration;

use qdrant_client::QdrantError;
use rag_core::Error;
use tonic::Code;

/// Backend name used in errors and capabilities.
pub const BACKEND: &str = "qdrant";

/// Maps a client error. Unavailable servers, deadlines, aborted and
/// resource-exhausted calls are transient; bad requests are `InvalidInput`,
/// a wrong key `Unauthorized`, the rest permanent backend errors. Messages
/// carry the server's text, never the API key (the client never puts
/// request headers into errors).
pub(crate) fn map_err(e: QdrantError) -> Error {
    match e {
        QdrantError::ResourceExhaustedError {
            retry_after_seconds,
            ..
        } => Error::RateLimited {
            retry_after: Some(Duration::from_secs(retry_after_seconds)),
        },
        QdrantError::ResponseError { status } => map_status(&status),
        QdrantError::Io(e) => Error::backend(BACKEND, true, format!("i/o: {e}")),
        other => Error::backend(BACKEND, false, other.to_string()),
    }
}

fn map_status(status: &tonic::Status) -> Error {
    let message = format!("{:?}: {}", status.code(), status.message());
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange => {
            Error::invalid_input(format!("qdrant: {message}"))
        }
        Code::Unauthenticated | Code::PermissionDenied => Error::Unauthorized { message },
        Code::NotFound => Error::NotFound {
            what: format!("qdrant: {}", status.message()),
        },
        Code::ResourceExhausted => Error::RateLimited { retry_after: None },
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::Cancelled => {
            Error::backend(BACKEND, true, message)
        }
        // The client reports a refused or reset connection as Internal or
        // Unknown with a transport message.
        Code::Unknown | Code::Internal if is_transport(status.message()) => {
            Error::backend(BACKEND, true, message)
        }
        _ => Error::backend(BACKEND, false, message),
    }
}

fn is_transport(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "transport error",
        "failed to connect",
        "tcp connect error",
        "connection",
        "broken pipe",
        "h2 protocol",
    ]
    .iter()
    .any(|s| m.contains(s))
}

/// Whether a client error says a collection does not exist.
pub(crate) fn is_missing_collection(e: &QdrantError) -> bool {
    match e {
        QdrantError::ResponseError { status } => {
            status.code() == Code::NotFound
                || (status.message().contains("Collection") && status.message().contains("exist"))
        }
        _ => false,
    }
}

/// Whether a client error says a collection already exists.
pub(crate) fn is_already_exists(e: &QdrantError) -> bool {
    match e {
        QdrantError::ResponseError { status } => {
            status.code() == Code::AlreadyExists || status.message().contains("already exists")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_meaning() {
        let e = |code, msg: &str| {
            map_err(QdrantError::ResponseError {
                status: tonic::Status::new(code, msg),
            })
        };
        assert!(matches!(
            e(Code::InvalidArgument, "bad"),
            Error::InvalidInput { .. }
        ));
        assert!(matches!(
            e(Code::Unauthenticated, "no key"),
            Error::Unauthorized { .. }
        ));
        assert!(e(Code::Unavailable, "down").is_retryable());
        assert!(e(Code::Unknown, "transport error").is_retryable());
        assert!(!e(Code::Internal, "boom").is_retryable());
        let limited = map_err(QdrantError::ResourceExhaustedError {
            status: tonic::Status::new(Code::ResourceExhausted, "slow down"),
            retry_after_seconds: 3,
        });
        assert!(matches!(
            limited,
            Error::RateLimited {
                retry_after: Some(d)
            } if d == Duration::from_secs(3)
        ));
    }
}
