//! Conversation sessions.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::chat::Message;
use crate::types::Namespace;

/// A session id (a UUID).
pub type SessionId = uuid::Uuid;

/// A stored conversation's header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Session {
    /// The id.
    pub id: SessionId,
    /// The tenant it belongs to.
    pub namespace: Namespace,
    /// Free-form data (title, user id).
    pub metadata: serde_json::Value,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When a message was last appended (or creation).
    pub updated_at: DateTime<Utc>,
    /// When it expires unless used again; `None` never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Messages stored.
    pub message_count: usize,
}

impl Session {
    /// A header for a session created at `created_at`: no metadata (`null`),
    /// `updated_at == created_at`, no expiry, no messages. Backends outside
    /// this crate build headers with it and then set the public fields.
    pub fn new(id: SessionId, namespace: Namespace, created_at: DateTime<Utc>) -> Self {
        Self {
            id,
            namespace,
            metadata: serde_json::Value::Null,
            created_at,
            updated_at: created_at,
            expires_at: None,
            message_count: 0,
        }
    }
}

/// What to create a session with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NewSession {
    /// The tenant.
    pub namespace: Namespace,
    /// Free-form data.
    pub metadata: serde_json::Value,
    /// Idle time after which it expires: each append pushes expiry forward.
    /// `None` uses the store's default.
    pub ttl: Option<Duration>,
}

impl NewSession {
    /// A session in `namespace`.
    pub fn new(namespace: Namespace) -> Self {
        Self {
            namespace,
            metadata: serde_json::Value::Null,
            ttl: None,
        }
    }
    /// Sets the idle time to live.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// Sets metadata.
    pub fn with_metadata(mut self, metadata: serde_json::Value) -> Self {
        self.metadata = metadata;
        self
    }
}

/// A message with the time it was stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// The message.
    pub message: Message,
    /// When it was appended.
    pub at: DateTime<Utc>,
}
