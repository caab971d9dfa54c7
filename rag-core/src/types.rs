//! Documents, chunks, namespaces and their deterministic ids.

use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Metadata of a document or chunk: a JSON object.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// Longest id (document id, namespace) accepted, in bytes.
pub const MAX_ID_BYTES: usize = 512;

/// Longest namespace name accepted, in bytes.
pub const MAX_NAMESPACE_BYTES: usize = 64;

/// A tenant's isolated partition of a store.
///
/// Names are 1 to 64 ASCII letters, digits, `_` or `-`, so that adapters can
/// use them in table or collection names without quoting surprises.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Namespace(String);

impl Namespace {
    /// The namespace used when none is given: `default`.
    pub const DEFAULT: &'static str = "default";

    /// A validated namespace.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_NAMESPACE_BYTES {
            return Err(Error::invalid_input(format!(
                "namespace must be 1 to {MAX_NAMESPACE_BYTES} bytes, got {}",
                name.len()
            )));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(Error::invalid_input(format!(
                "namespace may contain only ASCII letters, digits, '_' and '-', found {c:?}"
            )));
        }
        Ok(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Namespace {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::new(value)
    }
}

impl TryFrom<&str> for Namespace {
    type Error = Error;
    fn try_from(value: &str) -> Result<Self> {
        Self::new(value)
    }
}

impl From<Namespace> for String {
    fn from(value: Namespace) -> Self {
        value.0
    }
}

impl AsRef<str> for Namespace {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

string_id!(
    /// A document's id: the caller's own, or derived from its source.
    DocumentId
);

string_id!(
    /// A chunk's id, derived from its document id, position and text
    /// ([`ChunkId::derive`]): 32 lowercase hex digits (128 bits), so adapters
    /// can turn it into a UUID.
    ChunkId
);

impl DocumentId {
    /// A caller-chosen id: 1 to 512 bytes, no control characters.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        validate_id("document id", &id)?;
        Ok(Self(id))
    }

    /// The id derived from a source: the source itself when it is a valid id,
    /// otherwise `sha256:` and the first 32 hex digits of its SHA-256.
    pub fn from_source(source: &str) -> Self {
        if validate_id("document id", source).is_ok() {
            Self(source.to_owned())
        } else {
            Self(format!("sha256:{}", &hex_sha256(source.as_bytes())[..32]))
        }
    }
}

impl ChunkId {
    /// The deterministic id of the chunk at `position` of a document, covering
    /// `byte_range` of its text: the same document (id and content hash) and
    /// chunking give the same ids on every run and machine, and any change of
    /// the document's content changes them.
    pub fn derive(
        document_id: &DocumentId,
        document_hash: &str,
        position: u32,
        byte_range: &Range<usize>,
    ) -> Self {
        ChunkIdDeriver::new(document_id, document_hash).derive(position, byte_range)
    }

    /// Wraps an existing id string (as read back from a store).
    pub fn from_string(id: String) -> Self {
        Self(id)
    }
}

/// [`ChunkId::derive`] for many chunks of one document: the document's part
/// of the hash is computed once.
#[derive(Clone)]
pub struct ChunkIdDeriver(Sha256);

impl fmt::Debug for ChunkIdDeriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChunkIdDeriver")
    }
}

impl ChunkIdDeriver {
    /// A deriver for the chunks of one document.
    pub fn new(document_id: &DocumentId, document_hash: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"rag-chunk-v1\0");
        h.update(document_id.as_str().as_bytes());
        h.update([0]);
        h.update(document_hash.as_bytes());
        h.update([0]);
        Self(h)
    }

    /// The id of the chunk at `position` covering `byte_range`.
    pub fn derive(&self, position: u32, byte_range: &Range<usize>) -> ChunkId {
        let mut h = self.0.clone();
        h.update(position.to_le_bytes());
        h.update((byte_range.start as u64).to_le_bytes());
        h.update((byte_range.end as u64).to_le_bytes());
        ChunkId(hex(&h.finalize()[..16]))
    }
}

fn validate_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid_input(format!("{what} must not be empty")));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(Error::invalid_input(format!(
            "{what} is {} bytes, the limit is {MAX_ID_BYTES}",
            id.len()
        )));
    }
    if id.chars().any(char::is_control) {
        return Err(Error::invalid_input(format!(
            "{what} must not contain control characters"
        )));
    }
    Ok(())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A source document: text with an id, a source (path, URL) and metadata.
///
/// ```
/// use rag_core::Document;
/// use serde_json::json;
///
/// let doc = Document::new("handbook.md", "# Keys\nRotate keys monthly.")
///     .with_metadata(json!({"team": "ops"}));
/// assert_eq!(doc.id().as_str(), "handbook.md");
/// doc.validate().unwrap();
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Document {
    id: DocumentId,
    source: String,
    text: String,
    // An absent `metadata` is an empty object, as with `Document::new`
    // (`serde(default)` alone would make it `null`, which `validate` rejects).
    #[serde(default = "empty_metadata")]
    metadata: serde_json::Value,
    /// Computed once, on first use.
    #[serde(skip)]
    hash: std::sync::OnceLock<String>,
}

impl PartialEq for Document {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.source == other.source
            && self.text == other.text
            && self.metadata == other.metadata
    }
}

fn empty_metadata() -> serde_json::Value {
    serde_json::Value::Object(Metadata::new())
}

impl Document {
    /// A document whose id is derived from its source.
    pub fn new(source: impl Into<String>, text: impl Into<String>) -> Self {
        let source = source.into();
        Self {
            id: DocumentId::from_source(&source),
            source,
            text: text.into(),
            metadata: empty_metadata(),
            hash: std::sync::OnceLock::new(),
        }
    }

    /// Sets the caller's own id.
    pub fn with_id(mut self, id: DocumentId) -> Self {
        self.id = id;
        self
    }

    /// Sets the metadata. It must be a JSON object; anything else is reported
    /// by [`Document::validate`] (and so by ingestion) as `InvalidInput`.
    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self.hash = std::sync::OnceLock::new();
        self
    }

    /// The id.
    pub fn id(&self) -> &DocumentId {
        &self.id
    }

    /// Where the document came from: a path or URL.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The metadata object (empty when it was set to something that is not
    /// an object; `validate` reports that case).
    pub fn metadata(&self) -> &Metadata {
        static EMPTY: std::sync::OnceLock<Metadata> = std::sync::OnceLock::new();
        match &self.metadata {
            serde_json::Value::Object(m) => m,
            _ => EMPTY.get_or_init(Metadata::new),
        }
    }

    /// Checks that the document can be ingested: a non-empty text, metadata
    /// that is a JSON object with valid keys.
    pub fn validate(&self) -> Result<()> {
        validate_id("document id", self.id.as_str())?;
        if self.text.trim().is_empty() {
            return Err(Error::invalid_input(format!(
                "document {:?} has no text",
                self.id.as_str()
            )));
        }
        match &self.metadata {
            serde_json::Value::Object(m) => {
                for key in m.keys() {
                    crate::filter::validate_key(key)?;
                }
                Ok(())
            }
            other => Err(Error::invalid_input(format!(
                "metadata of document {:?} must be a JSON object, got {}",
                self.id.as_str(),
                json_type_name(other)
            ))),
        }
    }

    /// The content hash: SHA-256 over the source, text and metadata (keys
    /// sorted), hex. Ingestion skips a document whose hash is unchanged.
    /// Computed once per document value and cached.
    pub fn content_hash(&self) -> &str {
        self.hash.get_or_init(|| self.compute_hash())
    }

    fn compute_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"rag-doc-v1\0");
        h.update(self.source.as_bytes());
        h.update([0]);
        h.update(self.text.as_bytes());
        h.update([0]);
        // Keys sorted at every level: serde_json's Map keeps insertion order
        // when any crate in the build enables its `preserve_order` feature
        // (lancedb does), and the hash must not depend on it.
        h.update(serde_json::to_vec(&sorted_keys(&self.metadata)).unwrap_or_default());
        hex(&h.finalize())
    }
}

/// `v` with every object's keys in sorted order.
fn sorted_keys(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut entries: Vec<(&String, &serde_json::Value)> = m.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted_keys(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(sorted_keys).collect())
        }
        other => other.clone(),
    }
}

pub(crate) fn json_type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A piece of a document, the unit that is embedded, stored and retrieved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Deterministic id ([`ChunkId::derive`]).
    pub id: ChunkId,
    /// The document it belongs to.
    pub document_id: DocumentId,
    /// The document's source.
    pub source: String,
    /// The text; equal to `document.text()[byte_range]`.
    pub text: String,
    /// Where the text is in the document, in bytes.
    pub byte_range: Range<usize>,
    /// 0-based position among the document's chunks.
    pub position: u32,
    /// Tokens in `text`, when the chunker counted them.
    pub token_count: Option<u32>,
    /// The document's metadata.
    pub metadata: Metadata,
    /// The document's content hash ([`Document::content_hash`]).
    pub document_hash: String,
}

impl Chunk {
    /// A chunk of `doc` covering `byte_range`, with its deterministic id.
    ///
    /// # Panics
    /// Never for ranges produced from the document itself; a range that is
    /// out of bounds or not on character boundaries is clamped to an empty
    /// text at the start, so callers should pass ranges of the document.
    pub fn from_document(doc: &Document, position: u32, byte_range: Range<usize>) -> Self {
        let text = doc.text().get(byte_range.clone()).unwrap_or_default();
        Self {
            id: ChunkId::derive(doc.id(), doc.content_hash(), position, &byte_range),
            document_id: doc.id().clone(),
            source: doc.source().to_owned(),
            text: text.to_owned(),
            byte_range,
            position,
            token_count: None,
            metadata: doc.metadata().clone(),
            document_hash: doc.content_hash().to_owned(),
        }
    }
}

/// A chunk with its embedding, as handed to [`crate::VectorStore::upsert`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddedChunk {
    /// The chunk.
    pub chunk: Chunk,
    /// Its embedding; its length must match the store's dimensions.
    pub vector: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn namespace_validation() {
        assert!(Namespace::new("tenant-1_a").is_ok());
        assert!(Namespace::new("").is_err());
        assert!(Namespace::new("a b").is_err());
        assert!(Namespace::new("x".repeat(65)).is_err());
        assert!(Namespace::new("é").is_err());
        let err = serde_json::from_value::<Namespace>(json!("bad name")).unwrap_err();
        assert!(err.to_string().contains("namespace"));
    }

    #[test]
    fn ids_are_deterministic() {
        let d = DocumentId::new("doc").unwrap();
        let a = ChunkId::derive(&d, "h1", 0, &(0..5));
        assert_eq!(a, ChunkId::derive(&d, "h1", 0, &(0..5)));
        assert_ne!(a, ChunkId::derive(&d, "h1", 1, &(0..5)));
        assert_ne!(a, ChunkId::derive(&d, "h2", 0, &(0..5)));
        assert_ne!(a, ChunkId::derive(&d, "h1", 0, &(0..6)));
        assert_ne!(
            a,
            ChunkId::derive(&DocumentId::new("doc2").unwrap(), "h1", 0, &(0..5))
        );
        assert_eq!(a.as_str().len(), 32);
        // Pinned: ids are stored by every backend, so a change of derivation
        // must be deliberate (and bump "rag-chunk-v1").
        assert_eq!(a.as_str(), "1282edf98deda797c9f5efcd9344cca5");
        let long = "x".repeat(600);
        assert!(
            DocumentId::from_source(&long)
                .as_str()
                .starts_with("sha256:")
        );
        assert_eq!(DocumentId::from_source("a.md").as_str(), "a.md");
    }

    #[test]
    fn content_hash_covers_text_source_and_metadata() {
        let a = Document::new("a", "text");
        assert_eq!(a.content_hash(), Document::new("a", "text").content_hash());
        assert_ne!(a.content_hash(), Document::new("a", "text2").content_hash());
        assert_ne!(a.content_hash(), Document::new("b", "text").content_hash());
        let before = a.content_hash().to_owned();
        // Key order never matters, whatever serde_json's features.
        let ab: serde_json::Value =
            serde_json::from_str(r#"{"a": 1, "b": {"y": 2, "x": [{"q": 1, "p": 2}]}}"#).unwrap();
        let ba: serde_json::Value =
            serde_json::from_str(r#"{"b": {"x": [{"p": 2, "q": 1}], "y": 2}, "a": 1}"#).unwrap();
        assert_eq!(
            Document::new("a", "text").with_metadata(ab).content_hash(),
            Document::new("a", "text").with_metadata(ba).content_hash()
        );
        // The cached hash is dropped when metadata changes.
        let b = a.with_metadata(json!({"k": 1}));
        assert_ne!(before, b.content_hash());
    }

    #[test]
    fn deserialized_document_without_metadata_is_valid() {
        let doc: Document =
            serde_json::from_value(json!({"id": "a", "source": "a.md", "text": "t"})).unwrap();
        doc.validate().unwrap();
        assert_eq!(
            doc,
            Document::new("a.md", "t").with_id(DocumentId::new("a").unwrap())
        );
    }

    #[test]
    fn validate_rejects_malformed_documents() {
        assert!(Document::new("a", "   ").validate().is_err());
        let e = Document::new("a", "t")
            .with_metadata(json!([1, 2]))
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
        assert!(
            Document::new("a", "t")
                .with_metadata(json!({"": 1}))
                .validate()
                .is_err()
        );
    }
}
