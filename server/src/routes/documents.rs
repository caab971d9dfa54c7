//! Ingest (JSON and multipart), list, get and delete documents.

use axum::Extension;
use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use rag::{Document, DocumentId, IngestReport, Namespace};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, ApiPath, ApiQuery};
use crate::auth::{Principal, Scope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::schema::{ID_BYTES, bad_key, fits, non_blank};
use crate::state::AppState;

/// Most documents in one ingest request.
pub const MAX_DOCUMENTS_PER_REQUEST: usize = 256;

/// One document to ingest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentIn {
    /// Where it comes from (path, URL); the id is derived from it unless given.
    pub source: String,
    /// Its text.
    pub text: String,
    /// An explicit id.
    #[serde(default)]
    pub id: Option<String>,
    /// A JSON object of metadata, usable in filters.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Option<serde_json::Value>,
}

/// `POST /v1/documents`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// The tenant; defaults to the key's namespace or `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// The documents, 1 to 256.
    #[schema(min_items = 1, max_items = 256)]
    #[serde(deserialize_with = "crate::schema::objects")]
    pub documents: Vec<DocumentIn>,
}

/// What an ingest did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IngestResponse {
    /// The namespace written.
    pub namespace: String,
    /// Every document of the request that is stored now (added, replaced
    /// or unchanged), in the request's order: what the links to get and
    /// delete a document follow.
    pub documents: Vec<String>,
    /// New documents.
    pub added: Vec<String>,
    /// Changed documents whose chunks were replaced.
    pub replaced: Vec<String>,
    /// Documents whose content was unchanged.
    pub unchanged: Vec<String>,
    /// Documents that failed, with why.
    pub failed: Vec<IngestFailureOut>,
    /// Chunks written.
    pub chunks_written: usize,
    /// Time taken, milliseconds.
    pub elapsed_ms: f64,
}

/// A document that failed to ingest.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct IngestFailureOut {
    /// Its id.
    pub id: String,
    /// Its source.
    pub source: String,
    /// Why, in plain words (a backend's detail is in the server's log,
    /// under the request id).
    pub error: String,
    /// A stable code, as in error bodies (`invalid_input`,
    /// `backend_error`, `upstream_timeout`, …).
    pub code: String,
}

fn report_out(ns: &Namespace, requested: Vec<String>, r: IngestReport) -> IngestResponse {
    let ids = |v: Vec<DocumentId>| v.into_iter().map(|d| d.as_str().to_owned()).collect();
    let failed: std::collections::HashSet<&str> =
        r.failed.iter().map(|f| f.document_id.as_str()).collect();
    let documents = requested
        .into_iter()
        .filter(|id| !failed.contains(id.as_str()))
        .collect();
    IngestResponse {
        namespace: ns.as_str().to_owned(),
        documents,
        added: ids(r.added),
        replaced: ids(r.replaced),
        unchanged: ids(r.unchanged),
        failed: r
            .failed
            .into_iter()
            .map(|f| {
                // Sanitized as error bodies are: the detail goes to the log.
                let e = crate::error::ApiError::from(f.error);
                IngestFailureOut {
                    id: f.document_id.as_str().to_owned(),
                    source: f.source,
                    error: e.message,
                    code: e.code.to_owned(),
                }
            })
            .collect(),
        chunks_written: r.chunks_written,
        elapsed_ms: r.elapsed.as_secs_f64() * 1000.0,
    }
}

/// A document id as the document describes it (`DocumentId` in the
/// OpenAPI document): `422` naming `id` otherwise.
fn document_id(id: String) -> ApiResult<DocumentId> {
    if !fits(&id, ID_BYTES) {
        return Err(ApiError::invalid(
            "id",
            "a document id is 1 to 512 bytes without control characters (up to 128 characters of any kind, or 512 of ASCII)",
        ));
    }
    DocumentId::new(id).map_err(|e| ApiError::invalid("id", e.to_string()))
}

fn to_document(i: usize, d: DocumentIn) -> ApiResult<Document> {
    let field = |f: &str| format!("documents[{i}].{f}");
    if !non_blank(&d.source) {
        return Err(ApiError::invalid(
            field("source"),
            "source must not be empty",
        ));
    }
    if !non_blank(&d.text) {
        return Err(ApiError::invalid(field("text"), "text must not be empty"));
    }
    let mut doc = Document::new(d.source, d.text);
    if let Some(id) = d.id {
        let id = document_id(id).map_err(|e| e.with_field(field("id")))?;
        doc = doc.with_id(id);
    }
    if let Some(m) = d.metadata {
        let Some(map) = m.as_object() else {
            return Err(ApiError::invalid(
                field("metadata"),
                "metadata must be a JSON object",
            ));
        };
        if let Some(k) = bad_key(map) {
            return Err(ApiError::invalid(
                field("metadata"),
                format!(
                    "metadata key {k:?}: keys are 1 to 256 bytes without control characters (up to 64 characters of any kind, or 256 of ASCII)"
                ),
            ));
        }
        doc = doc.with_metadata(m);
    }
    doc.validate()
        .map_err(|e| ApiError::invalid(format!("documents[{i}]"), e.to_string()))?;
    Ok(doc)
}

async fn ingest_docs(state: &AppState, ns: &Namespace, docs: Vec<Document>) -> IngestResponse {
    let mut requested: Vec<String> = Vec::with_capacity(docs.len());
    for d in &docs {
        let id = d.id().as_str();
        if !requested.iter().any(|r| r == id) {
            requested.push(id.to_owned());
        }
    }
    let report = state
        .rag
        .ingest_stream(
            futures::stream::iter(docs),
            rag::IngestOptions::new(ns.clone()),
        )
        .await;
    metrics::counter!("rag_server_documents_ingested_total")
        .increment((report.added.len() + report.replaced.len()) as u64);
    report_out(ns, requested, report)
}

/// Ingests documents given as JSON text with metadata.
#[utoipa::path(post, path = "/v1/documents", tag = "documents", request_body = IngestRequest,
    responses((status = 200, body = IngestResponse), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["ingest"])))]
pub async fn ingest(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiJson(req): ApiJson<IngestRequest>,
) -> ApiResult<Json<IngestResponse>> {
    p.require(Scope::Ingest)?;
    let ns = p.namespace(req.namespace.as_deref())?;
    if req.documents.is_empty() {
        return Err(ApiError::invalid("documents", "give at least one document"));
    }
    if req.documents.len() > MAX_DOCUMENTS_PER_REQUEST {
        return Err(ApiError::invalid(
            "documents",
            format!("at most {MAX_DOCUMENTS_PER_REQUEST} documents per request"),
        ));
    }
    let docs = req
        .documents
        .into_iter()
        .enumerate()
        .map(|(i, d)| to_document(i, d))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(ingest_docs(&state, &ns, docs).await))
}

/// Ingests uploaded files (multipart: one or more `file` parts, optional
/// `namespace` and `metadata` (a JSON object) parts). Text, Markdown and
/// code files only, each within the size limit.
#[utoipa::path(post, path = "/v1/documents/upload", tag = "documents",
    request_body(content_type = "multipart/form-data", content = String, description = "the parts: `file`… (see `crate::schema`)"),
    responses((status = 200, body = IngestResponse), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = ["ingest"])))]
pub async fn upload(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: axum::http::HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Json<IngestResponse>> {
    p.require(Scope::Ingest)?;
    let is_multipart = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("multipart/form-data"));
    let mut multipart = multipart.map_err(|e| {
        if is_multipart {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_multipart", e.body_text())
        } else {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the files as multipart/form-data",
            )
        }
    })?;
    let cfg = &state.config;
    let mut namespace = None;
    let mut metadata = None;
    let mut files: Vec<(String, String)> = Vec::new();
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            super::payload_too_large()
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_multipart", e.body_text())
        }
    };
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "namespace" => namespace = Some(field.text().await.map_err(bad)?),
            "metadata" => {
                let text = field.text().await.map_err(bad)?;
                let v: serde_json::Value = serde_json::from_str(&text)
                    .ok()
                    .filter(serde_json::Value::is_object)
                    .ok_or_else(|| {
                        ApiError::invalid("metadata", "metadata must be a JSON object")
                    })?;
                metadata = Some(v);
            }
            "file" => {
                let filename = field
                    .file_name()
                    .map(str::to_owned)
                    .ok_or_else(|| ApiError::invalid("file", "a file part needs a filename"))?;
                let ext = std::path::Path::new(&filename)
                    .extension()
                    .and_then(|e| e.to_str())
                    .map(str::to_ascii_lowercase)
                    .unwrap_or_default();
                if !cfg.upload_extensions.contains(&ext) {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "unsupported_file_type",
                        format!(
                            "files of type {ext:?} are not accepted (text, Markdown and code only)"
                        ),
                    )
                    .with_field("file"));
                }
                let bytes = field.bytes().await.map_err(bad)?;
                if bytes.len() > cfg.upload_max_file_bytes {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "file_too_large",
                        format!(
                            "each file may be at most {} bytes",
                            cfg.upload_max_file_bytes
                        ),
                    )
                    .with_field("file"));
                }
                let text = String::from_utf8(bytes.to_vec())
                    .map_err(|_| ApiError::invalid("file", "files must be UTF-8 text"))?;
                files.push((filename, text));
            }
            other => {
                return Err(ApiError::invalid(
                    other.to_owned(),
                    "unknown part (file, namespace, metadata)",
                ));
            }
        }
    }
    if files.is_empty() {
        return Err(ApiError::invalid("file", "upload at least one file part"));
    }
    let ns = p.namespace(namespace.as_deref())?;
    let docs = files
        .into_iter()
        .enumerate()
        .map(|(i, (source, text))| {
            to_document(
                i,
                DocumentIn {
                    source,
                    text,
                    id: None,
                    metadata: metadata.clone(),
                },
            )
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(ingest_docs(&state, &ns, docs).await))
}

/// Paging and tenant of a listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The tenant.
    pub namespace: Option<String>,
    /// Return documents after this id (the previous page's `next`).
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "crate::schema::int_opt")]
    pub limit: Option<usize>,
}

/// A document's listing entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DocumentOut {
    /// Its id.
    pub id: String,
    /// Its source.
    pub source: String,
    /// The hash of its content.
    pub content_hash: String,
    /// How many chunks it has.
    pub chunks: usize,
}

/// A page of documents.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DocumentPage {
    /// The documents, by id.
    pub documents: Vec<DocumentOut>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

fn query_ns(p: &Principal, q: Option<&str>) -> ApiResult<Namespace> {
    p.namespace(q)
}

/// Lists documents, paged by id.
#[utoipa::path(get, path = "/v1/documents", tag = "documents", params(ListQuery),
    responses((status = 200, body = DocumentPage), (status = 422, body = ErrorBody)),
    security(("api_key" = ["read"])))]
pub async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<DocumentPage>> {
    p.require(Scope::Read)?;
    let ns = query_ns(&p, q.namespace.as_deref())?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit must be 1 to 1000"));
    }
    let after = q
        .after
        .map(document_id)
        .transpose()
        .map_err(|e| e.with_field("after"))?;
    let docs = state
        .rag
        .store()
        .list_documents(&ns, after.as_ref(), limit + 1)
        .await?;
    let more = docs.len() > limit;
    let documents: Vec<DocumentOut> = docs
        .into_iter()
        .take(limit)
        .map(|d| DocumentOut {
            id: d.id.as_str().to_owned(),
            source: d.source,
            content_hash: d.content_hash,
            chunks: d.chunks,
        })
        .collect();
    let next = if more {
        documents.last().map(|d| d.id.clone())
    } else {
        None
    };
    Ok(Json(DocumentPage { documents, next }))
}

/// The tenant of a single-document request.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NsQuery {
    /// The tenant.
    pub namespace: Option<String>,
}

/// Gets one document's entry.
#[utoipa::path(get, path = "/v1/documents/{id}", tag = "documents", operation_id = "get_document",
    params(("id" = String, Path, description = "document id"), NsQuery),
    responses((status = 200, body = DocumentOut), (status = 404, body = ErrorBody)),
    security(("api_key" = ["read"])))]
pub async fn get_document(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<NsQuery>,
) -> ApiResult<Json<DocumentOut>> {
    p.require(Scope::Read)?;
    let ns = query_ns(&p, q.namespace.as_deref())?;
    let id = document_id(id)?;
    let store = state.rag.store();
    let hashes = store
        .document_hashes(&ns, std::slice::from_ref(&id))
        .await?;
    if hashes.is_empty() {
        return Err(ApiError::not_found("no such document"));
    }
    // The store lists by id: scan pages for this one's entry.
    let mut after: Option<DocumentId> = None;
    loop {
        let page = store.list_documents(&ns, after.as_ref(), 500).await?;
        if let Some(d) = page.iter().find(|d| d.id == id) {
            return Ok(Json(DocumentOut {
                id: d.id.as_str().to_owned(),
                source: d.source.clone(),
                content_hash: d.content_hash.clone(),
                chunks: d.chunks,
            }));
        }
        match page.last() {
            Some(last) if page.len() == 500 => after = Some(last.id.clone()),
            _ => return Err(ApiError::not_found("no such document")),
        }
    }
}

/// What a delete removed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeleteResponse {
    /// The document id.
    pub id: String,
    /// Chunks removed.
    pub chunks_deleted: usize,
}

/// Deletes a document and all its chunks.
#[utoipa::path(delete, path = "/v1/documents/{id}", tag = "documents", operation_id = "delete_document",
    params(("id" = String, Path, description = "document id"), NsQuery),
    responses((status = 200, body = DeleteResponse), (status = 404, body = ErrorBody)),
    security(("api_key" = ["ingest"])))]
pub async fn delete(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<NsQuery>,
) -> ApiResult<Json<DeleteResponse>> {
    p.require(Scope::Ingest)?;
    let ns = query_ns(&p, q.namespace.as_deref())?;
    let doc_id = document_id(id.clone())?;
    let n = state.rag.delete_document_in(&ns, &doc_id).await?;
    if n == 0 {
        return Err(ApiError::not_found("no such document"));
    }
    Ok(Json(DeleteResponse {
        id,
        chunks_deleted: n,
    }))
}
