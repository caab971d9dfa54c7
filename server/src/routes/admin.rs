//! Backup and restore of a namespace (admin scope): `GET /v1/admin/export`
//! streams the namespace as a backup file (`rag::backup`: gzip JSON lines,
//! versioned, checksummed), `POST /v1/admin/import` restores one.
//!
//! Both routes sit outside the JSON body limit and the request deadline
//! (`[admin]`: `max_import_bytes`, `timeout_secs`). The file is spooled to
//! an anonymous temporary file on each side: an export is written whole
//! before its first byte is sent (so a failed export is an error status,
//! never a truncated `200`), and an import reads its file twice (verify,
//! then write).

use std::io::{Seek, SeekFrom};

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use rag::backup::ImportMode;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};

use super::ApiQuery;
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::state::AppState;

/// What to export.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// The tenant; defaults to the key's namespace or `default`.
    pub namespace: Option<String>,
    /// Also export the namespace's sessions with their messages.
    #[serde(default)]
    pub sessions: bool,
}

/// What to do with a namespace that already holds data.
#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportModeParam {
    /// Refuse it (`409`), writing nothing.
    #[default]
    Empty,
    /// Delete the namespace (and its sessions, with `sessions=true`) once the
    /// file is verified, then import.
    Replace,
    /// Keep it and skip documents already stored unchanged: finishes an
    /// import that stopped part-way.
    Resume,
}

/// Where and how to import.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// The tenant; defaults to the key's namespace or `default`.
    pub namespace: Option<String>,
    /// `empty` (default), `replace` or `resume`.
    #[serde(default)]
    #[param(inline)]
    pub mode: ImportModeParam,
    /// Also import the file's sessions (with new ids).
    #[serde(default)]
    pub sessions: bool,
}

/// What an import did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportResponse {
    /// The namespace written.
    pub namespace: String,
    /// The embedder the file was made with.
    pub model_id: String,
    /// Its dimensions.
    pub dimensions: usize,
    /// Documents written.
    pub documents_written: u64,
    /// Chunks written.
    pub chunks_written: u64,
    /// Documents skipped: already stored unchanged (`mode=resume`).
    pub documents_skipped: u64,
    /// Sessions created.
    pub sessions_written: u64,
    /// Messages appended to them.
    pub messages_written: u64,
    /// The file's checksum (its trailer's SHA-256).
    pub sha256: String,
}

/// A backup error: a file that does not verify is the client's (`422`).
fn backup_error(e: rag::Error) -> ApiError {
    match e {
        rag::Error::Corrupt { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_backup",
            e.to_string(),
        ),
        e => e.into(),
    }
}

fn io_error(what: &str, e: &std::io::Error) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("{what}: {e}"),
    )
}

/// The namespace as a backup file.
#[utoipa::path(get, path = "/v1/admin/export", tag = "admin", params(ExportQuery),
    responses(
        (status = 200, description = "The backup file: gzip-compressed JSON lines (header, chunks with vectors, sessions, checksummed trailer)",
            content_type = "application/gzip", body = Vec<u8>),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("api_key" = ["admin"])))]
pub async fn export(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    p.require(Scope::Admin)?;
    let ns = p.namespace(q.namespace.as_deref())?;
    let mut file = tempfile::tempfile().map_err(|e| io_error("spooling the export", &e))?;
    let report = state
        .rag
        .export_namespace(&ns, std::io::BufWriter::new(&mut file), q.sessions)
        .await
        .map_err(backup_error)?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io_error("spooling the export", &e))?;
    tracing::info!(
        namespace = %ns, key = %p.name, chunks = report.chunks, documents = report.documents,
        sessions = report.sessions, bytes = report.bytes, "namespace exported"
    );
    let stream = file_stream(tokio::fs::File::from_std(file));
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_owned()),
            (header::CONTENT_LENGTH, report.bytes.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{ns}.jsonl.gz\""),
            ),
            (
                header::HeaderName::from_static("x-rag-sha256"),
                report.sha256,
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The file, 64 KiB at a time.
fn file_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> + Send {
    use tokio::io::AsyncReadExt;
    futures::stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; 64 * 1024];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((buf, file)))
    })
}

/// Restores a backup file into a namespace.
#[utoipa::path(post, path = "/v1/admin/import", tag = "admin", params(ImportQuery),
    request_body(content_type = "application/octet-stream", content = Vec<u8>,
        description = "A backup file made by `/v1/admin/export` or `rag export` (any content type is read as its bytes)"),
    responses(
        (status = 200, body = ImportResponse),
        (status = 400, description = "The upload could not be read (`bad_request`)", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "The namespace holds data and `mode` is `empty`", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "The file does not verify, or was made with another embedder or dimension; nothing was written", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 502, body = ErrorBody), (status = 504, body = ErrorBody)),
    security(("api_key" = ["admin"])))]
pub async fn import(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Body,
) -> ApiResult<Json<ImportResponse>> {
    p.require(Scope::Admin)?;
    let ns = p.namespace(q.namespace.as_deref())?;
    let with_sessions = q.sessions;
    if with_sessions && state.rag.sessions().is_none() {
        return Err(ApiError::invalid(
            "sessions",
            "this server keeps no sessions to import into",
        ));
    }
    // Refuse a non-empty target before the upload, not after it. The import
    // checks again (with the file's sessions) before it writes.
    if matches!(q.mode, ImportModeParam::Empty) {
        let chunks = state.rag.store().count(&ns).await?;
        if chunks > 0 {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "namespace_not_empty",
                format!(
                    "namespace {ns} holds {chunks} chunks: import with mode=replace, or \
                     mode=resume to finish an interrupted import"
                ),
            ));
        }
    }
    let limit = state.config.admin.max_import_bytes;
    let spool = tempfile::tempfile().map_err(|e| io_error("spooling the upload", &e))?;
    let mut out = tokio::fs::File::from_std(spool);
    let mut received: u64 = 0;
    let mut frames = body.into_data_stream();
    while let Some(frame) = frames.next().await {
        let bytes = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("reading the upload: {e}"),
            )
        })?;
        received += bytes.len() as u64;
        if received > limit {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the backup file is larger than admin.max_import_bytes ({limit} bytes)"),
            ));
        }
        out.write_all(&bytes)
            .await
            .map_err(|e| io_error("spooling the upload", &e))?;
    }
    out.flush()
        .await
        .map_err(|e| io_error("spooling the upload", &e))?;
    let mut file = out.into_std().await;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io_error("spooling the upload", &e))?;
    let mode = match q.mode {
        ImportModeParam::Empty => ImportMode::IntoEmpty,
        ImportModeParam::Replace => ImportMode::Replace,
        ImportModeParam::Resume => ImportMode::Resume,
    };
    let r = state
        .rag
        .import_namespace(&ns, std::io::BufReader::new(file), mode, with_sessions)
        .await
        .map_err(|e| match e {
            rag::Error::InvalidInput { ref message, .. } if message.contains("is not empty") => {
                ApiError::new(StatusCode::CONFLICT, "namespace_not_empty", e.to_string())
            }
            e => backup_error(e),
        })?;
    tracing::info!(
        namespace = %ns, key = %p.name, chunks = r.chunks_written, documents = r.documents_written,
        skipped = r.documents_skipped, sessions = r.sessions_written, bytes = received,
        "namespace imported"
    );
    Ok(Json(ImportResponse {
        namespace: ns.to_string(),
        model_id: r.header.embedder.model_id,
        dimensions: r.header.embedder.dimensions,
        documents_written: r.documents_written,
        chunks_written: r.chunks_written,
        documents_skipped: r.documents_skipped,
        sessions_written: r.sessions_written,
        messages_written: r.messages_written,
        sha256: r.trailer.sha256,
    }))
}
