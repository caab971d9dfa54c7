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

/// Operating-system errors a retry cannot fix: the disk is full (28), the
/// quota spent (122), the file system read-only (30), access denied (13).
/// Rust prints every `std::io::Error` from the OS as `… (os error N)`,
/// however deep in LanceDB's and object_store's error chains it sits.
const LASTING_OS_ERRORS: [&str; 4] = [
    "(os error 28)",
    "(os error 122)",
    "(os error 30)",
    "(os error 13)",
];

/// Maps a LanceDB error. I/O and object-store failures, commit conflicts
/// and timeouts are transient — except a full disk, a spent quota, a
/// read-only file system or denied access, which fail at once instead of
/// being retried; the rest will fail again.
pub(crate) fn map_err(e: lancedb::Error) -> Error {
    let message = redacted(&e.to_string());
    if LASTING_OS_ERRORS.iter().any(|m| message.contains(m)) {
        return Error::backend(BACKEND, false, message);
    }
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
    fn a_full_disk_is_not_retried() {
        let io = std::io::Error::from_raw_os_error(28);
        let full = lancedb::Error::Lance {
            source: lance_core::Error::io(format!("Unable to copy data to file: {io}")),
        };
        assert!(!map_err(full).is_retryable());
        let flaky = lancedb::Error::Lance {
            source: lance_core::Error::io("connection reset by peer".to_owned()),
        };
        assert!(map_err(flaky).is_retryable());
    }

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
