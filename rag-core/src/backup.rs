//! Backup and restore of a namespace: a portable, versioned file any store
//! can be exported to and imported from.
//!
//! # The file
//! Gzip-compressed JSON lines (`zcat FILE | jq` reads it):
//!
//! 1. a header: `{"format":"rag-export","version":1,"namespace":…,
//!    "embedder":{"model_id":…,"dimensions":…},"backend":…,"distance":…,
//!    "created_at":…}`;
//! 2. one `{"kind":"chunk",…}` line per chunk — every [`Chunk`] field and the
//!    vector, base64 of its little-endian `f32`s (exact, and a third of the
//!    size of decimal text) — whole documents in document id order, chunks
//!    in position order;
//! 3. one `{"kind":"session",…}` line per session, with its messages;
//! 4. a trailer `{"kind":"end","chunks":…,"documents":…,"sessions":…,
//!    "messages":…,"sha256":…}`: the counts and the SHA-256 of every line
//!    before it, so a truncated or altered file is detected.
//!
//! # Import
//! [`import_namespace`] reads the file twice. The first pass checks
//! everything — the header's embedder (model id and dimensions) against
//! the target's, every line, the order, the counts and the checksum —
//! before anything is written, so a refused or corrupt file changes
//! nothing. The second pass upserts whole documents in batches. Upserts
//! are idempotent: an import that stopped part-way (its error says how
//! many chunks were written) is finished by running it again with
//! [`ImportMode::Resume`], which skips the documents already stored with
//! the same content hash.
//!
//! Both directions stream: at most one page of documents is in memory.
//! Reading and writing the file is blocking `std::io`, done between the
//! store's awaits (a file or an in-memory buffer is the intended sink).
//!
//! ```
//! use std::io::Cursor;
//! use rag_core::backup::{EmbedderInfo, ExportOptions, ImportOptions, export_namespace, import_namespace};
//! use rag_core::{MemoryVectorStore, Namespace, VectorStore};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> rag_core::Result<()> {
//! let source = MemoryVectorStore::default();
//! let ns = Namespace::default();
//! let embedder = EmbedderInfo::new("hash-256", 256);
//! let mut file = Vec::new();
//! let exported = export_namespace(&source, &ns, &embedder, &mut file, &ExportOptions::default()).await?;
//!
//! let target = MemoryVectorStore::default();
//! let imported = import_namespace(&target, &ns, &embedder, Cursor::new(file), &ImportOptions::default()).await?;
//! assert_eq!(imported.chunks_written, exported.chunks);
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::pin::Pin;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::search::Distance;
use crate::session::{NewSession, Session, SessionId, StoredMessage};
use crate::traits::{Embedder, SessionStore, VectorStore};
use crate::types::{Chunk, ChunkId, DocumentId, EmbeddedChunk, Metadata, Namespace};

/// The `format` field of every export file's header.
pub const FORMAT: &str = "rag-export";

/// The version this crate writes, and the newest it reads.
pub const VERSION: u32 = 1;

/// Sessions an export lists at most ([`SessionStore::list`] has no cursor).
pub const MAX_SESSIONS: usize = 100_000;

/// The embedder whose vectors a file holds: an import into a store
/// searched with another model or dimension is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EmbedderInfo {
    /// [`Embedder::model_id`].
    pub model_id: String,
    /// [`Embedder::dimensions`].
    pub dimensions: usize,
}

impl EmbedderInfo {
    /// A model id and its dimensions.
    pub fn new(model_id: impl Into<String>, dimensions: usize) -> Self {
        Self {
            model_id: model_id.into(),
            dimensions,
        }
    }

    /// The model id and dimensions of `embedder`.
    pub fn of(embedder: &dyn Embedder) -> Self {
        Self::new(embedder.model_id(), embedder.dimensions())
    }
}

/// The first line of an export file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ExportHeader {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version ([`VERSION`] when written by this crate).
    pub version: u32,
    /// The namespace exported.
    pub namespace: Namespace,
    /// The embedder of the vectors.
    pub embedder: EmbedderInfo,
    /// The store it was exported from (`Capabilities::backend`).
    pub backend: String,
    /// That store's distance (a cosine store may hold normalised vectors).
    pub distance: Distance,
    /// When the export started.
    pub created_at: DateTime<Utc>,
}

/// The last line of an export file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Trailer {
    /// Chunk lines.
    pub chunks: u64,
    /// Distinct documents among them.
    pub documents: u64,
    /// Session lines.
    pub sessions: u64,
    /// Messages in the session lines.
    pub messages: u64,
    /// SHA-256 (hex) of every line before the trailer, newlines included.
    pub sha256: String,
}

/// A chunk line: the chunk's fields, explicitly, so the file format does not
/// follow `Chunk`'s serde form by accident.
#[derive(Serialize, Deserialize)]
struct ChunkLine {
    id: String,
    document_id: DocumentId,
    source: String,
    document_hash: String,
    position: u32,
    byte_start: usize,
    byte_end: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_count: Option<u32>,
    metadata: Metadata,
    text: String,
    /// Base64 of the little-endian `f32`s.
    vector: String,
}

#[derive(Serialize, Deserialize)]
struct SessionLine {
    id: SessionId,
    metadata: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    messages: Vec<StoredMessage>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Chunk(ChunkLine),
    Session(SessionLine),
    End(Trailer),
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportReport {
    /// Chunks written.
    pub chunks: u64,
    /// Documents written.
    pub documents: u64,
    /// Sessions written.
    pub sessions: u64,
    /// Messages in them.
    pub messages: u64,
    /// Compressed bytes written.
    pub bytes: u64,
    /// The trailer's checksum.
    pub sha256: String,
}

struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn io_error(what: &str, e: &std::io::Error) -> Error {
    Error::backend("backup", false, format!("{what}: {e}"))
}

/// Writes an export file line by line: the header, chunks (whole documents
/// in document id order), sessions, then the trailer on
/// [`finish`](Self::finish). [`export_namespace`] drives it; it is public
/// for callers that produce the file in pieces (a streamed response).
pub struct ExportWriter<W: Write> {
    out: GzEncoder<Counting<W>>,
    hash: Sha256,
    line: Vec<u8>,
    dimensions: usize,
    last_document: Option<DocumentId>,
    chunks: u64,
    documents: u64,
    sessions: u64,
    messages: u64,
}

impl<W: Write> std::fmt::Debug for ExportWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportWriter")
            .field("chunks", &self.chunks)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl<W: Write> ExportWriter<W> {
    /// Starts a file with `header`.
    ///
    /// # Errors
    /// A backend error when writing fails.
    pub fn new(writer: W, header: &ExportHeader) -> Result<Self> {
        let mut w = Self {
            out: GzEncoder::new(
                Counting {
                    inner: writer,
                    bytes: 0,
                },
                Compression::fast(),
            ),
            hash: Sha256::new(),
            line: Vec::with_capacity(4096),
            dimensions: header.embedder.dimensions,
            last_document: None,
            chunks: 0,
            documents: 0,
            sessions: 0,
            messages: 0,
        };
        w.write_line(header)?;
        Ok(w)
    }

    fn write_line<T: Serialize>(&mut self, value: &T) -> Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)
            .map_err(|e| Error::invalid_input(format!("cannot serialise a line: {e}")))?;
        self.line.push(b'\n');
        self.hash.update(&self.line);
        self.out
            .write_all(&self.line)
            .map_err(|e| io_error("writing the export", &e))
    }

    /// Writes a chunk. Documents must come whole and in id order, before any
    /// session.
    ///
    /// # Errors
    /// `InvalidInput` for a vector of another dimension or a document out of
    /// order; a backend error when writing fails.
    pub fn write_chunk(&mut self, c: &EmbeddedChunk) -> Result<()> {
        if c.vector.len() != self.dimensions {
            return Err(Error::invalid_input(format!(
                "chunk {} has {} dimensions, the export's embedder {}",
                c.chunk.id,
                c.vector.len(),
                self.dimensions
            )));
        }
        if self.sessions > 0 {
            return Err(Error::invalid_input("chunks must come before sessions"));
        }
        match &self.last_document {
            Some(last) if *last == c.chunk.document_id => {}
            Some(last) if *last > c.chunk.document_id => {
                return Err(Error::invalid_input(format!(
                    "document {:?} comes after {:?}: documents must be whole and in id order",
                    c.chunk.document_id.as_str(),
                    last.as_str()
                )));
            }
            _ => {
                self.documents += 1;
                self.last_document = Some(c.chunk.document_id.clone());
            }
        }
        let mut bytes = Vec::with_capacity(c.vector.len() * 4);
        for x in &c.vector {
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        let ch = &c.chunk;
        let line = Line::Chunk(ChunkLine {
            id: ch.id.as_str().to_owned(),
            document_id: ch.document_id.clone(),
            source: ch.source.clone(),
            document_hash: ch.document_hash.clone(),
            position: ch.position,
            byte_start: ch.byte_range.start,
            byte_end: ch.byte_range.end,
            token_count: ch.token_count,
            metadata: ch.metadata.clone(),
            text: ch.text.clone(),
            vector: BASE64.encode(&bytes),
        });
        self.write_line(&line)?;
        self.chunks += 1;
        Ok(())
    }

    /// Writes a session with its messages.
    ///
    /// # Errors
    /// A backend error when writing fails.
    pub fn write_session(&mut self, session: &Session, messages: &[StoredMessage]) -> Result<()> {
        let line = Line::Session(SessionLine {
            id: session.id,
            metadata: session.metadata.clone(),
            created_at: session.created_at,
            updated_at: session.updated_at,
            expires_at: session.expires_at,
            messages: messages.to_vec(),
        });
        self.write_line(&line)?;
        self.sessions += 1;
        self.messages += messages.len() as u64;
        Ok(())
    }

    /// The sink, to take what was written so far (for a streamed response
    /// over a `Vec<u8>`). Compressed bytes reach it in blocks.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out.get_mut().inner
    }

    /// Writes the trailer, ends the gzip stream and returns the sink.
    ///
    /// # Errors
    /// A backend error when writing fails.
    pub fn finish(mut self) -> Result<(W, ExportReport)> {
        let sha256 = crate::types::hex(&std::mem::take(&mut self.hash).finalize());
        let trailer = Trailer {
            chunks: self.chunks,
            documents: self.documents,
            sessions: self.sessions,
            messages: self.messages,
            sha256: sha256.clone(),
        };
        self.line.clear();
        serde_json::to_writer(&mut self.line, &Line::End(trailer))
            .map_err(|e| Error::invalid_input(format!("cannot serialise the trailer: {e}")))?;
        self.line.push(b'\n');
        self.out
            .write_all(&self.line)
            .map_err(|e| io_error("writing the export", &e))?;
        let mut counting = self
            .out
            .finish()
            .map_err(|e| io_error("finishing the export", &e))?;
        counting
            .flush()
            .map_err(|e| io_error("flushing the export", &e))?;
        let report = ExportReport {
            chunks: self.chunks,
            documents: self.documents,
            sessions: self.sessions,
            messages: self.messages,
            bytes: counting.bytes,
            sha256,
        };
        Ok((counting.inner, report))
    }
}

/// How to export.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ExportOptions<'a> {
    /// Also export the namespace's sessions from this store.
    pub sessions: Option<&'a dyn SessionStore>,
    /// Documents read per [`VectorStore::scan`] call; 256 by default.
    pub page_documents: usize,
}

impl Default for ExportOptions<'_> {
    fn default() -> Self {
        Self {
            sessions: None,
            page_documents: 256,
        }
    }
}

impl<'a> ExportOptions<'a> {
    /// Exports the namespace's sessions too.
    pub fn with_sessions(mut self, sessions: &'a dyn SessionStore) -> Self {
        self.sessions = Some(sessions);
        self
    }
    /// Sets the documents read per page.
    pub fn with_page_documents(mut self, n: usize) -> Self {
        self.page_documents = n.max(1);
        self
    }
}

/// Exports `namespace` of `store` (and its sessions, when
/// [`ExportOptions::sessions`] is set) to `writer`, page by page.
///
/// Each document is read whole, but the export is not a snapshot of the
/// namespace: take it while nothing is ingested into it.
///
/// # Errors
/// `InvalidInput` when the store's dimension is not `embedder`'s; the
/// store's errors (`Unsupported` for a store without
/// [`VectorStore::scan`]); a backend error when writing fails.
pub async fn export_namespace<W: Write + Send>(
    store: &dyn VectorStore,
    namespace: &Namespace,
    embedder: &EmbedderInfo,
    writer: W,
    options: &ExportOptions<'_>,
) -> Result<ExportReport> {
    let caps = store.capabilities();
    if let Some(d) = caps.dimensions
        && d != embedder.dimensions
    {
        return Err(Error::invalid_input(format!(
            "the store holds {d}-dimensional vectors, the embedder {} makes {}",
            embedder.model_id, embedder.dimensions
        )));
    }
    let header = ExportHeader {
        format: FORMAT.to_owned(),
        version: VERSION,
        namespace: namespace.clone(),
        embedder: embedder.clone(),
        backend: caps.backend.clone(),
        distance: caps.distance,
        created_at: Utc::now(),
    };
    let mut out = ExportWriter::new(writer, &header)?;
    let mut after: Option<DocumentId> = None;
    loop {
        let page = store
            .scan(namespace, after.as_ref(), options.page_documents.max(1))
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(last.chunk.document_id.clone());
        for c in &page {
            out.write_chunk(c)?;
        }
    }
    if let Some(sessions) = options.sessions {
        let mut list = sessions.list(namespace, MAX_SESSIONS).await?;
        if list.len() >= MAX_SESSIONS {
            return Err(Error::invalid_input(format!(
                "namespace {namespace} has {MAX_SESSIONS} sessions or more, more than an export lists"
            )));
        }
        list.sort_by_key(|s| (s.created_at, s.id));
        for s in &list {
            let messages = sessions.history(s.id, s.message_count).await?;
            out.write_session(s, &messages)?;
        }
    }
    Ok(out.finish()?.1)
}

/// What to do with a target namespace that is not empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportMode {
    /// Refuse it (`InvalidInput`), writing nothing.
    #[default]
    IntoEmpty,
    /// Delete the namespace (and its sessions) first, once the file is
    /// verified.
    Replace,
    /// Keep it and skip the documents already stored with the same content
    /// hash: finishes an import that stopped part-way.
    Resume,
}

/// How to import.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct ImportOptions<'a> {
    /// What to do with a namespace that is not empty.
    pub mode: ImportMode,
    /// Import the file's sessions into this store (new session ids; see
    /// [`import_namespace`]).
    pub sessions: Option<&'a dyn SessionStore>,
    /// Chunks per upsert at most (a larger document goes alone); 512 by
    /// default. Documents per upsert follow the store's
    /// `Capabilities::upsert_batch_documents`.
    pub batch_chunks: usize,
    /// Upserts in flight at once; 4 by default (as ingestion's
    /// `upsert_concurrency`). Each upsert is atomic, so an import that stops
    /// leaves whole documents, and resume finishes it.
    pub concurrency: usize,
}

impl Default for ImportOptions<'_> {
    fn default() -> Self {
        Self {
            mode: ImportMode::IntoEmpty,
            sessions: None,
            batch_chunks: 512,
            concurrency: 4,
        }
    }
}

impl<'a> ImportOptions<'a> {
    /// Sets the mode.
    pub fn with_mode(mut self, mode: ImportMode) -> Self {
        self.mode = mode;
        self
    }
    /// Imports the file's sessions into `sessions`.
    pub fn with_sessions(mut self, sessions: &'a dyn SessionStore) -> Self {
        self.sessions = Some(sessions);
        self
    }
    /// Sets the chunks per upsert.
    pub fn with_batch_chunks(mut self, n: usize) -> Self {
        self.batch_chunks = n.max(1);
        self
    }
    /// Sets the upserts in flight at once.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }
}

/// What an import did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ImportReport {
    /// The file's header.
    pub header: ExportHeader,
    /// The file's trailer (its counts).
    pub trailer: Trailer,
    /// Documents upserted.
    pub documents_written: u64,
    /// Chunks upserted.
    pub chunks_written: u64,
    /// Documents skipped because the target held them unchanged
    /// ([`ImportMode::Resume`]).
    pub documents_skipped: u64,
    /// Sessions created.
    pub sessions_written: u64,
    /// Messages appended to them.
    pub messages_written: u64,
}

/// A verified file: its header and trailer.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ExportSummary {
    /// The header.
    pub header: ExportHeader,
    /// The trailer.
    pub trailer: Trailer,
}

/// Reads an export file line by line, hashing what it reads.
struct LineReader<R: Read> {
    input: BufReader<GzDecoder<R>>,
    buf: Vec<u8>,
    number: u64,
    hash: Sha256,
}

impl<R: Read> LineReader<R> {
    fn new(reader: R) -> Self {
        Self {
            input: BufReader::with_capacity(1 << 16, GzDecoder::new(reader)),
            buf: Vec::with_capacity(8192),
            number: 0,
            hash: Sha256::new(),
        }
    }

    fn corrupt(&self, message: impl Into<String>) -> Error {
        Error::Corrupt {
            location: format!("export file, line {}", self.number),
            message: message.into(),
        }
    }

    /// The next line (without hashing it), or `None` at the end.
    fn next(&mut self) -> Result<Option<&[u8]>> {
        self.buf.clear();
        self.number += 1;
        let n = self.input.read_until(b'\n', &mut self.buf).map_err(|e| {
            self.corrupt(format!("cannot read (truncated or not a gzip file?): {e}"))
        })?;
        if n == 0 {
            return Ok(None);
        }
        if self.buf.last() != Some(&b'\n') {
            return Err(self.corrupt("the last line is cut off: the file is truncated"));
        }
        Ok(Some(&self.buf))
    }

    fn hash_current(&mut self) {
        self.hash.update(&self.buf);
    }

    fn header(&mut self) -> Result<ExportHeader> {
        let Some(line) = self.next()? else {
            return Err(self.corrupt("the file is empty"));
        };
        let value: serde_json::Value = serde_json::from_slice(line)
            .map_err(|e| self.corrupt(format!("the header is not JSON: {e}")))?;
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Err(self.corrupt(format!("not a {FORMAT} file")));
        }
        let version = value.get("version").and_then(serde_json::Value::as_u64);
        if version != Some(u64::from(VERSION)) {
            return Err(Error::invalid_input(format!(
                "the file is {FORMAT} version {}, this build reads version {VERSION}",
                version.map_or_else(|| "(none)".to_owned(), |v| v.to_string())
            )));
        }
        let header: ExportHeader =
            serde_json::from_value(value).map_err(|e| self.corrupt(format!("bad header: {e}")))?;
        self.hash_current();
        Ok(header)
    }

    fn line(&mut self) -> Result<Option<Line>> {
        let Some(line) = self.next()? else {
            return Ok(None);
        };
        let parsed: Line =
            serde_json::from_slice(line).map_err(|e| self.corrupt(format!("bad line: {e}")))?;
        Ok(Some(parsed))
    }

    fn into_inner(self) -> R {
        self.input.into_inner().into_inner()
    }
}

fn decode_chunk(line: ChunkLine, dimensions: usize) -> std::result::Result<EmbeddedChunk, String> {
    let bytes = BASE64
        .decode(line.vector.as_bytes())
        .map_err(|e| format!("chunk {}: the vector is not base64: {e}", line.id))?;
    if bytes.len() != dimensions * 4 {
        return Err(format!(
            "chunk {}: the vector has {} bytes, {dimensions} dimensions need {}",
            line.id,
            bytes.len(),
            dimensions * 4
        ));
    }
    let vector: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(format!("chunk {}: the vector is not finite", line.id));
    }
    if line.byte_start > line.byte_end {
        return Err(format!("chunk {}: a reversed byte range", line.id));
    }
    Ok(EmbeddedChunk {
        chunk: Chunk {
            id: ChunkId::from_string(line.id),
            document_id: line.document_id,
            source: line.source,
            text: line.text,
            byte_range: line.byte_start..line.byte_end,
            position: line.position,
            token_count: line.token_count,
            metadata: line.metadata,
            document_hash: line.document_hash,
        },
        vector,
    })
}

fn check_embedder(header: &ExportHeader, expected: &EmbedderInfo) -> Result<()> {
    if header.embedder != *expected {
        return Err(Error::invalid_input(format!(
            "the file's vectors are from {} ({} dimensions), the target uses {} ({} dimensions): \
             re-embed the documents instead",
            header.embedder.model_id,
            header.embedder.dimensions,
            expected.model_id,
            expected.dimensions
        )));
    }
    Ok(())
}

/// Reads the whole of `reader` and checks it: the header (and, when
/// `expected` is given, its embedder, checked first), every line, the
/// order (whole documents in id order, then sessions), the trailer's counts
/// and checksum, nothing after the trailer. Writes nothing.
///
/// # Errors
/// `InvalidInput` for another embedder or an unknown version; `Corrupt`
/// for anything else wrong with the file.
pub fn verify_export<R: Read>(reader: R, expected: Option<&EmbedderInfo>) -> Result<ExportSummary> {
    verify(&mut LineReader::new(reader), expected)
}

fn verify<R: Read>(
    lines: &mut LineReader<R>,
    expected: Option<&EmbedderInfo>,
) -> Result<ExportSummary> {
    let header = lines.header()?;
    if let Some(expected) = expected {
        check_embedder(&header, expected)?;
    }
    let (mut chunks, mut documents, mut sessions, mut messages) = (0u64, 0u64, 0u64, 0u64);
    let mut last_document: Option<DocumentId> = None;
    loop {
        let Some(line) = lines.line()? else {
            return Err(lines.corrupt("the file ends without its trailer: it is truncated"));
        };
        match line {
            Line::Chunk(c) => {
                if sessions > 0 {
                    return Err(lines.corrupt("a chunk after the sessions"));
                }
                let c =
                    decode_chunk(c, header.embedder.dimensions).map_err(|m| lines.corrupt(m))?;
                match &last_document {
                    Some(last) if *last == c.chunk.document_id => {}
                    Some(last) if *last > c.chunk.document_id => {
                        return Err(lines.corrupt(format!(
                            "document {:?} after {:?}: documents are not whole or not in order",
                            c.chunk.document_id.as_str(),
                            last.as_str()
                        )));
                    }
                    _ => {
                        documents += 1;
                        last_document = Some(c.chunk.document_id);
                    }
                }
                chunks += 1;
            }
            Line::Session(s) => {
                sessions += 1;
                messages += s.messages.len() as u64;
            }
            Line::End(trailer) => {
                let sha256 = crate::types::hex(&std::mem::take(&mut lines.hash).finalize());
                let counted = (chunks, documents, sessions, messages);
                let claimed = (
                    trailer.chunks,
                    trailer.documents,
                    trailer.sessions,
                    trailer.messages,
                );
                if counted != claimed {
                    return Err(lines.corrupt(format!(
                        "the trailer counts (chunks, documents, sessions, messages) {claimed:?}, \
                         the file holds {counted:?}"
                    )));
                }
                if sha256 != trailer.sha256 {
                    return Err(lines.corrupt("the checksum does not match: the file was altered"));
                }
                if lines.next()?.is_some() {
                    return Err(lines.corrupt("data after the trailer"));
                }
                return Ok(ExportSummary { header, trailer });
            }
        }
        lines.hash_current();
    }
}

/// Imports an export file into `namespace` of `store` (the namespace may
/// differ from the one exported).
///
/// Nothing is written unless the file's embedder is `expected` (model id
/// and dimensions, and the store's dimension when it has one), the whole
/// file verifies ([`verify_export`]) and the target is empty or
/// [`ImportOptions::mode`] allows it. Then whole documents are upserted in
/// batches, and the sessions (when [`ImportOptions::sessions`] is set)
/// are created with new ids — [`SessionStore`] cannot set an id or a
/// timestamp, so the messages keep their order but are stamped with the
/// import's time, and an expiring session gets the idle time it had left
/// at export. On resume, sessions are imported only when the target has
/// none (or skipped when it has as many as the file).
///
/// # Errors
/// `InvalidInput` for another embedder or dimension, or a non-empty
/// target in [`ImportMode::IntoEmpty`]; `Corrupt` for a damaged file, in
/// both cases with nothing written. A store error while writing is
/// returned as a backend error (`backend` = `import`, its retryability and
/// source kept) saying how many chunks were written and that an import
/// with [`ImportMode::Resume`] finishes the job.
pub async fn import_namespace<R: Read + Seek + Send>(
    store: &dyn VectorStore,
    namespace: &Namespace,
    expected: &EmbedderInfo,
    reader: R,
    options: &ImportOptions<'_>,
) -> Result<ImportReport> {
    let caps = store.capabilities();
    // Pass 1: verify, writing nothing.
    let mut lines = LineReader::new(reader);
    let summary = verify(&mut lines, Some(expected))?;
    if let Some(d) = caps.dimensions
        && d != summary.header.embedder.dimensions
    {
        return Err(Error::invalid_input(format!(
            "the file's vectors have {} dimensions ({}), the target store holds {d}",
            summary.header.embedder.dimensions, summary.header.embedder.model_id
        )));
    }
    let existing = store.count(namespace).await?;
    let existing_sessions = match (options.sessions, summary.trailer.sessions) {
        (Some(s), n) if n > 0 || options.mode == ImportMode::Replace => {
            s.list(namespace, MAX_SESSIONS).await?
        }
        _ => Vec::new(),
    };
    if options.mode == ImportMode::IntoEmpty && (existing > 0 || !existing_sessions.is_empty()) {
        return Err(Error::invalid_input(format!(
            "namespace {namespace} is not empty ({existing} chunks, {} sessions): import with \
             replace, or resume an interrupted import",
            existing_sessions.len()
        )));
    }
    if options.mode == ImportMode::Resume
        && !existing_sessions.is_empty()
        && existing_sessions.len() as u64 != summary.trailer.sessions
    {
        return Err(Error::invalid_input(format!(
            "namespace {namespace} has {} sessions and the file {}: sessions were partly \
             imported, import with replace",
            existing_sessions.len(),
            summary.trailer.sessions
        )));
    }
    if options.mode == ImportMode::Replace {
        store.delete_namespace(namespace).await?;
        if let Some(s) = options.sessions {
            for session in &existing_sessions {
                match s.delete(session.id).await {
                    Ok(()) | Err(Error::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    // Pass 2: write.
    let mut reader = lines.into_inner();
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|e| io_error("rewinding the export", &e))?;
    let mut lines = LineReader::new(reader);
    lines.header()?;
    let mut w = Writer {
        store,
        namespace,
        resume: options.mode == ImportMode::Resume,
        total: summary.trailer.chunks,
        documents_written: 0,
        chunks_written: 0,
        documents_skipped: 0,
        in_flight: FuturesUnordered::new(),
        concurrency: options.concurrency.max(1),
    };
    let per_call = caps.upsert_batch_documents.max(1);
    let mut batch: Vec<EmbeddedChunk> = Vec::new();
    let mut batch_documents = 0usize;
    let (mut sessions_written, mut messages_written) = (0u64, 0u64);
    let skip_sessions = existing_sessions.len() as u64 == summary.trailer.sessions
        && options.mode == ImportMode::Resume;
    loop {
        let Some(line) = lines.line()? else {
            return Err(lines.corrupt("the file changed while it was imported"));
        };
        match line {
            Line::Chunk(c) => {
                let c = decode_chunk(c, summary.header.embedder.dimensions)
                    .map_err(|m| lines.corrupt(m))?;
                let new_document = batch
                    .last()
                    .is_none_or(|l| l.chunk.document_id != c.chunk.document_id);
                if new_document {
                    if !batch.is_empty()
                        && (batch_documents >= per_call || batch.len() >= options.batch_chunks)
                    {
                        w.flush(&mut batch).await?;
                        batch_documents = 0;
                    }
                    batch_documents += 1;
                }
                batch.push(c);
            }
            Line::Session(s) => {
                w.flush(&mut batch).await?;
                w.drain().await?;
                let (Some(sessions), false) = (options.sessions, skip_sessions) else {
                    continue;
                };
                let mut new = NewSession::new(namespace.clone()).with_metadata(s.metadata);
                if let Some(expires) = s.expires_at
                    && let Ok(ttl) = (expires - s.updated_at).to_std()
                {
                    new = new.with_ttl(ttl);
                }
                let n = s.messages.len() as u64;
                let created = sessions
                    .create(new)
                    .await
                    .map_err(|e| w.stopped(e, "sessions"))?;
                if n > 0 {
                    sessions
                        .append(
                            created.id,
                            s.messages.into_iter().map(|m| m.message).collect(),
                        )
                        .await
                        .map_err(|e| w.stopped(e, "sessions"))?;
                }
                sessions_written += 1;
                messages_written += n;
            }
            Line::End(_) => {
                w.flush(&mut batch).await?;
                w.drain().await?;
                return Ok(ImportReport {
                    header: summary.header,
                    trailer: summary.trailer,
                    documents_written: w.documents_written,
                    chunks_written: w.chunks_written,
                    documents_skipped: w.documents_skipped,
                    sessions_written,
                    messages_written,
                });
            }
        }
    }
}

/// An upsert in flight: its documents, its chunks and its result.
type Upsert<'a> = Pin<Box<dyn Future<Output = (u64, u64, Result<()>)> + Send + 'a>>;

struct Writer<'a> {
    store: &'a dyn VectorStore,
    namespace: &'a Namespace,
    resume: bool,
    total: u64,
    documents_written: u64,
    chunks_written: u64,
    documents_skipped: u64,
    in_flight: FuturesUnordered<Upsert<'a>>,
    concurrency: usize,
}

impl Writer<'_> {
    fn stopped(&self, e: Error, during: &str) -> Error {
        let message = format!(
            "the import into namespace {} stopped while writing {during} after {} of {} chunks \
             were written ({} documents, {} already present): {e}; run the import again with \
             resume to finish it",
            self.namespace,
            self.chunks_written,
            self.total,
            self.documents_written,
            self.documents_skipped
        );
        Error::backend_with_source("import", e.is_retryable(), message, e)
    }

    async fn flush(&mut self, batch: &mut Vec<EmbeddedChunk>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut documents: Vec<DocumentId> = Vec::new();
        for c in batch.iter() {
            if documents.last() != Some(&c.chunk.document_id) {
                documents.push(c.chunk.document_id.clone());
            }
        }
        if self.resume {
            let stored = self
                .store
                .document_hashes(self.namespace, &documents)
                .await
                .map_err(|e| self.stopped(e, "chunks"))?;
            let present: std::collections::HashSet<DocumentId> = stored
                .into_iter()
                .filter(|(id, hash)| {
                    batch
                        .iter()
                        .find(|c| c.chunk.document_id == *id)
                        .is_some_and(|c| c.chunk.document_hash == *hash)
                })
                .map(|(id, _)| id)
                .collect();
            if !present.is_empty() {
                batch.retain(|c| !present.contains(&c.chunk.document_id));
                self.documents_skipped += present.len() as u64;
                documents.retain(|d| !present.contains(d));
            }
        }
        if !batch.is_empty() {
            while self.in_flight.len() >= self.concurrency {
                self.reap().await?;
            }
            let chunks = std::mem::take(batch);
            let (store, namespace) = (self.store, self.namespace);
            let documents = documents.len() as u64;
            self.in_flight.push(Box::pin(async move {
                let result = store.upsert(namespace, &chunks).await;
                (documents, chunks.len() as u64, result)
            }));
        }
        batch.clear();
        Ok(())
    }

    /// Waits for one upsert in flight. An error stops the import once the
    /// other upserts in flight have ended, so that its message counts
    /// exactly what was written.
    async fn reap(&mut self) -> Result<()> {
        let Some((documents, chunks, result)) = self.in_flight.next().await else {
            return Ok(());
        };
        match result {
            Ok(()) => {
                self.documents_written += documents;
                self.chunks_written += chunks;
                Ok(())
            }
            Err(e) => {
                while let Some((documents, chunks, result)) = self.in_flight.next().await {
                    if result.is_ok() {
                        self.documents_written += documents;
                        self.chunks_written += chunks;
                    }
                }
                Err(self.stopped(e, "chunks"))
            }
        }
    }

    /// Waits for every upsert in flight.
    async fn drain(&mut self) -> Result<()> {
        while !self.in_flight.is_empty() {
            self.reap().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryVectorStore;
    use std::io::Cursor;

    fn chunk(doc: &str, position: u32, dims: usize) -> EmbeddedChunk {
        let d = crate::Document::new(format!("{doc}.md"), "some text here")
            .with_id(DocumentId::new(doc).expect("id"));
        EmbeddedChunk {
            chunk: Chunk::from_document(&d, position, 0..4),
            vector: (0..dims).map(|i| i as f32 * 0.1 + 0.3).collect(),
        }
    }

    #[tokio::test]
    async fn vectors_round_trip_bit_for_bit() {
        let store = MemoryVectorStore::new(
            crate::memory::MemoryConfig::default().with_distance(Distance::Dot),
        );
        let ns = Namespace::default();
        let mut c = chunk("a", 0, 3);
        c.vector = vec![f32::MIN_POSITIVE, -0.0, 1.0 / 3.0];
        store.upsert(&ns, std::slice::from_ref(&c)).await.unwrap();
        let info = EmbedderInfo::new("m", 3);
        let mut file = Vec::new();
        export_namespace(&store, &ns, &info, &mut file, &ExportOptions::default())
            .await
            .unwrap();
        let target = MemoryVectorStore::new(
            crate::memory::MemoryConfig::default().with_distance(Distance::Dot),
        );
        import_namespace(
            &target,
            &ns,
            &info,
            Cursor::new(file),
            &ImportOptions::default(),
        )
        .await
        .unwrap();
        let back = target.scan(&ns, None, 10).await.unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back[0].vector), bits(&c.vector));
        assert_eq!(back[0].chunk, c.chunk);
    }

    #[test]
    fn the_writer_refuses_documents_out_of_order_and_other_dimensions() {
        let header = ExportHeader {
            format: FORMAT.into(),
            version: VERSION,
            namespace: Namespace::default(),
            embedder: EmbedderInfo::new("m", 2),
            backend: "memory".into(),
            distance: Distance::Cosine,
            created_at: Utc::now(),
        };
        let mut w = ExportWriter::new(Vec::new(), &header).unwrap();
        w.write_chunk(&chunk("b", 0, 2)).unwrap();
        w.write_chunk(&chunk("b", 1, 2)).unwrap();
        let e = w.write_chunk(&chunk("a", 0, 2)).unwrap_err();
        assert!(e.to_string().contains("in id order"), "{e}");
        let e = w.write_chunk(&chunk("c", 0, 3)).unwrap_err();
        assert!(e.to_string().contains("3 dimensions"), "{e}");
        let (file, report) = w.finish().unwrap();
        assert_eq!((report.chunks, report.documents), (2, 1));
        let summary = verify_export(Cursor::new(file), None).unwrap();
        assert_eq!(summary.trailer.sha256, report.sha256);
    }

    #[test]
    fn a_newer_version_or_another_format_is_refused() {
        let gz = |text: &str| {
            let mut e = GzEncoder::new(Vec::new(), Compression::fast());
            e.write_all(text.as_bytes()).unwrap();
            e.finish().unwrap()
        };
        let e = verify_export(
            Cursor::new(gz("{\"format\":\"rag-export\",\"version\":2}\n")),
            None,
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
        assert!(e.to_string().contains("version 2"), "{e}");
        let e = verify_export(Cursor::new(gz("{\"format\":\"other\"}\n")), None).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        let e = verify_export(Cursor::new(b"plain text\n".to_vec()), None).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    }
}
