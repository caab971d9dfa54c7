//! The file format of [`MemoryVectorStore::save`]:
//!
//! ```text
//! magic   8 bytes  "RAGMEM\0\x01"
//! version u32 LE   FORMAT_VERSION
//! crc32   u32 LE   of the payload
//! length  u64 LE   of the payload
//! payload          postcard-encoded `Saved`
//! ```

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::store::{MemoryConfig, MemoryVectorStore};
use crate::error::{Error, Result};
use crate::types::{Chunk, ChunkId, DocumentId, Namespace};

const MAGIC: &[u8; 8] = b"RAGMEM\0\x01";
/// The version this build writes and reads.
const FORMAT_VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 4 + 8;

#[derive(Serialize, Deserialize)]
struct Saved {
    distance: String,
    namespaces: Vec<SavedNs>,
}

#[derive(Serialize, Deserialize)]
struct SavedNs {
    name: String,
    dims: Option<u64>,
    chunks: Vec<SavedChunk>,
}

/// Postcard is not self-describing, so JSON metadata travels as a string.
#[derive(Serialize, Deserialize)]
struct SavedChunk {
    id: String,
    document_id: String,
    source: String,
    text: String,
    start: u64,
    end: u64,
    position: u32,
    token_count: Option<u32>,
    metadata_json: String,
    document_hash: String,
    vector: Vec<f32>,
}

fn corrupt(path: &Path, message: impl Into<String>) -> Error {
    Error::Corrupt {
        location: path.display().to_string(),
        message: message.into(),
    }
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        return Error::not_found(format!("file {}", path.display()));
    }
    Error::backend_with_source(
        "memory",
        false,
        format!("{what} {}: {e}", path.display()),
        e,
    )
}

pub(super) fn save(store: &MemoryVectorStore, path: &Path) -> Result<()> {
    let mut namespaces = Vec::new();
    for (name, state) in store.snapshot() {
        let (dims, rows) = state.read().export();
        let chunks = rows
            .into_iter()
            .map(|(c, vector)| SavedChunk {
                id: c.id.to_string(),
                document_id: c.document_id.to_string(),
                source: c.source,
                text: c.text,
                start: c.byte_range.start as u64,
                end: c.byte_range.end as u64,
                position: c.position,
                token_count: c.token_count,
                metadata_json: serde_json::Value::Object(c.metadata).to_string(),
                document_hash: c.document_hash,
                vector,
            })
            .collect();
        namespaces.push(SavedNs {
            name: name.to_string(),
            dims: dims.map(|d| d as u64),
            chunks,
        });
    }
    let saved = Saved {
        distance: format!("{:?}", store.config().distance),
        namespaces,
    };
    let payload = postcard::to_stdvec(&saved)
        .map_err(|e| Error::backend_with_source("memory", false, "encoding the store", e))?;
    let mut bytes = Vec::with_capacity(HEADER + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&payload);

    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(d) = dir {
            // Make the rename durable; not supported everywhere, so best effort.
            let _ = std::fs::File::open(d).and_then(|d| d.sync_all());
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path, "writing", e)
    })
}

pub(super) fn load(path: &Path, config: MemoryConfig) -> Result<MemoryVectorStore> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, "reading", e))?;
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(corrupt(
            path,
            "not a rag memory-store file (bad magic bytes)",
        ));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let version = word(8);
    if version != FORMAT_VERSION {
        return Err(corrupt(
            path,
            format!("format version {version}; this build reads version {FORMAT_VERSION}"),
        ));
    }
    let crc = word(12);
    let mut len_bytes = [0u8; 8];
    len_bytes.copy_from_slice(&bytes[16..24]);
    let len = u64::from_le_bytes(len_bytes);
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        return Err(corrupt(
            path,
            format!(
                "truncated: header says {len} bytes, found {}",
                payload.len()
            ),
        ));
    }
    if crc32fast::hash(payload) != crc {
        return Err(corrupt(path, "checksum mismatch"));
    }
    let saved: Saved = postcard::from_bytes(payload)
        .map_err(|e| corrupt(path, format!("undecodable payload: {e}")))?;
    let distance = format!("{:?}", config.distance);
    if saved.distance != distance {
        return Err(corrupt(
            path,
            format!(
                "saved with distance {}, opened with {distance}",
                saved.distance
            ),
        ));
    }
    let store = MemoryVectorStore::new(config);
    for ns in saved.namespaces {
        let name = Namespace::new(ns.name).map_err(|e| corrupt(path, e.to_string()))?;
        let dims = ns.dims.map(|d| d as usize);
        if let (Some(d), Some(fixed)) = (dims, store.config().dimensions)
            && d != fixed
        {
            return Err(corrupt(
                path,
                format!("namespace {name} has {d} dimensions, the store is configured for {fixed}"),
            ));
        }
        let mut rows = Vec::with_capacity(ns.chunks.len());
        for c in ns.chunks {
            if dims.is_some_and(|d| d != c.vector.len()) {
                return Err(corrupt(
                    path,
                    "a vector's length differs from its namespace's",
                ));
            }
            let metadata = match serde_json::from_str(&c.metadata_json) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => return Err(corrupt(path, "chunk metadata is not a JSON object")),
            };
            let chunk = Chunk {
                id: ChunkId::from_string(c.id),
                document_id: DocumentId::new(c.document_id)
                    .map_err(|e| corrupt(path, e.to_string()))?,
                source: c.source,
                text: c.text,
                byte_range: c.start as usize..c.end as usize,
                position: c.position,
                token_count: c.token_count,
                metadata,
                document_hash: c.document_hash,
            };
            rows.push(store.prepare(chunk, c.vector));
        }
        store.install(&name, dims, rows);
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::SearchRequest;
    use crate::traits::VectorStore;
    use crate::types::{Document, EmbeddedChunk};
    use serde_json::json;

    async fn filled() -> MemoryVectorStore {
        let s = MemoryVectorStore::default();
        let ns = Namespace::new("a").unwrap();
        let doc =
            Document::new("d.md", "hello persistent world").with_metadata(json!({"k": [1, "x"]}));
        let chunk = Chunk::from_document(&doc, 0, 0..doc.text().len());
        s.upsert(
            &ns,
            &[EmbeddedChunk {
                chunk,
                vector: vec![1.0, 0.0, 0.0],
            }],
        )
        .await
        .unwrap();
        s
    }

    #[tokio::test]
    async fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.ragmem");
        let s = filled().await;
        s.save(&path).unwrap();
        let back = MemoryVectorStore::load(&path, MemoryConfig::default()).unwrap();
        let ns = Namespace::new("a").unwrap();
        assert_eq!(back.count(&ns).await.unwrap(), 1);
        let hits = back
            .search(&ns, SearchRequest::keyword("persistent", 1))
            .await
            .unwrap();
        assert_eq!(hits[0].chunk.metadata["k"], json!([1, "x"]));
        let hits = back
            .search(&ns, SearchRequest::dense(vec![1.0, 0.0, 0.0], 1))
            .await
            .unwrap();
        assert!((hits[0].score - 1.0).abs() < 1e-6);
    }

    #[tokio::test]
    async fn corrupt_and_foreign_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.ragmem");
        filled().await.save(&path).unwrap();
        let good = std::fs::read(&path).unwrap();

        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        std::fs::write(&path, &flipped).unwrap();
        let e = MemoryVectorStore::load(&path, MemoryConfig::default()).unwrap_err();
        assert!(
            matches!(e, Error::Corrupt { .. }) && e.to_string().contains("checksum"),
            "{e}"
        );

        std::fs::write(&path, &good[..good.len() - 3]).unwrap();
        let e = MemoryVectorStore::load(&path, MemoryConfig::default()).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");

        std::fs::write(&path, b"{\"json\": true}").unwrap();
        let e = MemoryVectorStore::load(&path, MemoryConfig::default()).unwrap_err();
        assert!(e.to_string().contains("magic"), "{e}");

        let mut future = good.clone();
        future[8] = 9;
        std::fs::write(&path, &future).unwrap();
        let e = MemoryVectorStore::load(&path, MemoryConfig::default()).unwrap_err();
        assert!(e.to_string().contains("version 9"), "{e}");

        let e = MemoryVectorStore::load(dir.path().join("missing"), MemoryConfig::default())
            .unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");

        // Random garbage with a valid header never panics.
        let mut garbage = good[..HEADER].to_vec();
        let body: Vec<u8> = (0..200u32).map(|i| (i * 7919 % 251) as u8).collect();
        garbage[12..16].copy_from_slice(&crc32fast::hash(&body).to_le_bytes());
        garbage[16..24].copy_from_slice(&(body.len() as u64).to_le_bytes());
        garbage.extend_from_slice(&body);
        std::fs::write(&path, &garbage).unwrap();
        assert!(MemoryVectorStore::load(&path, MemoryConfig::default()).is_err());
    }
}
