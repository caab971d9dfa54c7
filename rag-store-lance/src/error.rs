//! LanceDB errors → [`rag_core::Error`].

use rag_core::Error;

use crate::store::BACKEND;

/// `message` with any `scheme://user:password@` credentials removed.
pub(crate) fn redacted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        let authority_end = tail[..end].find('/').unwrap_or(end);
        match tail[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("<redacted>@");
                rest = &tail[at + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// Maps a LanceDB error. I/O and object-store failures, commit conflicts
/// and timeouts are transient; the rest will fail again.
pub(crate) fn map_err(e: lancedb::Error) -> Error {
    let message = redacted(&e.to_string());
    match e {
        lancedb::Error::TableCorrupted { name, .. } => Error::Corrupt {
            location: format!("lance table {name}"),
            message,
        },
        lancedb::Error::Timeout { .. } => Error::backend(BACKEND, true, message),
        lancedb::Error::ObjectStore { .. } => Error::backend(BACKEND, true, message),
        lancedb::Error::Lance { source } => {
            let retryable = matches!(
                source,
                lance_core::Error::IO { .. }
                    | lance_core::Error::CommitConflict { .. }
                    | lance_core::Error::RetryableCommitConflict { .. }
                    | lance_core::Error::TooMuchWriteContention { .. }
                    | lance_core::Error::Timeout { .. }
            );
            Error::backend(BACKEND, retryable, message)
        }
        _ => Error::backend(BACKEND, false, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed() {
        assert_eq!(
            redacted("cannot open s3://key:secret@bucket/db: denied"),
            "cannot open s3://<redacted>@bucket/db: denied"
        );
        assert_eq!(redacted("file:///tmp/x is fine"), "file:///tmp/x is fine");
        assert_eq!(redacted("no uri here"), "no uri here");
    }
}
