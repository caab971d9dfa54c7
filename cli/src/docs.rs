//! `rag docs list|show|delete`.

use clap::{Args, Subcommand};
use rag::{DocumentId, DocumentInfo, Namespace, VectorStore};

use crate::open::{Backend, Needs, namespace, open};
use crate::output::{self, BOLD, CYAN, DIM};
use crate::{Failure, Global, Outcome};

#[derive(Subcommand, Debug)]
pub(crate) enum DocsCommand {
    /// The documents of a namespace: id, chunks and source.
    #[command(
        after_help = "Examples:\n  rag docs list\n  rag docs list --namespace handbook --json"
    )]
    List {
        #[command(flatten)]
        common: Common,
        /// At most this many.
        #[arg(long, default_value_t = 1000, value_name = "N")]
        limit: usize,
    },
    /// One document: its entry and the text of its chunks.
    #[command(
        after_help = "Examples:\n  rag docs show docs/guide.md\n  rag docs show docs/guide.md --json"
    )]
    Show {
        /// The document id (`rag docs list` shows them; files ingested by path have their path).
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Delete documents and all their chunks.
    #[command(
        after_help = "Examples:\n  rag docs delete docs/old.md\n  rag docs delete a.md b.md --namespace handbook"
    )]
    Delete {
        /// The document ids.
        #[arg(required = true)]
        ids: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Debug)]
pub(crate) struct Common {
    /// The namespace (tenant).
    #[arg(long, short = 'n', default_value = "default", value_parser = namespace)]
    namespace: Namespace,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    backend: Backend,
}

fn doc_id(s: &str) -> Result<DocumentId, Failure> {
    DocumentId::new(s).map_err(|e| Failure::Usage(format!("{s:?}: {e}")))
}

fn info_json(d: &DocumentInfo) -> serde_json::Value {
    serde_json::json!({
        "id": d.id.as_str(), "source": d.source, "chunks": d.chunks, "content_hash": d.content_hash,
    })
}

/// Every document of `ns`, in id order, up to `limit`.
async fn list(
    store: &dyn VectorStore,
    ns: &Namespace,
    limit: usize,
) -> rag::Result<Vec<DocumentInfo>> {
    let mut out: Vec<DocumentInfo> = Vec::new();
    while out.len() < limit {
        let page = store
            .list_documents(ns, out.last().map(|d| &d.id), 500.min(limit - out.len()))
            .await?;
        let n = page.len();
        out.extend(page);
        if n < 500.min(limit) {
            break;
        }
    }
    Ok(out)
}

pub(crate) async fn run(global: &Global, cmd: DocsCommand) -> Outcome {
    let common = match &cmd {
        DocsCommand::List { common, .. }
        | DocsCommand::Show { common, .. }
        | DocsCommand::Delete { common, .. } => common,
    };
    let (state, _) = open(global, &common.backend, Needs::Store).await?;
    let store = state.rag.store().as_ref();
    let ns = &common.namespace;
    match &cmd {
        DocsCommand::List { limit, .. } => {
            let docs = list(store, ns, *limit).await?;
            if common.json {
                let v: Vec<_> = docs.iter().map(info_json).collect();
                println!("{:#}", serde_json::Value::Array(v));
                return Ok(());
            }
            if docs.is_empty() {
                output::note(global.quiet, &format!("no documents in namespace {ns}"));
                return Ok(());
            }
            anstream::println!("{BOLD}{:>6}  DOCUMENT{BOLD:#}", "CHUNKS");
            for d in &docs {
                let source = if d.source == d.id.as_str() {
                    String::new()
                } else {
                    format!("  {DIM}({}){DIM:#}", d.source)
                };
                anstream::println!("{:>6}  {}{source}", d.chunks, d.id);
            }
            output::note(
                global.quiet,
                &format!(
                    "{} documents, {} chunks in namespace {ns}",
                    docs.len(),
                    docs.iter().map(|d| d.chunks).sum::<usize>()
                ),
            );
            Ok(())
        }
        DocsCommand::Show { id, .. } => {
            let id = doc_id(id)?;
            // The store pages by id: the entry before this one is where a
            // scan of exactly this document starts.
            let mut before: Option<DocumentId> = None;
            let mut found = None;
            'pages: loop {
                let page = store.list_documents(ns, before.as_ref(), 500).await?;
                for d in &page {
                    if d.id == id {
                        found = Some(d.clone());
                        break 'pages;
                    }
                    before = Some(d.id.clone());
                }
                if page.len() < 500 {
                    break;
                }
            }
            let info = found
                .ok_or_else(|| Failure::Failed(format!("no document {id} in namespace {ns}")))?;
            let chunks: Vec<_> = store
                .scan(ns, before.as_ref(), 1)
                .await?
                .into_iter()
                .filter(|c| c.chunk.document_id == id)
                .map(|c| c.chunk)
                .collect();
            if common.json {
                let mut v = info_json(&info);
                v["chunk_texts"] = chunks
                    .iter()
                    .map(|c| {
                        serde_json::json!({"id": c.id.to_string(), "position": c.position,
                            "byte_range": [c.byte_range.start, c.byte_range.end], "text": c.text})
                    })
                    .collect();
                v["metadata"] = chunks
                    .first()
                    .map(|c| serde_json::to_value(&c.metadata).unwrap_or_default())
                    .unwrap_or_default();
                println!("{v:#}");
                return Ok(());
            }
            anstream::println!("{BOLD}{}{BOLD:#}", info.id);
            anstream::println!("  source   {}", info.source);
            anstream::println!("  chunks   {}", info.chunks);
            anstream::println!("  hash     {}", info.content_hash);
            if let Some(c) = chunks.first() {
                anstream::println!(
                    "  metadata {}",
                    serde_json::to_string(&c.metadata).unwrap_or_default()
                );
            }
            for c in &chunks {
                anstream::println!(
                    "\n{CYAN}── chunk {} · {}{CYAN:#}",
                    c.position,
                    output::location(&info.source, &c.byte_range)
                );
                anstream::println!("{}", c.text.trim_end());
            }
            Ok(())
        }
        DocsCommand::Delete { ids, .. } => {
            let ids: Vec<DocumentId> = ids.iter().map(|s| doc_id(s)).collect::<Result<_, _>>()?;
            let mut missing = Vec::new();
            let mut deleted = Vec::new();
            for id in &ids {
                let n = state.rag.delete_document_in(ns, id).await?;
                if n == 0 {
                    missing.push(id.as_str().to_owned());
                } else {
                    deleted.push(serde_json::json!({"id": id.as_str(), "chunks_deleted": n}));
                    if !common.json {
                        anstream::println!("deleted {id} ({n} chunks)");
                    }
                }
            }
            state.persist()?;
            if common.json {
                println!(
                    "{:#}",
                    serde_json::json!({"deleted": deleted, "not_found": missing})
                );
            }
            if missing.is_empty() {
                Ok(())
            } else {
                Err(Failure::Failed(format!(
                    "no document {} in namespace {ns}",
                    missing.join(", ")
                )))
            }
        }
    }
}
