//! [`MemorySessionStore`]: the in-memory reference [`SessionStore`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::chat::Message;
use crate::error::{Error, Result};
use crate::session::{NewSession, Session, SessionId, StoredMessage};
use crate::traits::SessionStore;
use crate::types::Namespace;

/// A source of the current time, injectable for tests.
type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Configuration of a [`MemorySessionStore`].
///
/// Missing fields take their defaults when deserialized.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct MemorySessionConfig {
    /// Idle time to live of a session created with `NewSession::ttl = None`;
    /// `None` means such sessions never expire. 24 hours by default.
    pub default_ttl: Option<Duration>,
    /// Most sessions held, across all namespaces; 10 000 by default. Creating
    /// one more first drops every expired session, then, if still full, the
    /// least recently updated one. `0` behaves like `1`: the session just
    /// created is always kept.
    pub max_sessions: usize,
    /// Most messages kept per session; 1 000 by default. Appending beyond it
    /// drops the oldest messages, so a session keeps its latest
    /// `max_messages`. `0` keeps none.
    pub max_messages: usize,
}

impl Default for MemorySessionConfig {
    fn default() -> Self {
        Self {
            default_ttl: Some(Duration::from_secs(24 * 60 * 60)),
            max_sessions: 10_000,
            max_messages: 1_000,
        }
    }
}

impl MemorySessionConfig {
    /// Sets the idle TTL used when a [`NewSession`] has none (`None`: never
    /// expire).
    pub fn with_default_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.default_ttl = ttl;
        self
    }
    /// Sets the most sessions held.
    pub fn with_max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n;
        self
    }
    /// Sets the most messages kept per session.
    pub fn with_max_messages(mut self, n: usize) -> Self {
        self.max_messages = n;
        self
    }
}

/// The in-memory reference [`SessionStore`].
///
/// Every other session backend is compared with it by
/// `testkit::session_store` (feature `testkit`), so its rules are the
/// contract:
///
/// * **Ids.** [`create`](SessionStore::create) makes a random UUID v4 id.
///   `created_at == updated_at` on creation, `message_count == 0`.
/// * **Sliding TTL.** A session's TTL is `NewSession::ttl`, or
///   [`MemorySessionConfig::default_ttl`] when that is `None` (and when both
///   are `None` it never expires). `expires_at = updated_at + ttl`, and every
///   [`append`](SessionStore::append), even of no messages, is activity: it
///   sets `updated_at` to now and so pushes `expires_at` forward. Reads
///   (`get`, `history`, `list`) are not activity. A TTL too large to
///   represent as a date means no expiry (`expires_at = None`).
/// * **Expired is gone.** A session with `expires_at <= now` is treated as
///   missing by every method — `get`, `append`, `history` and `delete`
///   return [`Error::NotFound`], `list` omits it — before
///   [`expire`](SessionStore::expire) runs. `expire` removes every expired
///   session and returns how many it removed. A TTL of [`Duration::ZERO`]
///   therefore makes a session that is expired at once.
/// * **Messages.** `append` stores its messages in order and contiguously,
///   all with the same `at`, even under concurrent appends to the session.
///   Beyond [`MemorySessionConfig::max_messages`] the oldest messages are
///   dropped; `message_count` is the number stored (so at most
///   `max_messages`). `history(id, window)` is the last `window` messages,
///   oldest first (`0` gives none).
/// * **Listing.** `list(namespace, limit)` returns at most `limit` live
///   sessions of that namespace only, most recently updated first; sessions
///   updated at the same instant are ordered by activity, latest first.
/// * **Capacity.** Creating a session when
///   [`MemorySessionConfig::max_sessions`] are held first removes every
///   expired session, then, if still full, evicts the least recently updated
///   sessions (in any namespace) until there is room.
/// * **Time** comes from `chrono::Utc::now()`, or from the clock given to
///   [`with_clock`](Self::with_clock), read once per call.
/// * **Concurrency.** One `parking_lot::RwLock` guards all sessions; reads
///   share it, writes take it briefly, and it is never held across an
///   `.await`.
///
/// ```
/// use std::time::Duration;
/// use rag_core::{Message, MemorySessionStore, Namespace, NewSession, SessionStore};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemorySessionStore::default();
/// let s = store
///     .create(NewSession::new(Namespace::default()).with_ttl(Duration::from_secs(3600)))
///     .await
///     .unwrap();
/// store
///     .append(s.id, vec![Message::user("hi"), Message::assistant("hello")])
///     .await
///     .unwrap();
/// let last = store.history(s.id, 1).await.unwrap();
/// assert_eq!(last[0].message.content, "hello");
/// assert_eq!(store.get(s.id).await.unwrap().message_count, 2);
/// # });
/// ```
pub struct MemorySessionStore {
    config: MemorySessionConfig,
    clock: Clock,
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<SessionId, Entry>,
    /// Activity counter: orders sessions updated at the same instant.
    seq: u64,
}

#[derive(Debug)]
struct Entry {
    namespace: Namespace,
    metadata: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// `None`: never expires.
    ttl: Option<TimeDelta>,
    expires_at: Option<DateTime<Utc>>,
    /// Value of [`Inner::seq`] at the last activity.
    seq: u64,
    messages: VecDeque<StoredMessage>,
}

impl Entry {
    fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Records activity at `now`: slides the expiry forward.
    fn touch(&mut self, now: DateTime<Utc>, seq: u64) {
        self.updated_at = now;
        self.seq = seq;
        self.expires_at = self.ttl.and_then(|ttl| now.checked_add_signed(ttl));
    }

    fn header(&self, id: SessionId) -> Session {
        Session {
            id,
            namespace: self.namespace.clone(),
            metadata: self.metadata.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
            message_count: self.messages.len(),
        }
    }

    /// Recency key: larger is more recently updated.
    fn recency(&self) -> (DateTime<Utc>, u64) {
        (self.updated_at, self.seq)
    }
}

impl Inner {
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The live session `id`, or `NotFound`.
    fn live(&self, id: SessionId, now: DateTime<Utc>) -> Result<&Entry> {
        self.sessions
            .get(&id)
            .filter(|e| !e.is_expired(now))
            .ok_or_else(|| not_found(id))
    }

    /// Removes expired sessions; returns how many.
    fn remove_expired(&mut self, now: DateTime<Utc>) -> usize {
        let before = self.sessions.len();
        self.sessions.retain(|_, e| !e.is_expired(now));
        before - self.sessions.len()
    }

    /// Makes room for one more session under `max`.
    fn make_room(&mut self, max: usize, now: DateTime<Utc>) {
        let max = max.max(1);
        if self.sessions.len() < max {
            return;
        }
        self.remove_expired(now);
        while self.sessions.len() >= max {
            let oldest = self
                .sessions
                .iter()
                .min_by_key(|(_, e)| e.recency())
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => {
                    self.sessions.remove(&id);
                    tracing::debug!(session = %id, "evicted least recently updated session");
                }
                None => break,
            }
        }
    }
}

fn not_found(id: SessionId) -> Error {
    Error::not_found(format!("session {id}"))
}

impl Default for MemorySessionStore {
    fn default() -> Self {
        Self::new(MemorySessionConfig::default())
    }
}

impl fmt::Debug for MemorySessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySessionStore")
            .field("config", &self.config)
            .field("clock", &"<fn>")
            .field("sessions", &self.inner.read().sessions.len())
            .finish()
    }
}

impl MemorySessionStore {
    /// An empty store using the system clock.
    pub fn new(config: MemorySessionConfig) -> Self {
        Self {
            config,
            clock: Arc::new(Utc::now),
            inner: RwLock::new(Inner::default()),
        }
    }

    /// Replaces the clock, so that tests of expiry can move time instead of
    /// sleeping.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use chrono::{DateTime, Utc};
    /// use rag_core::MemorySessionStore;
    ///
    /// let fixed = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
    /// let store = MemorySessionStore::default().with_clock(Arc::new(move || fixed));
    /// # let _ = store;
    /// ```
    pub fn with_clock(mut self, clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>) -> Self {
        self.clock = clock;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &MemorySessionConfig {
        &self.config
    }

    fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// Writes every live session, with its messages, ids and times, to
    /// `path` as JSON (to a temporary file beside it, then renamed, so a
    /// crash never leaves half a file). [`MemorySessionStore::load`] reads
    /// it back: a command-line chat or a one-process server keeps its
    /// sessions across restarts this way.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let now = self.now();
        let saved = {
            let inner = self.inner.read();
            let mut sessions: Vec<SavedSession> = inner
                .sessions
                .iter()
                .filter(|(_, e)| !e.is_expired(now))
                .map(|(id, e)| SavedSession {
                    id: *id,
                    namespace: e.namespace.as_str().to_owned(),
                    metadata: e.metadata.clone(),
                    created_at: e.created_at,
                    updated_at: e.updated_at,
                    ttl_secs: e.ttl.map(|t| t.num_seconds()),
                    messages: e.messages.iter().cloned().collect(),
                })
                .collect();
            sessions.sort_by_key(|s| (s.updated_at, s.id));
            SavedSessions {
                format: SESSIONS_FORMAT.to_owned(),
                sessions,
            }
        };
        let io = |what: &str, e: std::io::Error| {
            Error::backend_with_source(
                "memory",
                false,
                format!("{what} {}: {e}", path.display()),
                e,
            )
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
        }
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(&saved)
            .map_err(|e| Error::invalid_input(format!("sessions are not serializable: {e}")))?;
        std::fs::write(&tmp, bytes).map_err(|e| io("writing", e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("renaming into", e))
    }

    /// A store holding the sessions [`MemorySessionStore::save`] wrote to
    /// `path`, with their ids, times and expiry (a session that has expired
    /// since is missing, as always). `NotFound` when the file is missing,
    /// `Corrupt` when it is not such a file.
    pub fn load(path: &std::path::Path, config: MemorySessionConfig) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::not_found(format!("file {}", path.display()))
            } else {
                Error::backend_with_source(
                    "memory",
                    false,
                    format!("reading {}: {e}", path.display()),
                    e,
                )
            }
        })?;
        let corrupt = |message: String| Error::Corrupt {
            location: path.display().to_string(),
            message,
        };
        let saved: SavedSessions = serde_json::from_slice(&bytes)
            .map_err(|e| corrupt(format!("not a sessions file: {e}")))?;
        if saved.format != SESSIONS_FORMAT {
            return Err(corrupt(format!(
                "format {:?}, this build reads {SESSIONS_FORMAT:?}",
                saved.format
            )));
        }
        let store = Self::new(config);
        {
            let mut inner = store.inner.write();
            for s in saved.sessions {
                let namespace = Namespace::new(s.namespace)
                    .map_err(|e| corrupt(format!("session {}: {e}", s.id)))?;
                let ttl = s.ttl_secs.and_then(TimeDelta::try_seconds);
                let seq = inner.next_seq();
                let mut messages: VecDeque<StoredMessage> = s.messages.into();
                let excess = messages.len().saturating_sub(store.config.max_messages);
                messages.drain(..excess);
                let entry = Entry {
                    namespace,
                    metadata: s.metadata,
                    created_at: s.created_at,
                    updated_at: s.updated_at,
                    ttl,
                    expires_at: ttl.and_then(|t| s.updated_at.checked_add_signed(t)),
                    seq,
                    messages,
                };
                inner.sessions.insert(s.id, entry);
            }
        }
        Ok(store)
    }
}

/// The format name written by [`MemorySessionStore::save`].
const SESSIONS_FORMAT: &str = "rag-sessions/1";

#[derive(Serialize, Deserialize)]
struct SavedSessions {
    format: String,
    sessions: Vec<SavedSession>,
}

#[derive(Serialize, Deserialize)]
struct SavedSession {
    id: SessionId,
    namespace: String,
    metadata: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// `None`: never expires.
    ttl_secs: Option<i64>,
    messages: Vec<StoredMessage>,
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn create(&self, new: NewSession) -> Result<Session> {
        let now = self.now();
        let ttl = new
            .ttl
            .or(self.config.default_ttl)
            // Too large to be a date offset: never expires.
            .and_then(|ttl| TimeDelta::from_std(ttl).ok());
        let id = SessionId::new_v4();
        let mut inner = self.inner.write();
        inner.make_room(self.config.max_sessions, now);
        let seq = inner.next_seq();
        let mut entry = Entry {
            namespace: new.namespace,
            metadata: new.metadata,
            created_at: now,
            updated_at: now,
            ttl,
            expires_at: None,
            seq,
            messages: VecDeque::new(),
        };
        entry.touch(now, seq);
        let session = entry.header(id);
        inner.sessions.insert(id, entry);
        Ok(session)
    }

    async fn get(&self, id: SessionId) -> Result<Session> {
        let now = self.now();
        let inner = self.inner.read();
        inner.live(id, now).map(|e| e.header(id))
    }

    async fn append(&self, id: SessionId, messages: Vec<Message>) -> Result<()> {
        let now = self.now();
        let max = self.config.max_messages;
        let mut guard = self.inner.write();
        let Inner { sessions, seq } = &mut *guard;
        let entry = sessions
            .get_mut(&id)
            .filter(|e| !e.is_expired(now))
            .ok_or_else(|| not_found(id))?;
        *seq += 1;
        entry.touch(now, *seq);
        // Only the last `max` of a large batch could survive the trim.
        let skip = messages.len().saturating_sub(max);
        entry.messages.extend(
            messages
                .into_iter()
                .skip(skip)
                .map(|message| StoredMessage { message, at: now }),
        );
        let excess = entry.messages.len().saturating_sub(max);
        entry.messages.drain(..excess);
        Ok(())
    }

    async fn history(&self, id: SessionId, window: usize) -> Result<Vec<StoredMessage>> {
        let now = self.now();
        let inner = self.inner.read();
        let entry = inner.live(id, now)?;
        let skip = entry.messages.len().saturating_sub(window);
        Ok(entry.messages.iter().skip(skip).cloned().collect())
    }

    async fn list(&self, namespace: &Namespace, limit: usize) -> Result<Vec<Session>> {
        let now = self.now();
        let inner = self.inner.read();
        let mut found: Vec<(SessionId, &Entry)> = inner
            .sessions
            .iter()
            .filter(|(_, e)| e.namespace == *namespace && !e.is_expired(now))
            .map(|(id, e)| (*id, e))
            .collect();
        found.sort_unstable_by_key(|(_, e)| std::cmp::Reverse(e.recency()));
        Ok(found
            .into_iter()
            .take(limit)
            .map(|(id, e)| e.header(id))
            .collect())
    }

    async fn delete(&self, id: SessionId) -> Result<()> {
        let now = self.now();
        let mut inner = self.inner.write();
        inner.live(id, now)?;
        inner.sessions.remove(&id);
        Ok(())
    }

    async fn expire(&self) -> Result<usize> {
        let now = self.now();
        let removed = self.inner.write().remove_expired(now);
        if removed > 0 {
            tracing::debug!(removed, "expired sessions removed");
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use serde_json::json;

    /// A clock the test moves by hand.
    #[derive(Clone)]
    struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

    impl ManualClock {
        fn new() -> Self {
            Self(Arc::new(Mutex::new(
                DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            )))
        }
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock()
        }
        fn advance(&self, d: Duration) {
            *self.0.lock() += TimeDelta::from_std(d).unwrap();
        }
        fn clock(&self) -> Clock {
            let c = self.clone();
            Arc::new(move || c.now())
        }
    }

    fn ns(name: &str) -> Namespace {
        Namespace::new(name).unwrap()
    }

    fn store(config: MemorySessionConfig, clock: &ManualClock) -> MemorySessionStore {
        MemorySessionStore::new(config).with_clock(clock.clock())
    }

    const MIN: Duration = Duration::from_secs(60);

    fn is_not_found<T>(r: &Result<T>) -> bool {
        matches!(r, Err(Error::NotFound { .. }))
    }

    #[test]
    fn config_defaults_builders_and_serde() {
        let c = MemorySessionConfig::default();
        assert_eq!(c.default_ttl, Some(Duration::from_secs(86_400)));
        assert_eq!(c.max_sessions, 10_000);
        assert_eq!(c.max_messages, 1_000);
        let c = c
            .with_default_ttl(None)
            .with_max_sessions(7)
            .with_max_messages(3);
        assert_eq!(
            (c.default_ttl, c.max_sessions, c.max_messages),
            (None, 7, 3)
        );
        let back: MemorySessionConfig =
            serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let partial: MemorySessionConfig =
            serde_json::from_value(json!({"max_messages": 5})).unwrap();
        assert_eq!(partial, MemorySessionConfig::default().with_max_messages(5));
    }

    #[tokio::test]
    async fn saved_sessions_load_with_their_ids_and_expired_ones_are_dropped() {
        let clock = ManualClock::new();
        let store =
            MemorySessionStore::new(MemorySessionConfig::default()).with_clock(clock.clock());
        let kept = store
            .create(NewSession::new(ns("a")).with_metadata(json!({"title": "t"})))
            .await
            .unwrap();
        store
            .append(
                kept.id,
                vec![Message::user("q"), Message::assistant("a [1]")],
            )
            .await
            .unwrap();
        let short = store
            .create(NewSession::new(ns("a")).with_ttl(Duration::from_secs(60)))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/sessions.json");
        store.save(&path).unwrap();

        let loaded = MemorySessionStore::load(&path, MemorySessionConfig::default())
            .unwrap()
            .with_clock(clock.clock());
        let got = loaded.get(kept.id).await.unwrap();
        assert_eq!(got.metadata, json!({"title": "t"}));
        assert_eq!(got.message_count, 2);
        assert_eq!(got.created_at, kept.created_at);
        let history = loaded.history(kept.id, 10).await.unwrap();
        assert_eq!(history[1].message.content, "a [1]");
        assert!(loaded.get(short.id).await.is_ok());
        // An hour later the one-minute session has expired; the other has not.
        clock.advance(Duration::from_secs(3600));
        let later = MemorySessionStore::load(&path, MemorySessionConfig::default())
            .unwrap()
            .with_clock(clock.clock());
        assert!(later.get(short.id).await.is_err());
        assert!(later.get(kept.id).await.is_ok());

        // Not a sessions file: Corrupt, and a missing one NotFound.
        std::fs::write(&path, b"{\"format\": 1}").unwrap();
        let e = MemorySessionStore::load(&path, MemorySessionConfig::default()).unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        let e = MemorySessionStore::load(
            &dir.path().join("none.json"),
            MemorySessionConfig::default(),
        )
        .unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");
    }

    #[tokio::test]
    async fn max_messages_keeps_the_latest() {
        let clock = ManualClock::new();
        let s = store(MemorySessionConfig::default().with_max_messages(3), &clock);
        let id = s.create(NewSession::new(ns("a"))).await.unwrap().id;
        s.append(id, vec![Message::user("0"), Message::user("1")])
            .await
            .unwrap();
        s.append(id, vec![Message::user("2"), Message::user("3")])
            .await
            .unwrap();
        let texts = |h: Vec<StoredMessage>| -> Vec<String> {
            h.into_iter().map(|m| m.message.content).collect()
        };
        assert_eq!(texts(s.history(id, 10).await.unwrap()), ["1", "2", "3"]);
        assert_eq!(s.get(id).await.unwrap().message_count, 3);
        // One batch larger than the limit keeps its own tail.
        let batch = (4..10).map(|i| Message::user(i.to_string())).collect();
        s.append(id, batch).await.unwrap();
        assert_eq!(texts(s.history(id, 10).await.unwrap()), ["7", "8", "9"]);
        assert_eq!(s.get(id).await.unwrap().message_count, 3);

        let none = store(MemorySessionConfig::default().with_max_messages(0), &clock);
        let id = none.create(NewSession::new(ns("a"))).await.unwrap().id;
        none.append(id, vec![Message::user("x")]).await.unwrap();
        assert!(none.history(id, 10).await.unwrap().is_empty());
        assert_eq!(none.get(id).await.unwrap().message_count, 0);
    }

    #[tokio::test]
    async fn max_sessions_evicts_least_recently_updated() {
        let clock = ManualClock::new();
        let s = store(MemorySessionConfig::default().with_max_sessions(3), &clock);
        let mut ids = Vec::new();
        for name in ["a", "b", "c"] {
            ids.push(s.create(NewSession::new(ns(name))).await.unwrap().id);
            clock.advance(MIN);
        }
        // `a` becomes the most recent; `b` is now the least recently updated.
        s.append(ids[0], vec![Message::user("hi")]).await.unwrap();
        clock.advance(MIN);
        let d = s.create(NewSession::new(ns("d"))).await.unwrap().id;
        assert!(is_not_found(&s.get(ids[1]).await), "b should be evicted");
        for id in [ids[0], ids[2], d] {
            assert!(s.get(id).await.is_ok());
        }
        assert_eq!(s.inner.read().sessions.len(), 3);
    }

    #[tokio::test]
    async fn max_sessions_drops_expired_before_evicting() {
        let clock = ManualClock::new();
        let s = store(MemorySessionConfig::default().with_max_sessions(3), &clock);
        let old = s
            .create(NewSession::new(ns("a")).with_ttl(60 * MIN))
            .await
            .unwrap()
            .id;
        clock.advance(MIN);
        let short1 = s
            .create(NewSession::new(ns("a")).with_ttl(MIN))
            .await
            .unwrap()
            .id;
        let short2 = s
            .create(NewSession::new(ns("b")).with_ttl(MIN))
            .await
            .unwrap()
            .id;
        clock.advance(2 * MIN);
        // Full: the two expired sessions go, the older live one stays.
        let new = s.create(NewSession::new(ns("a"))).await.unwrap().id;
        let held: Vec<SessionId> = s.inner.read().sessions.keys().copied().collect();
        assert_eq!(held.len(), 2);
        assert!(held.contains(&old) && held.contains(&new));
        assert!(!held.contains(&short1) && !held.contains(&short2));
    }

    #[tokio::test]
    async fn frozen_clock_orders_by_activity() {
        let clock = ManualClock::new();
        let s = store(MemorySessionConfig::default().with_max_sessions(2), &clock);
        let a = s.create(NewSession::new(ns("a"))).await.unwrap().id;
        let b = s.create(NewSession::new(ns("a"))).await.unwrap().id;
        s.append(a, vec![]).await.unwrap();
        let listed: Vec<SessionId> = s
            .list(&ns("a"), 10)
            .await
            .unwrap()
            .iter()
            .map(|x| x.id)
            .collect();
        assert_eq!(listed, [a, b]);
        // Same instant everywhere: `b` had the oldest activity and goes.
        let c = s.create(NewSession::new(ns("a"))).await.unwrap().id;
        assert!(is_not_found(&s.get(b).await));
        assert!(s.get(a).await.is_ok() && s.get(c).await.is_ok());
    }

    #[tokio::test]
    async fn max_sessions_zero_keeps_the_new_one() {
        let clock = ManualClock::new();
        let s = store(MemorySessionConfig::default().with_max_sessions(0), &clock);
        let a = s.create(NewSession::new(ns("a"))).await.unwrap().id;
        let b = s.create(NewSession::new(ns("a"))).await.unwrap().id;
        assert!(is_not_found(&s.get(a).await));
        assert!(s.get(b).await.is_ok());
    }

    #[tokio::test]
    async fn ttl_slides_on_append_only() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        let s = store(MemorySessionConfig::default(), &clock);
        let created = s
            .create(NewSession::new(ns("a")).with_ttl(10 * MIN))
            .await
            .unwrap();
        let id = created.id;
        assert_eq!(created.expires_at, Some(t0 + TimeDelta::minutes(10)));

        clock.advance(9 * MIN);
        // Reads are not activity.
        s.get(id).await.unwrap();
        s.history(id, 5).await.unwrap();
        s.list(&ns("a"), 5).await.unwrap();
        assert_eq!(
            s.get(id).await.unwrap().expires_at,
            Some(t0 + TimeDelta::minutes(10))
        );
        s.append(id, vec![Message::user("still here")])
            .await
            .unwrap();
        let after = s.get(id).await.unwrap();
        assert_eq!(after.updated_at, t0 + TimeDelta::minutes(9));
        assert_eq!(after.expires_at, Some(t0 + TimeDelta::minutes(19)));
        let h = s.history(id, 1).await.unwrap();
        assert_eq!(h[0].at, t0 + TimeDelta::minutes(9), "`at` is the clock's");

        // An empty append slides it as well.
        clock.advance(9 * MIN);
        s.append(id, vec![]).await.unwrap();
        assert_eq!(
            s.get(id).await.unwrap().expires_at,
            Some(t0 + TimeDelta::minutes(28))
        );
        assert_eq!(s.get(id).await.unwrap().message_count, 1);

        // Exactly at `expires_at` it is gone, for every method.
        clock.advance(10 * MIN);
        assert!(is_not_found(&s.get(id).await));
        assert!(is_not_found(&s.history(id, 1).await));
        assert!(is_not_found(&s.append(id, vec![]).await));
        assert!(is_not_found(&s.delete(id).await));
        assert!(s.list(&ns("a"), 5).await.unwrap().is_empty());
        assert_eq!(s.expire().await.unwrap(), 1);
        assert_eq!(s.expire().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn default_ttl_applies_and_none_never_expires() {
        let clock = ManualClock::new();
        let t0 = clock.now();
        let s = store(
            MemorySessionConfig::default().with_default_ttl(Some(5 * MIN)),
            &clock,
        );
        let a = s.create(NewSession::new(ns("a"))).await.unwrap();
        assert_eq!(a.expires_at, Some(t0 + TimeDelta::minutes(5)));

        let forever = store(
            MemorySessionConfig::default().with_default_ttl(None),
            &clock,
        );
        let b = forever.create(NewSession::new(ns("a"))).await.unwrap();
        assert_eq!(b.expires_at, None);
        let huge = forever
            .create(NewSession::new(ns("a")).with_ttl(Duration::MAX))
            .await
            .unwrap();
        assert_eq!(
            huge.expires_at, None,
            "an unrepresentable TTL never expires"
        );
        clock.advance(Duration::from_secs(100 * 365 * 86_400));
        assert_eq!(forever.expire().await.unwrap(), 0);
        assert!(forever.get(b.id).await.is_ok());
        assert!(forever.get(huge.id).await.is_ok());
    }

    #[tokio::test]
    async fn expire_counts_only_expired() {
        let clock = ManualClock::new();
        let s = store(MemorySessionConfig::default(), &clock);
        for _ in 0..3 {
            s.create(NewSession::new(ns("a")).with_ttl(MIN))
                .await
                .unwrap();
        }
        for _ in 0..2 {
            s.create(NewSession::new(ns("a")).with_ttl(60 * MIN))
                .await
                .unwrap();
        }
        assert_eq!(s.expire().await.unwrap(), 0);
        clock.advance(2 * MIN);
        assert_eq!(s.expire().await.unwrap(), 3);
        assert_eq!(s.expire().await.unwrap(), 0);
        assert_eq!(s.list(&ns("a"), 10).await.unwrap().len(), 2);
        assert_eq!(s.inner.read().sessions.len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_appends_stay_contiguous() {
        let s = Arc::new(MemorySessionStore::default());
        let id = s.create(NewSession::new(ns("a"))).await.unwrap().id;
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    for i in 0..50 {
                        let batch = (0..3)
                            .map(|k| Message::user(format!("{t}:{i}:{k}")))
                            .collect();
                        s.append(id, batch).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let h = s.history(id, usize::MAX).await.unwrap();
        assert_eq!(h.len(), 600);
        let mut next = [0usize; 4];
        for batch in h.chunks(3) {
            let parts: Vec<Vec<usize>> = batch
                .iter()
                .map(|m| {
                    m.message
                        .content
                        .split(':')
                        .map(|p| p.parse().unwrap())
                        .collect()
                })
                .collect();
            let (t, i) = (parts[0][0], parts[0][1]);
            for (k, p) in parts.iter().enumerate() {
                assert_eq!(p, &vec![t, i, k], "batch split or reordered");
            }
            assert_eq!(i, next[t], "task {t}'s appends out of order");
            next[t] += 1;
        }
    }

    #[test]
    fn debug_names_config_not_clock() {
        let s = MemorySessionStore::default();
        let d = format!("{s:?}");
        assert!(
            d.contains("max_sessions: 10000") && d.contains("sessions: 0"),
            "{d}"
        );
    }
}
