//! `rag export` and `rag import`: a namespace of a store to a backup file
//! and back (`rag_core::backup`: gzip JSON lines, versioned, checksummed).

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::Arc;

use rag::backup::{
    EmbedderInfo, ExportOptions, ImportMode, ImportOptions, export_namespace, import_namespace,
};
use rag::lance::{LanceConfig, LanceVectorStore};
use rag::memory::MemoryConfig;
use rag::pgvector::{PgSessionConfig, PgSessionStore, PgVectorConfig, PgVectorStore};
use rag::{Embedder, HashEmbedder, MemoryVectorStore, Namespace, VectorStore};
use rag_server::state::{LocalLoaded, load_local};

pub(crate) const USAGE: &str = "usage: rag export --store lance|memory|pgvector (--data PATH | --url URL) \
[--table-prefix P] [--namespace NS] [--embedder auto|local|bge|minilm|hash] \
[--sessions-url URL [--sessions-prefix P]] --out FILE.jsonl.gz
       rag import --store lance|memory|pgvector (--data PATH | --url URL) [--table-prefix P] \
[--namespace NS] [--embedder …] [--sessions-url URL [--sessions-prefix P]] --in FILE.jsonl.gz \
[--replace | --resume]

  --data PATH        LanceDB: the database directory; memory: the store's file (MemoryVectorStore::save)
  --url URL          pgvector: the PostgreSQL URL (or RAG_PG_URL)
  --embedder KIND    the embedder the store was filled with (default auto): an import of a file made
                     with another model or dimension is refused before anything is written
  --sessions-url URL the server's PostgreSQL session store (sessions.url): export the namespace's
                     sessions with their messages too, or import the file's sessions into it
  --sessions-prefix P  its table prefix (sessions.table_prefix; default rag)
  --replace          delete the target namespace first (once the file is verified)
  --resume           finish an interrupted import: documents already stored unchanged are skipped";

pub(crate) struct BackupArgs {
    import: bool,
    store: String,
    data: Option<PathBuf>,
    url: Option<String>,
    table_prefix: Option<String>,
    namespace: Namespace,
    embedder: String,
    file: PathBuf,
    mode: ImportMode,
    sessions_url: Option<String>,
    sessions_prefix: Option<String>,
}

pub(crate) fn parse(
    import: bool,
    mut it: impl Iterator<Item = String>,
) -> Result<BackupArgs, String> {
    let mut a = BackupArgs {
        import,
        store: String::new(),
        data: None,
        url: std::env::var("RAG_PG_URL").ok().filter(|u| !u.is_empty()),
        table_prefix: None,
        namespace: Namespace::default(),
        embedder: "auto".into(),
        file: PathBuf::new(),
        mode: ImportMode::IntoEmpty,
        sessions_url: None,
        sessions_prefix: None,
    };
    let mut file = None;
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--store" => a.store = value()?,
            "--data" => a.data = Some(PathBuf::from(value()?)),
            "--url" => a.url = Some(value()?),
            "--table-prefix" => a.table_prefix = Some(value()?),
            "--namespace" => {
                a.namespace = Namespace::new(value()?).map_err(|e| format!("--namespace: {e}"))?;
            }
            "--embedder" => a.embedder = value()?,
            "--sessions-url" => a.sessions_url = Some(value()?),
            "--sessions-prefix" => a.sessions_prefix = Some(value()?),
            "--out" if !import => file = Some(PathBuf::from(value()?)),
            "--in" if import => file = Some(PathBuf::from(value()?)),
            "--replace" if import => a.mode = ImportMode::Replace,
            "--resume" if import => a.mode = ImportMode::Resume,
            "--help" | "-h" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    a.file = file.ok_or_else(|| {
        format!(
            "{} is required\n{USAGE}",
            if import { "--in" } else { "--out" }
        )
    })?;
    match a.store.as_str() {
        "lance" | "memory" if a.data.is_none() => {
            return Err(format!("--store {} needs --data\n{USAGE}", a.store));
        }
        "pgvector" if a.url.is_none() => {
            return Err(format!(
                "--store pgvector needs --url (or RAG_PG_URL)\n{USAGE}"
            ));
        }
        "lance" | "memory" | "pgvector" => {}
        other => {
            return Err(format!(
                "--store {other:?}: lance, memory or pgvector\n{USAGE}"
            ));
        }
    }
    if !matches!(
        a.embedder.as_str(),
        "auto" | "local" | "bge" | "minilm" | "hash"
    ) {
        return Err(format!(
            "--embedder {:?}: auto, local, bge, minilm or hash",
            a.embedder
        ));
    }
    Ok(a)
}

/// The store, and the in-memory store again when it is one (saved after an
/// import).
type Opened = (Arc<dyn VectorStore>, Option<Arc<MemoryVectorStore>>);

async fn open_store(
    a: &BackupArgs,
    dimensions: usize,
) -> Result<Opened, Box<dyn std::error::Error>> {
    Ok(match a.store.as_str() {
        "lance" => {
            let dir = a.data.as_ref().ok_or("--data")?;
            let mut config = LanceConfig::new(dir.to_string_lossy(), dimensions);
            if let Some(p) = &a.table_prefix {
                config = config.with_table_prefix(p.clone());
            }
            (Arc::new(LanceVectorStore::open(config).await?), None)
        }
        "pgvector" => {
            let url = a.url.as_deref().ok_or("--url")?;
            let mut config = PgVectorConfig::default().with_dimensions(dimensions);
            if let Some(p) = &a.table_prefix {
                config = config.with_table_prefix(p.clone());
            }
            (Arc::new(PgVectorStore::connect(url, config).await?), None)
        }
        _ => {
            let path = a.data.as_ref().ok_or("--data")?;
            let config = MemoryConfig::default().with_dimensions(dimensions);
            let memory = Arc::new(if path.exists() {
                MemoryVectorStore::load(path, config)?
            } else {
                MemoryVectorStore::new(config)
            });
            (memory.clone(), Some(memory))
        }
    })
}

pub(crate) async fn run(a: BackupArgs) -> Result<bool, Box<dyn std::error::Error>> {
    let kind = a.embedder.clone();
    let LocalLoaded { embedder, .. } =
        tokio::task::spawn_blocking(move || load_local(&kind, "none", "none")).await??;
    let embedder: Arc<dyn Embedder> = embedder.unwrap_or_else(|| Arc::new(HashEmbedder::default()));
    let info = EmbedderInfo::of(embedder.as_ref());
    let (store, memory) = open_store(&a, info.dimensions).await?;
    let sessions = match &a.sessions_url {
        Some(url) => {
            let mut config = PgSessionConfig::default();
            if let Some(p) = &a.sessions_prefix {
                config = config.with_table_prefix(p.clone());
            }
            Some(PgSessionStore::connect(url, config).await?)
        }
        None => None,
    };
    let started = std::time::Instant::now();
    if a.import {
        let file = File::open(&a.file).map_err(|e| format!("{}: {e}", a.file.display()))?;
        let mut options = ImportOptions::default().with_mode(a.mode);
        if let Some(s) = &sessions {
            options = options.with_sessions(s);
        }
        let r = import_namespace(
            store.as_ref(),
            &a.namespace,
            &info,
            std::io::BufReader::new(file),
            &options,
        )
        .await?;
        if let (Some(path), Some(memory)) = (&a.data, &memory) {
            memory.save(path)?;
        }
        println!(
            "imported {} chunks of {} documents and {} sessions into namespace {} ({} documents already present) in {:.2?}",
            r.chunks_written,
            r.documents_written,
            r.sessions_written,
            a.namespace,
            r.documents_skipped,
            started.elapsed()
        );
    } else {
        let file = File::create(&a.file).map_err(|e| format!("{}: {e}", a.file.display()))?;
        let r = export_namespace(
            store.as_ref(),
            &a.namespace,
            &info,
            BufWriter::new(file),
            &match &sessions {
                Some(s) => ExportOptions::default().with_sessions(s),
                None => ExportOptions::default(),
            },
        )
        .await?;
        println!(
            "exported {} chunks of {} documents and {} sessions of namespace {} to {} ({} bytes, sha256 {}) in {:.2?}",
            r.chunks,
            r.documents,
            r.sessions,
            a.namespace,
            a.file.display(),
            r.bytes,
            r.sha256,
            started.elapsed()
        );
    }
    Ok(true)
}
