//! [`PgSessionStore`]: the [`SessionStore`] on PostgreSQL.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rag_core::{
    Error, Message, Namespace, NewSession, Result, Role, Session, SessionId, SessionStore,
    StoredMessage,
};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use tokio::sync::OnceCell;

use crate::config::PgSessionConfig;
use crate::error::db;
use crate::schema::{self, Tables};

/// TTLs beyond this (about 10 000 years) mean "never expires": PostgreSQL
/// timestamps end in the year 294276, and such a TTL is no TTL.
const MAX_TTL: Duration = Duration::from_secs(10_000 * 366 * 24 * 3600);

/// Sessions and their messages in two tables, `{prefix}_sessions` and
/// `{prefix}_messages`, on the same database as the vector store (or any
/// other).
///
/// The rules are those of [`rag_core::MemorySessionStore`] (the
/// conformance kit checks them), with the database's clock:
///
/// * **Sliding TTL**: `expires_at = updated_at + ttl`; every append (even of
///   no messages) sets `updated_at` to the database's `clock_timestamp()`.
///   A session past `expires_at` is `NotFound` everywhere before
///   [`expire`](SessionStore::expire) deletes it (call `expire` from a
///   periodic task; it deletes the messages too, by cascade).
/// * **Order under concurrency**: an append locks the session row, takes
///   the next positions from it and inserts its messages in one
///   transaction, so concurrent appends to one session serialize, each
///   batch contiguous, in the order the locks were granted.
/// * **Max messages**: beyond `max_messages` the oldest are deleted in the
///   same transaction.
/// * Unlike the in-memory store there is no cap on the number of sessions:
///   the table grows until `expire` runs.
///
/// The tables are created on first use (or by [`migrate`](Self::migrate)).
pub struct PgSessionStore {
    pool: PgPool,
    config: PgSessionConfig,
    tables: Tables,
    migrated: OnceCell<()>,
}

impl fmt::Debug for PgSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSessionStore")
            .field("table", &self.tables.sessions)
            .field("config", &self.config)
            .finish()
    }
}

impl PgSessionStore {
    /// A store on `pool` with the default configuration (tables
    /// `rag_sessions` and `rag_messages`, created on first use).
    pub fn new(pool: PgPool) -> Self {
        Self::with_config(pool, PgSessionConfig::default())
            .expect("the default session configuration is valid")
    }

    /// A store on `pool`; `InvalidInput` for an invalid table prefix.
    pub fn with_config(pool: PgPool, config: PgSessionConfig) -> Result<Self> {
        config.validate()?;
        let tables = Tables::new(&config.table_prefix)?;
        Ok(Self {
            pool,
            config,
            tables,
            migrated: OnceCell::new(),
        })
    }

    /// Connects a new pool to `url` (default pool settings) and creates the
    /// tables.
    pub async fn connect(url: &str, config: PgSessionConfig) -> Result<Self> {
        Self::connect_with_pool(url, config, &crate::PoolConfig::default()).await
    }

    /// [`PgSessionStore::connect`] with a pool of these settings (size,
    /// timeouts).
    pub async fn connect_with_pool(
        url: &str,
        config: PgSessionConfig,
        pool: &crate::PoolConfig,
    ) -> Result<Self> {
        config.validate()?;
        let pool = crate::store::connect_pool(url, pool, None).await?;
        let store = Self::with_config(pool, config)?;
        store.migrate().await?;
        Ok(store)
    }

    /// Creates or upgrades the tables (idempotent).
    pub async fn migrate(&self) -> Result<()> {
        self.migrated
            .get_or_try_init(|| schema::migrate_sessions(&self.pool, &self.tables))
            .await
            .map(|_| ())
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The configuration.
    pub fn config(&self) -> &PgSessionConfig {
        &self.config
    }

    fn header_sql(&self) -> String {
        format!(
            "SELECT id, namespace, metadata, created_at, updated_at, expires_at, message_count \
             FROM {}",
            self.tables.sessions
        )
    }
}

fn not_found(id: SessionId) -> Error {
    Error::not_found(format!("session {id}"))
}

/// The TTL in microseconds, `None` for no expiry.
fn ttl_us(ttl: Option<Duration>) -> Option<i64> {
    ttl.filter(|t| *t <= MAX_TTL)
        .map(|t| i64::try_from(t.as_micros()).unwrap_or(i64::MAX))
}

fn role_str(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

fn parse_role(s: &str) -> Result<Role> {
    match s {
        "system" => Ok(Role::System),
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        other => Err(Error::Corrupt {
            location: "sessions messages table".to_owned(),
            message: format!("unknown role {other:?}"),
        }),
    }
}

fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(a) => a.iter().any(has_nul),
        serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn row_to_session(r: &PgRow) -> Result<Session> {
    let namespace: String = r.try_get("namespace").map_err(db)?;
    let Json(metadata): Json<serde_json::Value> = r.try_get("metadata").map_err(db)?;
    let count: i32 = r.try_get("message_count").map_err(db)?;
    let namespace = Namespace::new(namespace).map_err(|e| Error::Corrupt {
        location: "sessions table".to_owned(),
        message: e.to_string(),
    })?;
    let mut s = Session::new(
        r.try_get("id").map_err(db)?,
        namespace,
        r.try_get("created_at").map_err(db)?,
    );
    s.metadata = metadata;
    s.updated_at = r.try_get("updated_at").map_err(db)?;
    s.expires_at = r.try_get("expires_at").map_err(db)?;
    s.message_count = count.max(0) as usize;
    Ok(s)
}

#[async_trait]
impl SessionStore for PgSessionStore {
    async fn create(&self, new: NewSession) -> Result<Session> {
        self.migrate().await?;
        if has_nul(&new.metadata) {
            return Err(Error::invalid_input(
                "session metadata cannot contain NUL characters",
            ));
        }
        let ttl = ttl_us(new.ttl.or(self.config.default_ttl));
        let id = SessionId::new_v4();
        let row = sqlx::query(&format!(
            "WITH t AS (SELECT clock_timestamp() AS now) \
             INSERT INTO {s} (id, namespace, metadata, created_at, updated_at, ttl_us, expires_at, activity) \
             SELECT $1, $2, $3, t.now, t.now, $4, \
                 t.now + $4 * interval '1 microsecond', nextval('{seq}') FROM t \
             RETURNING id, namespace, metadata, created_at, updated_at, expires_at, message_count",
            s = self.tables.sessions,
            seq = self.tables.session_seq
        ))
        .bind(id)
        .bind(new.namespace.as_str())
        .bind(Json(&new.metadata))
        .bind(ttl)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        row_to_session(&row)
    }

    async fn get(&self, id: SessionId) -> Result<Session> {
        self.migrate().await?;
        let row = sqlx::query(&format!(
            "{} WHERE id = $1 AND (expires_at IS NULL OR expires_at > clock_timestamp())",
            self.header_sql()
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        match row {
            Some(r) => row_to_session(&r),
            None => Err(not_found(id)),
        }
    }

    async fn append(&self, id: SessionId, messages: Vec<Message>) -> Result<()> {
        self.migrate().await?;
        if messages
            .iter()
            .any(|m| m.content.contains('\0') || has_nul(&m.metadata))
        {
            return Err(Error::invalid_input(
                "messages cannot contain NUL characters",
            ));
        }
        let n = messages.len() as i64;
        let max = i64::try_from(self.config.max_messages).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Locks the session row: appends to one session serialize here.
        let row = sqlx::query(&format!(
            "UPDATE {s} SET \
                 updated_at = GREATEST(updated_at, clock_timestamp()), \
                 expires_at = GREATEST(updated_at, clock_timestamp()) + ttl_us * interval '1 microsecond', \
                 activity = nextval('{seq}'), \
                 next_pos = next_pos + $2, \
                 message_count = LEAST(message_count + $2, $3) \
             WHERE id = $1 AND (expires_at IS NULL OR expires_at > clock_timestamp()) \
             RETURNING next_pos - $2 AS first, next_pos, updated_at",
            s = self.tables.sessions,
            seq = self.tables.session_seq
        ))
        .bind(id)
        .bind(n)
        .bind(max)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Err(not_found(id));
        };
        let first: i64 = row.try_get("first").map_err(db)?;
        let next: i64 = row.try_get("next_pos").map_err(db)?;
        let at: DateTime<Utc> = row.try_get("updated_at").map_err(db)?;
        if n > 0 {
            let roles: Vec<&str> = messages.iter().map(|m| role_str(m.role)).collect();
            let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
            let metas: Vec<Json<&serde_json::Value>> =
                messages.iter().map(|m| Json(&m.metadata)).collect();
            sqlx::query(&format!(
                "INSERT INTO {m} (session_id, pos, role, content, metadata, at) \
                 SELECT $1, $2 + u.ord - 1, u.role, u.content, u.metadata, $6 \
                 FROM UNNEST($3::text[], $4::text[], $5::jsonb[]) WITH ORDINALITY \
                     AS u(role, content, metadata, ord)",
                m = self.tables.messages
            ))
            .bind(id)
            .bind(first)
            .bind(roles)
            .bind(contents)
            .bind(metas)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        if next - first > 0 && next > max {
            sqlx::query(&format!(
                "DELETE FROM {m} WHERE session_id = $1 AND pos < $2",
                m = self.tables.messages
            ))
            .bind(id)
            .bind(next - max)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    async fn history(&self, id: SessionId, window: usize) -> Result<Vec<StoredMessage>> {
        // Checks that the session is live (NotFound otherwise).
        self.get(id).await?;
        if window == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT role, content, metadata, at FROM {m} WHERE session_id = $1 \
             ORDER BY pos DESC LIMIT $2",
            m = self.tables.messages
        ))
        .bind(id)
        .bind(i64::try_from(window).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows.iter().rev() {
            let role: String = r.try_get("role").map_err(db)?;
            let content: String = r.try_get("content").map_err(db)?;
            let Json(metadata): Json<serde_json::Value> = r.try_get("metadata").map_err(db)?;
            out.push(StoredMessage {
                message: Message::new(parse_role(&role)?, content).with_metadata(metadata),
                at: r.try_get("at").map_err(db)?,
            });
        }
        Ok(out)
    }

    async fn list(&self, namespace: &Namespace, limit: usize) -> Result<Vec<Session>> {
        self.migrate().await?;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "{} WHERE namespace = $1 AND (expires_at IS NULL OR expires_at > clock_timestamp()) \
             ORDER BY updated_at DESC, activity DESC LIMIT $2",
            self.header_sql()
        ))
        .bind(namespace.as_str())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(row_to_session).collect()
    }

    async fn delete(&self, id: SessionId) -> Result<()> {
        self.migrate().await?;
        let n = sqlx::query(&format!(
            "DELETE FROM {} WHERE id = $1 AND (expires_at IS NULL OR expires_at > clock_timestamp())",
            self.tables.sessions
        ))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected();
        if n == 0 {
            return Err(not_found(id));
        }
        Ok(())
    }

    async fn expire(&self) -> Result<usize> {
        self.migrate().await?;
        let n = sqlx::query(&format!(
            "DELETE FROM {} WHERE expires_at <= clock_timestamp()",
            self.tables.sessions
        ))
        .execute(&self.pool)
        .await
        .map_err(db)?
        .rows_affected();
        Ok(n as usize)
    }
}
