//! The crate's private error and its mapping into [`rag_core::Error`].

use rag_core::Error;

pub(crate) const BACKEND: &str = "pgvector";

/// A database error, kept as the `source` of the [`Error::Backend`] it maps
/// to.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct PgError(#[from] pub(crate) sqlx::Error);

/// SQLSTATEs after which the same call may succeed: connection exceptions
/// (class 08), serialization failures and deadlocks (class 40), operator
/// intervention such as `pg_terminate_backend` or a restart (class 57),
/// insufficient resources (class 53) and lock timeouts.
fn retryable_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("40")
        || code.starts_with("53")
        || code.starts_with("57")
        || code == "55P03"
}

impl PgError {
    fn retryable(&self) -> bool {
        match &self.0 {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|c| retryable_sqlstate(&c)),
            _ => false,
        }
    }

    fn message(&self) -> String {
        match &self.0 {
            sqlx::Error::Database(db) => match db.code() {
                Some(code) => format!("{} (SQLSTATE {code})", db.message()),
                None => db.message().to_owned(),
            },
            // Never the URL: sqlx's configuration errors can quote it.
            sqlx::Error::Configuration(_) => "invalid connection configuration".to_owned(),
            other => other.to_string(),
        }
    }
}

impl From<PgError> for Error {
    fn from(e: PgError) -> Self {
        let retryable = e.retryable();
        let message = e.message();
        match e.0 {
            // Connection-level configuration errors can quote the URL, and
            // with it the password: keep only the message above.
            sqlx::Error::Configuration(_) => Error::backend(BACKEND, false, message),
            _ => Error::backend_with_source(BACKEND, retryable, message, e),
        }
    }
}

/// `map_err` helper: a sqlx error as a [`rag_core::Error`].
pub(crate) fn db(e: sqlx::Error) -> Error {
    PgError(e).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let io = db(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )));
        assert!(io.is_retryable(), "{io}");
        assert!(db(sqlx::Error::PoolTimedOut).is_retryable());
        let decode = db(sqlx::Error::RowNotFound);
        assert!(!decode.is_retryable());
        let cfg = db(sqlx::Error::Configuration(
            "bad url postgres://u:hunter2@h/db".into(),
        ));
        assert!(!cfg.to_string().contains("hunter2"), "{cfg}");
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert!(retryable_sqlstate("57P01"));
        assert!(retryable_sqlstate("08006"));
        assert!(retryable_sqlstate("40001"));
        assert!(!retryable_sqlstate("23505"));
        assert!(!retryable_sqlstate("42601"));
    }
}
