//! `rag ingest PATH…`: files, directories, globs and standard input into a
//! namespace, idempotently (unchanged documents are skipped, changed ones
//! replaced), with a progress bar on a terminal and a clean stop on Ctrl-C.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use globset::{Glob, GlobSet, GlobSetBuilder};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rag::pipeline::{DEFAULT_EXTENSIONS, IngestOutcome, IngestProgress};
use rag::{Document, IngestOptions, Namespace};
use serde_json::{Map, Value, json};

use crate::open::{Backend, Needs, namespace, open};
use crate::output::{self, BOLD};
use crate::{Failure, Global, Outcome};

#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  rag ingest docs/ README.md
  rag ingest 'notes/**/*.md' --metadata team=infra --metadata year=2026
  rag ingest . --include '*.rs' --exclude 'target/**'
  curl -s https://example.com/faq.txt | rag ingest - --source faq.txt
  rag ingest docs/ --namespace handbook --json

A directory is walked like ripgrep does: .gitignore rules apply (--no-ignore
to read everything), hidden entries are skipped (--hidden), and only text
files with a known extension are read unless --include names others. A file
named explicitly is read whatever its extension. Running it again skips the
documents that did not change and replaces the ones that did.")]
pub(crate) struct IngestArgs {
    /// Files, directories or glob patterns; `-` reads one document from standard input.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
    /// The namespace (tenant) written to.
    #[arg(long, short = 'n', default_value = "default", value_parser = namespace)]
    namespace: Namespace,
    /// Metadata on every document, `KEY=VALUE` (repeatable); VALUE is JSON when it parses (`year=2026` is a number), else a string.
    #[arg(long, short = 'm', value_name = "KEY=VALUE", value_parser = parse_metadata)]
    metadata: Vec<(String, Value)>,
    /// Only files matching this glob (repeatable; matched against the path below the directory given).
    #[arg(long, short = 'i', value_name = "GLOB")]
    include: Vec<String>,
    /// Never files matching this glob (repeatable).
    #[arg(long, short = 'e', value_name = "GLOB")]
    exclude: Vec<String>,
    /// Read files .gitignore rules exclude, and `target`/`node_modules`.
    #[arg(long)]
    no_ignore: bool,
    /// Read hidden files and directories.
    #[arg(long)]
    hidden: bool,
    /// Largest file read, in bytes; larger ones are reported as failed.
    #[arg(long, default_value_t = 10 * 1024 * 1024, value_name = "BYTES")]
    max_file_bytes: u64,
    /// The source name of the document read from standard input.
    #[arg(long, default_value = "stdin", value_name = "NAME")]
    source: String,
    /// Print the result as JSON (no progress bar).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    backend: Backend,
}

fn parse_metadata(s: &str) -> Result<(String, Value), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    if k.is_empty() {
        return Err(format!("{s:?}: the key is empty"));
    }
    let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
    Ok((k.to_owned(), value))
}

/// One thing to read.
#[derive(Debug)]
enum Input {
    Stdin,
    File(PathBuf),
}

/// A file that could not be read or ingested, and why.
#[derive(Debug, serde::Serialize)]
struct Failed {
    source: String,
    error: String,
}

fn glob_set(patterns: &[String], flag: &str) -> Result<Option<GlobSet>, Failure> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| Failure::Usage(format!("{flag} {p:?}: {e}")))?);
    }
    b.build()
        .map(Some)
        .map_err(|e| Failure::Usage(format!("{flag}: {e}")))
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// The path as the user would write it: no leading `./`, `/` separators.
fn display(p: &Path) -> String {
    let s = p.to_string_lossy().replace('\\', "/");
    let mut s = s.as_str();
    while let Some(rest) = s.strip_prefix("./") {
        s = rest;
    }
    s.to_owned()
}

struct Walk<'a> {
    a: &'a IngestArgs,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl Walk<'_> {
    /// Files under `root` to read; `pattern` keeps only those whose path
    /// (as written from the current directory) matches it.
    fn files(&self, root: &Path, pattern: Option<&GlobSet>, out: &mut Vec<Input>) {
        let no_ignore = self.a.no_ignore;
        let mut w = ignore::WalkBuilder::new(root);
        w.hidden(!self.a.hidden)
            .ignore(!no_ignore)
            .git_ignore(!no_ignore)
            .git_global(!no_ignore)
            .git_exclude(!no_ignore)
            .parents(!no_ignore)
            .sort_by_file_name(|a, b| a.cmp(b))
            .filter_entry(move |e| {
                no_ignore
                    || e.depth() == 0
                    || !e.file_type().is_some_and(|t| t.is_dir())
                    || !matches!(e.file_name().to_str(), Some("target" | "node_modules"))
            });
        for entry in w.build() {
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let path = entry.path();
            if pattern.is_some_and(|g| !g.is_match(display(path))) {
                continue;
            }
            let rel = path.strip_prefix(root).unwrap_or(path);
            if self.exclude.as_ref().is_some_and(|g| g.is_match(rel)) {
                continue;
            }
            let wanted = match &self.include {
                Some(g) => g.is_match(rel),
                None => path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| DEFAULT_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str())),
            };
            if wanted {
                out.push(Input::File(path.to_path_buf()));
            }
        }
    }
}

/// What the arguments name, in order; a path that does not exist and
/// matches nothing is bad usage.
fn inputs(a: &IngestArgs) -> Result<Vec<Input>, Failure> {
    let walk = Walk {
        a,
        include: glob_set(&a.include, "--include")?,
        exclude: glob_set(&a.exclude, "--exclude")?,
    };
    let mut out = Vec::new();
    let mut stdin = false;
    for arg in &a.paths {
        if arg == "-" {
            if stdin {
                return Err(Failure::Usage("`-` (standard input) given twice".into()));
            }
            stdin = true;
            out.push(Input::Stdin);
            continue;
        }
        let path = Path::new(arg);
        if path.is_file() {
            out.push(Input::File(path.to_path_buf()));
        } else if path.is_dir() {
            walk.files(path, None, &mut out);
        } else if has_glob(arg) {
            // The walk starts at the pattern's literal directory prefix.
            let base: PathBuf = path
                .components()
                .take_while(|c| !has_glob(&c.as_os_str().to_string_lossy()))
                .collect();
            let base = if base.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                base
            };
            let pattern =
                glob_set(std::slice::from_ref(&display(path)), "PATH")?.expect("one pattern");
            let before = out.len();
            if base.is_dir() {
                walk.files(&base, Some(&pattern), &mut out);
            }
            if out.len() == before {
                return Err(Failure::Usage(format!(
                    "{arg}: the pattern matches no file"
                )));
            }
        } else {
            return Err(Failure::Usage(format!("{arg}: no such file or directory")));
        }
    }
    Ok(out)
}

/// Reads one file as text; `Ok(None)` when it has none.
fn read_file(path: &Path, max: u64) -> Result<Option<String>, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > max {
        return Err(format!("{len} bytes, larger than --max-file-bytes {max}"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    text(bytes).map(|t| (!t.trim().is_empty()).then_some(t))
}

fn text(bytes: Vec<u8>) -> Result<String, String> {
    if let Some(i) = bytes.iter().position(|&b| b == 0) {
        return Err(format!("a binary file, not text: NUL byte at offset {i}"));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (a binary file?): invalid byte at offset {}",
            e.utf8_error().valid_up_to()
        )
    })
}

fn document(source: String, text: String, ext: &str, meta: &[(String, Value)]) -> Document {
    let mut m = Map::new();
    if !ext.is_empty() {
        m.insert("extension".into(), Value::String(ext.to_owned()));
    }
    for (k, v) in meta {
        m.insert(k.clone(), v.clone());
    }
    Document::new(source, text).with_metadata(Value::Object(m))
}

fn progress_bar(total: usize, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:30}] {pos}/{len} documents · {msg} · {per_sec} · ETA {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

pub(crate) async fn run(global: &Global, a: IngestArgs) -> Outcome {
    let inputs = inputs(&a)?;
    let stdin_text = if inputs.iter().any(|i| matches!(i, Input::Stdin)) {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Some(text(buf).map_err(|e| format!("standard input: {e}")))
    } else {
        None
    };
    let (state, _) = open(global, &a.backend, Needs::Store).await?;
    let total = inputs.len();
    let hidden = global.quiet || a.json || !std::io::stderr().is_terminal();
    let pb = progress_bar(total, hidden);

    // Ctrl-C: no new document is read; the ones in flight finish and are
    // stored. A second Ctrl-C stops at once.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (stop, pb) = (stop.clone(), pb.clone());
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::SeqCst);
                pb.suspend(|| {
                    output::warn("stopping after the documents in flight (Ctrl-C again to abort)")
                });
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }

    let failed: Arc<Mutex<Vec<Failed>>> = Arc::default();
    let empty: Arc<Mutex<Vec<String>>> = Arc::default();
    let read = Arc::new(AtomicUsize::new(0));
    let docs = {
        let (stop, failed, empty, read, pb) = (
            stop.clone(),
            failed.clone(),
            empty.clone(),
            read.clone(),
            pb.clone(),
        );
        let (max, source, meta) = (a.max_file_bytes, a.source.clone(), a.metadata.clone());
        let mut stdin_text = stdin_text;
        futures::stream::iter(inputs)
            .take_while(move |_| futures::future::ready(!stop.load(Ordering::SeqCst)))
            .filter_map(move |input| {
                read.fetch_add(1, Ordering::SeqCst);
                let (name, result, ext) = match input {
                    Input::Stdin => (
                        source.clone(),
                        stdin_text
                            .take()
                            .unwrap_or_else(|| Ok(String::new()))
                            .map(|t| (!t.trim().is_empty()).then_some(t)),
                        Path::new(&source)
                            .extension()
                            .map(|e| e.to_string_lossy().to_ascii_lowercase())
                            .unwrap_or_default(),
                    ),
                    Input::File(p) => (
                        display(&p),
                        read_file(&p, max),
                        p.extension()
                            .map(|e| e.to_string_lossy().to_ascii_lowercase())
                            .unwrap_or_default(),
                    ),
                };
                let doc = match result {
                    Ok(Some(text)) => Some(document(name, text, &ext, &meta)),
                    Ok(None) => {
                        empty.lock().expect("lock").push(name);
                        pb.inc(1);
                        None
                    }
                    Err(error) => {
                        failed.lock().expect("lock").push(Failed {
                            source: name,
                            error,
                        });
                        pb.inc(1);
                        None
                    }
                };
                futures::future::ready(doc)
            })
    };

    let chunks = Arc::new(AtomicUsize::new(0));
    let options = {
        let (pb, chunks) = (pb.clone(), chunks.clone());
        IngestOptions::new(a.namespace.clone())
            .with_total(total)
            .with_progress(move |p: &IngestProgress| {
                if let IngestOutcome::Added { chunks: n } | IngestOutcome::Replaced { chunks: n } =
                    p.outcome
                {
                    chunks.fetch_add(n, Ordering::Relaxed);
                }
                pb.inc(1);
                pb.set_message(format!("{} chunks", chunks.load(Ordering::Relaxed)));
            })
    };
    let report = state.rag.ingest_stream(docs, options).await;
    pb.finish_and_clear();
    let saved = state.persist();

    let interrupted = stop.load(Ordering::SeqCst);
    let mut failed = std::mem::take(&mut *failed.lock().expect("lock"));
    failed.extend(report.failed.iter().map(|f| Failed {
        source: f.source.clone(),
        error: f.error.to_string(),
    }));
    let empty = std::mem::take(&mut *empty.lock().expect("lock"));
    let not_read = total - read.load(Ordering::SeqCst);
    let stored = report.added.len() + report.replaced.len() + report.unchanged.len();

    if a.json {
        let ids =
            |v: &[rag::DocumentId]| v.iter().map(|d| d.as_str().to_owned()).collect::<Vec<_>>();
        println!(
            "{:#}",
            json!({
                "namespace": a.namespace.as_str(),
                "added": ids(&report.added),
                "replaced": ids(&report.replaced),
                "unchanged": ids(&report.unchanged),
                "failed": failed,
                "empty": empty,
                "chunks_written": report.chunks_written,
                "elapsed_secs": report.elapsed.as_secs_f64(),
                "interrupted": interrupted,
                "not_read": not_read,
            })
        );
    } else {
        for f in &failed {
            output::error(&format!("{}: {}", f.source, f.error));
        }
        let mut line = format!(
            "{BOLD}ingested {stored} documents{BOLD:#} into {}: {} new, {} changed, {} unchanged; {} chunks written in {:.1} s",
            a.namespace,
            report.added.len(),
            report.replaced.len(),
            report.unchanged.len(),
            report.chunks_written,
            report.elapsed.as_secs_f64()
        );
        if !empty.is_empty() {
            line.push_str(&format!("; {} empty files skipped", empty.len()));
        }
        if !failed.is_empty() {
            line.push_str(&format!("; {} failed", failed.len()));
        }
        anstream::println!("{line}");
        if interrupted {
            output::warn(&format!(
                "interrupted: the {stored} documents above are stored; {not_read} were not read"
            ));
        }
    }
    saved.map_err(Failure::Failed)?;
    if interrupted {
        return Err(Failure::Interrupted);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::Reported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_values_are_json_when_they_parse() {
        assert_eq!(
            parse_metadata("year=2026").unwrap(),
            ("year".into(), json!(2026))
        );
        assert_eq!(
            parse_metadata("team=infra").unwrap(),
            ("team".into(), json!("infra"))
        );
        assert_eq!(parse_metadata("tags=[\"a\"]").unwrap().1, json!(["a"]));
        assert!(parse_metadata("novalue").is_err());
        assert!(parse_metadata("=x").is_err());
    }

    #[test]
    fn binary_is_not_text() {
        let e = text(vec![b'a', 0xff, 0xfe]).unwrap_err();
        assert!(e.contains("offset 1"), "{e}");
    }
}
