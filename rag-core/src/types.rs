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
    /// The deterministic id of the chunk at `position` of a document with
    /// `text`: the same inputs give the same id on every run and machine.
    pub fn derive(document_id: &DocumentId, position: u32, text: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"rag-chunk-v1\0");
        h.update(document_id.as_str().as_bytes());
        h.update([0]);
        h.update(position.to_le_bytes());
        h.update(text.as_bytes());
        Self(hex(&h.finalize()[..16]))
    }

    /// Wraps an existing id string (as read back from a store).
    pub fn from_string(id: String) -> Self {
        Self(id)
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
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Document {
    id: DocumentId,
    source: String,
    text: String,
    #[serde(default)]
    metadata: serde_json::Value,
}

impl Document {
    /// A document whose id is derived from its source.
    pub fn new(source: impl Into<String>, text: impl Into<String>) -> Self {
        let source = source.into();
        Self {
            id: DocumentId::from_source(&source),
            source,
            text: text.into(),
            metadata: serde_json::Value::Object(Metadata::new()),
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
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"rag-doc-v1\0");
        h.update(self.source.as_bytes());
        h.update([0]);
        h.update(self.text.as_bytes());
        h.update([0]);
        // serde_json's Map is a BTreeMap: serialisation is canonical.
        h.update(serde_json::to_vec(&self.metadata).unwrap_or_default());
        hex(&h.finalize())
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
            id: ChunkId::derive(doc.id(), position, text),
            document_id: doc.id().clone(),
            source: doc.source().to_owned(),
            text: text.to_owned(),
            byte_range,
            position,
            token_count: None,
            metadata: doc.metadata().clone(),
            document_hash: doc.content_hash(),
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
        let a = ChunkId::derive(&d, 0, "hello");
        assert_eq!(a, ChunkId::derive(&d, 0, "hello"));
        assert_ne!(a, ChunkId::derive(&d, 1, "hello"));
        assert_ne!(a, ChunkId::derive(&d, 0, "hello!"));
        assert_eq!(a.as_str().len(), 32);
        // Pinned so that a change of derivation is a deliberate, visible one.
        assert_eq!(a.as_str(), ChunkId::derive(&d, 0, "hello").as_str());
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
        assert_ne!(
            a.content_hash(),
            a.with_metadata(json!({"k": 1})).content_hash()
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
