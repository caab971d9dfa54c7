//! Versioned migrations.
//!
//! Each store keeps a list of migrations per component (`chunks`,
//! `sessions`); applied versions are recorded in `{prefix}_migrations`.
//! Migrating takes a transaction-scoped advisory lock, so concurrent
//! processes starting at once apply each migration exactly once, and runs
//! inside that transaction (PostgreSQL DDL is transactional): a failed
//! migration leaves nothing behind.
//!
//! Identifiers in the DDL: the table prefix (checked against `[a-z0-9_]`),
//! integers (dimension, HNSW parameters), operator classes picked from a
//! fixed list, and the text search configuration name, which a generated
//! column cannot take as a parameter: it is checked against `[a-z_]+` and
//! looked up in `pg_ts_config` before it is written into the DDL. Nothing
//! else is ever formatted into SQL; every value is a bind parameter.

use rag_core::{Distance, Error, Result};
use serde_json::json;
use sqlx::{Executor as _, PgConnection, PgPool, Postgres, Row, Transaction};

use crate::config::{PgVectorConfig, VectorType, validate_language, validate_prefix};
use crate::error::db;

/// Key of the advisory lock every migration takes (one for the whole
/// database: migrations are rare and creating the extension must not race).
const LOCK_KEY: i64 = 0x7261_675f_6d69_6772; // "rag_migr"

/// Table names derived from a validated prefix.
#[derive(Clone, Debug)]
pub(crate) struct Tables {
    pub(crate) chunks: String,
    pub(crate) migrations: String,
    pub(crate) sessions: String,
    pub(crate) messages: String,
    pub(crate) session_seq: String,
}

impl Tables {
    pub(crate) fn new(prefix: &str) -> Result<Self> {
        validate_prefix(prefix)?;
        Ok(Self {
            chunks: format!("{prefix}_chunks"),
            migrations: format!("{prefix}_migrations"),
            sessions: format!("{prefix}_sessions"),
            messages: format!("{prefix}_messages"),
            session_seq: format!("{prefix}_session_seq"),
        })
    }
}

struct Migration {
    version: i32,
    description: &'static str,
    statements: Vec<String>,
}

pub(crate) fn opclass(cfg: &PgVectorConfig) -> &'static str {
    match (cfg.vector_type, cfg.distance) {
        (VectorType::Vector, Distance::Cosine) => "vector_cosine_ops",
        (VectorType::Vector, Distance::Dot) => "vector_ip_ops",
        (VectorType::Vector, Distance::Euclidean) => "vector_l2_ops",
        (VectorType::HalfVec, Distance::Cosine) => "halfvec_cosine_ops",
        (VectorType::HalfVec, Distance::Dot) => "halfvec_ip_ops",
        (VectorType::HalfVec, Distance::Euclidean) => "halfvec_l2_ops",
    }
}

fn chunk_migrations(cfg: &PgVectorConfig, t: &Tables) -> Vec<Migration> {
    let c = &t.chunks;
    let vt = cfg.vector_type.sql_name();
    let d = cfg.dimensions;
    let lang = &cfg.language;
    vec![
        Migration {
            version: 1,
            description: "chunks table",
            statements: vec![
                format!(
                    r#"CREATE TABLE {c} (
    namespace text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    document_id text COLLATE "C" NOT NULL,
    source text NOT NULL,
    document_hash text NOT NULL,
    position integer NOT NULL,
    byte_start bigint NOT NULL,
    byte_end bigint NOT NULL,
    token_count integer,
    text text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    embedding {vt}({d}) NOT NULL,
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('{lang}'::regconfig, text)) STORED,
    PRIMARY KEY (namespace, id)
)"#
                ),
                format!("CREATE INDEX {c}_document_idx ON {c} (namespace, document_id)"),
            ],
        },
        Migration {
            version: 2,
            description: "HNSW index",
            statements: vec![format!(
                "CREATE INDEX {c}_embedding_idx ON {c} USING hnsw (embedding {}) \
                 WITH (m = {}, ef_construction = {})",
                opclass(cfg),
                cfg.hnsw.m,
                cfg.hnsw.ef_construction
            )],
        },
        Migration {
            version: 3,
            description: "full-text index",
            statements: vec![format!("CREATE INDEX {c}_tsv_idx ON {c} USING gin (tsv)")],
        },
    ]
}

fn session_migrations(t: &Tables) -> Vec<Migration> {
    let (s, m, seq) = (&t.sessions, &t.messages, &t.session_seq);
    vec![Migration {
        version: 1,
        description: "sessions and messages",
        statements: vec![
            format!("CREATE SEQUENCE {seq}"),
            format!(
                r#"CREATE TABLE {s} (
    id uuid PRIMARY KEY,
    namespace text COLLATE "C" NOT NULL,
    metadata jsonb NOT NULL DEFAULT 'null'::jsonb,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    ttl_us bigint,
    expires_at timestamptz,
    activity bigint NOT NULL,
    message_count integer NOT NULL DEFAULT 0,
    next_pos bigint NOT NULL DEFAULT 0
)"#
            ),
            format!("CREATE INDEX {s}_list_idx ON {s} (namespace, updated_at DESC, activity DESC)"),
            format!("CREATE INDEX {s}_expiry_idx ON {s} (expires_at) WHERE expires_at IS NOT NULL"),
            format!(
                r#"CREATE TABLE {m} (
    session_id uuid NOT NULL REFERENCES {s} (id) ON DELETE CASCADE,
    pos bigint NOT NULL,
    role text NOT NULL,
    content text NOT NULL,
    metadata jsonb NOT NULL DEFAULT 'null'::jsonb,
    at timestamptz NOT NULL,
    PRIMARY KEY (session_id, pos)
)"#
            ),
        ],
    }]
}

async fn begin_locked(pool: &PgPool, t: &Tables) -> Result<Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await.map_err(db)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOCK_KEY)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    tx.execute(
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
            component text NOT NULL,
            version integer NOT NULL,
            description text NOT NULL,
            layout jsonb,
            applied_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (component, version)
        )",
            t.migrations
        )
        .as_str(),
    )
    .await
    .map_err(db)?;
    Ok(tx)
}

async fn apply(
    conn: &mut PgConnection,
    t: &Tables,
    component: &str,
    migrations: Vec<Migration>,
    layout: &serde_json::Value,
) -> Result<()> {
    let applied: Vec<i32> = sqlx::query_scalar(&format!(
        "SELECT version FROM {} WHERE component = $1",
        t.migrations
    ))
    .bind(component)
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    for m in migrations {
        if applied.contains(&m.version) {
            continue;
        }
        tracing::info!(
            component,
            version = m.version,
            description = m.description,
            "migrating"
        );
        for s in &m.statements {
            conn.execute(s.as_str()).await.map_err(db)?;
        }
        sqlx::query(&format!(
            "INSERT INTO {} (component, version, description, layout) VALUES ($1, $2, $3, $4)",
            t.migrations
        ))
        .bind(component)
        .bind(m.version)
        .bind(m.description)
        .bind(sqlx::types::Json(layout))
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

/// The layout a chunks table was created with; a store opening it with
/// another one would store or query wrong data.
fn layout(cfg: &PgVectorConfig) -> serde_json::Value {
    json!({
        "dimensions": cfg.dimensions,
        "vector_type": cfg.vector_type,
        "distance": cfg.distance,
        "language": cfg.language,
    })
}

/// Creates or upgrades the chunks table of `cfg`, and checks that an
/// existing one has the configured layout.
pub(crate) async fn migrate_chunks(pool: &PgPool, cfg: &PgVectorConfig) -> Result<()> {
    cfg.validate()?;
    validate_language(&cfg.language)?;
    let t = Tables::new(&cfg.table_prefix)?;
    let mut tx = begin_locked(pool, &t).await?;
    let exists: Option<String> =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
    if exists.is_none() {
        tx.execute("CREATE EXTENSION IF NOT EXISTS vector")
            .await
            .map_err(|e| {
                Error::backend_with_source(
                    crate::error::BACKEND,
                    false,
                    "the pgvector extension is not installed and could not be created \
                     (install pgvector, or run CREATE EXTENSION vector as a superuser)",
                    crate::error::PgError(e),
                )
            })?;
    }
    let known: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_ts_config WHERE cfgname = $1")
        .bind(&cfg.language)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
    if known.is_none() {
        return Err(Error::invalid_input(format!(
            "unknown text search configuration {:?} (see pg_ts_config)",
            cfg.language
        )));
    }
    let want = layout(cfg);
    let stored: Option<sqlx::types::Json<serde_json::Value>> = sqlx::query_scalar(&format!(
        "SELECT layout FROM {} WHERE component = 'chunks' AND version = 1",
        t.migrations
    ))
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    if let Some(sqlx::types::Json(stored)) = stored
        && stored != want
    {
        return Err(Error::Corrupt {
            location: t.chunks.clone(),
            message: format!(
                "the table was created with {stored}, the store is configured with {want}; \
                 use another table_prefix"
            ),
        });
    }
    apply(&mut tx, &t, "chunks", chunk_migrations(cfg, &t), &want).await?;
    tx.commit().await.map_err(db)?;
    Ok(())
}

/// Creates or upgrades the session tables. (Boxed: the future is awaited
/// inside a `OnceCell` initializer, where an unboxed one trips the
/// compiler's `Send` inference over sqlx's executor lifetimes.)
pub(crate) fn migrate_sessions<'a>(
    pool: &'a PgPool,
    t: &'a Tables,
) -> futures::future::BoxFuture<'a, Result<()>> {
    Box::pin(async move {
        let mut tx = begin_locked(pool, t).await?;
        apply(&mut tx, t, "sessions", session_migrations(t), &json!({})).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    })
}

/// The installed pgvector version, if any.
pub(crate) async fn extension_version(pool: &PgPool) -> Result<Option<String>> {
    let row = sqlx::query("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        .fetch_optional(pool)
        .await
        .map_err(db)?;
    row.map(|r| r.try_get::<String, _>(0).map_err(db))
        .transpose()
}
