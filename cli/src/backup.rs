//! `rag export` and `rag import`: a namespace of the configured store (and
//! its sessions) to a portable backup file and back (`rag::backup`: gzip
//! JSON lines, versioned, checksummed; the format the server's
//! `/v1/admin/export` writes).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use rag::Namespace;
use rag::backup::ImportMode;

use crate::open::{Backend, Needs, namespace, open};
use crate::{Failure, Global, Outcome};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  rag export --out docs.jsonl.gz
  rag export --namespace handbook --sessions --out handbook.jsonl.gz
  rag export --store lance --data ./rag-data/bge-small-en-v1-5-384 --out docs.jsonl.gz")]
pub(crate) struct ExportArgs {
    /// The backup file to write.
    #[arg(long, short = 'o', value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  rag import --in docs.jsonl.gz
  rag import --in docs.jsonl.gz --replace --store pgvector --url postgres://localhost/rag
  rag import --in docs.jsonl.gz --resume      # finish an interrupted import")]
pub(crate) struct ImportArgs {
    /// The backup file to read.
    #[arg(long = "in", short = 'i', value_name = "FILE")]
    file: PathBuf,
    /// Delete the namespace first (once the file is verified).
    #[arg(long, conflicts_with = "resume")]
    replace: bool,
    /// Finish an interrupted import: documents already stored unchanged are skipped.
    #[arg(long)]
    resume: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug)]
pub(crate) struct Common {
    /// The namespace.
    #[arg(long, short = 'n', default_value = "default", value_parser = namespace)]
    namespace: Namespace,
    /// The namespace's sessions too, from or into the configured session store (implied by --sessions-url).
    #[arg(long)]
    sessions: bool,
    #[command(flatten)]
    backend: Backend,
}

impl Common {
    fn with_sessions(&self) -> bool {
        self.sessions || self.backend.sessions_url.is_some()
    }
}

pub(crate) async fn export(global: &Global, a: ExportArgs) -> Outcome {
    let c = &a.common;
    let (state, _) = open(global, &c.backend, Needs::Store).await?;
    let started = Instant::now();
    let file =
        File::create(&a.out).map_err(|e| Failure::Failed(format!("{}: {e}", a.out.display())))?;
    let r = state
        .rag
        .export_namespace(&c.namespace, BufWriter::new(file), c.with_sessions())
        .await;
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            // No half-written backup is left behind.
            let _ = std::fs::remove_file(&a.out);
            return Err(e.into());
        }
    };
    println!(
        "exported {} chunks of {} documents and {} sessions of namespace {} to {} ({} bytes, sha256 {}) in {:.2?}",
        r.chunks,
        r.documents,
        r.sessions,
        c.namespace,
        a.out.display(),
        r.bytes,
        r.sha256,
        started.elapsed()
    );
    Ok(())
}

pub(crate) async fn import(global: &Global, a: ImportArgs) -> Outcome {
    let c = &a.common;
    let file =
        File::open(&a.file).map_err(|e| Failure::Usage(format!("{}: {e}", a.file.display())))?;
    let (state, _) = open(global, &c.backend, Needs::Store).await?;
    let mode = if a.replace {
        ImportMode::Replace
    } else if a.resume {
        ImportMode::Resume
    } else {
        ImportMode::IntoEmpty
    };
    let started = Instant::now();
    let r = state
        .rag
        .import_namespace(&c.namespace, BufReader::new(file), mode, c.with_sessions())
        .await;
    // What was written is saved even when the import stopped part way.
    state.persist()?;
    let r = r?;
    println!(
        "imported {} chunks of {} documents and {} sessions into namespace {} ({} documents already present) in {:.2?}",
        r.chunks_written,
        r.documents_written,
        r.sessions_written,
        c.namespace,
        r.documents_skipped,
        started.elapsed()
    );
    Ok(())
}
