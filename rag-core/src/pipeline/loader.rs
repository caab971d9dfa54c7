//! Loading documents from files and directory trees.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::Document;

/// Which files [`load_path`] reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoadOptions {
    /// File extensions read (lowercase, no dot).
    pub extensions: Vec<String>,
    /// Largest file read, in bytes; 10 MiB by default.
    pub max_bytes: u64,
    /// Directory names never entered (besides hidden ones).
    pub skip_dirs: Vec<String>,
    /// Whether hidden files and directories (name starting with `.`) are
    /// read; false.
    pub include_hidden: bool,
    /// Whether symbolic links are followed; false.
    pub follow_links: bool,
}

/// Extensions read by default: text, Markdown and common source code.
pub const DEFAULT_EXTENSIONS: &[&str] = &[
    "txt", "md", "markdown", "rst", "adoc", "rs", "py", "js", "jsx", "ts", "tsx", "go", "java",
    "kt", "c", "h", "cc", "cpp", "hpp", "cs", "rb", "php", "swift", "scala", "sql", "sh", "bash",
    "toml", "yaml", "yml", "json", "html", "css",
];

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            extensions: DEFAULT_EXTENSIONS.iter().map(|s| (*s).to_owned()).collect(),
            max_bytes: 10 * 1024 * 1024,
            skip_dirs: ["target", "node_modules"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            include_hidden: false,
            follow_links: false,
        }
    }
}

impl LoadOptions {
    /// Sets the extensions read.
    pub fn with_extensions<S: Into<String>>(mut self, exts: impl IntoIterator<Item = S>) -> Self {
        self.extensions = exts
            .into_iter()
            .map(|e| e.into().trim_start_matches('.').to_ascii_lowercase())
            .collect();
        self
    }
    /// Sets the size limit.
    pub fn with_max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n;
        self
    }
}

/// Why a file was not read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SkipReason {
    /// Its extension is not among [`LoadOptions::extensions`].
    Extension,
    /// It is larger than [`LoadOptions::max_bytes`].
    TooLarge {
        /// Its size in bytes.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// It has no text (empty or whitespace only).
    Empty,
    /// A hidden or excluded directory, not entered.
    ExcludedDirectory,
    /// Hidden file.
    Hidden,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Extension => f.write_str("extension not read"),
            Self::TooLarge { bytes, limit } => {
                write!(f, "{bytes} bytes, larger than the limit of {limit}")
            }
            Self::Empty => f.write_str("no text"),
            Self::ExcludedDirectory => f.write_str("excluded directory"),
            Self::Hidden => f.write_str("hidden file"),
        }
    }
}

/// A file not read, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SkippedFile {
    /// The path.
    pub path: PathBuf,
    /// Why.
    pub reason: SkipReason,
}

/// A file that could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub struct LoadFailure {
    /// The path.
    pub path: PathBuf,
    /// Why: `InvalidInput` for invalid UTF-8 (naming the byte offset),
    /// `Backend` for I/O errors.
    pub error: Error,
}

/// What [`load_path`] found.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct LoadReport {
    /// Documents read, in path order; each one's source is its path
    /// relative to the root given (with `/` separators).
    pub documents: Vec<Document>,
    /// Files and directories skipped, with the reason.
    pub skipped: Vec<SkippedFile>,
    /// Files that could not be read.
    pub failed: Vec<LoadFailure>,
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::backend("filesystem", false, format!("{}: {e}", path.display()))
}

/// Loads a file, or every readable file of a directory tree, as documents.
///
/// Files are read by extension ([`LoadOptions::extensions`]) up to a size
/// limit; hidden entries and the directories of
/// [`LoadOptions::skip_dirs`] are skipped, and every skipped file is
/// reported with its reason. A file that is not valid UTF-8 is a
/// [`LoadFailure`] naming the byte offset of the first invalid byte; it
/// never stops the others. Each document has the metadata
/// `{"extension": …}`.
///
/// Only a missing or unreadable `path` itself is an error. The walk is
/// synchronous file I/O; call it from `spawn_blocking` in a server.
pub fn load_path(path: impl AsRef<Path>, options: &LoadOptions) -> Result<LoadReport> {
    let root = path.as_ref();
    let meta = std::fs::metadata(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::not_found(format!("path {}", root.display())),
        _ => io_error(root, e),
    })?;
    let mut report = LoadReport::default();
    if meta.is_file() {
        let name = root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| root.display().to_string());
        load_file(root, &name, meta.len(), options, &mut report);
        return Ok(report);
    }
    let walker = walkdir::WalkDir::new(root)
        .follow_links(options.follow_links)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            if e.depth() == 0 || !e.file_type().is_dir() {
                return true;
            }
            let name = e.file_name().to_string_lossy();
            !((!options.include_hidden && name.starts_with('.'))
                || options.skip_dirs.iter().any(|d| *d == name))
        });
    // filter_entry hides excluded directories; list them separately so the
    // report says what was not entered.
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let p = e
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| root.to_path_buf());
                report.failed.push(LoadFailure {
                    error: io_error(&p, &e),
                    path: p,
                });
                continue;
            }
        };
        let p = entry.path();
        if entry.file_type().is_dir() {
            if let Ok(children) = std::fs::read_dir(p) {
                let mut excluded: Vec<PathBuf> = children
                    .filter_map(|c| c.ok())
                    .filter(|c| c.file_type().is_ok_and(|t| t.is_dir()))
                    .filter(|c| {
                        let n = c.file_name().to_string_lossy().into_owned();
                        (!options.include_hidden && n.starts_with('.'))
                            || options.skip_dirs.contains(&n)
                    })
                    .map(|c| c.path())
                    .collect();
                excluded.sort();
                report
                    .skipped
                    .extend(excluded.into_iter().map(|path| SkippedFile {
                        path,
                        reason: SkipReason::ExcludedDirectory,
                    }));
            }
            continue;
        }
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = p
            .strip_prefix(root)
            .unwrap_or(p)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        if !options.include_hidden && entry.file_name().to_string_lossy().starts_with('.') {
            report.skipped.push(SkippedFile {
                path: p.to_path_buf(),
                reason: SkipReason::Hidden,
            });
            continue;
        }
        let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
        load_file(p, &rel, len, options, &mut report);
    }
    Ok(report)
}

fn load_file(path: &Path, source: &str, len: u64, options: &LoadOptions, report: &mut LoadReport) {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let skip = |report: &mut LoadReport, reason| {
        report.skipped.push(SkippedFile {
            path: path.to_path_buf(),
            reason,
        });
    };
    if !options.extensions.contains(&ext) {
        return skip(report, SkipReason::Extension);
    }
    if len > options.max_bytes {
        return skip(
            report,
            SkipReason::TooLarge {
                bytes: len,
                limit: options.max_bytes,
            },
        );
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            report.failed.push(LoadFailure {
                path: path.to_path_buf(),
                error: io_error(path, e),
            });
            return;
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            report.failed.push(LoadFailure {
                path: path.to_path_buf(),
                error: Error::invalid_input(format!(
                    "{} is not valid UTF-8: invalid byte at offset {}",
                    path.display(),
                    e.utf8_error().valid_up_to()
                )),
            });
            return;
        }
    };
    if text.trim().is_empty() {
        return skip(report, SkipReason::Empty);
    }
    report
        .documents
        .push(Document::new(source, text).with_metadata(serde_json::json!({ "extension": ext })));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_reports_skips_and_bad_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let w = |p: &str, b: &[u8]| {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b).unwrap();
        };
        w("README.md", b"# Hello\n\nWorld.");
        w("src/lib.rs", b"fn main() {}");
        w("src/image.png", b"\x89PNG");
        w("bad.txt", b"ok \xff\xfe bad");
        w("big.txt", &[b'a'; 2000]);
        w("empty.txt", b"  \n");
        w("target/debug/x.rs", b"fn x() {}");
        w(".git/config.toml", b"x = 1");
        w(".hidden.md", b"secret");
        let report = load_path(root, &LoadOptions::default().with_max_bytes(1000)).unwrap();
        let sources: Vec<&str> = report.documents.iter().map(|d| d.source()).collect();
        assert_eq!(sources, ["README.md", "src/lib.rs"]);
        assert_eq!(report.documents[1].metadata()["extension"], "rs");
        assert_eq!(report.failed.len(), 1);
        let msg = report.failed[0].error.to_string();
        assert!(msg.contains("bad.txt") && msg.contains("offset 3"), "{msg}");
        let reason = |name: &str| {
            report
                .skipped
                .iter()
                .find(|s| s.path.ends_with(name))
                .map(|s| s.reason.clone())
        };
        assert_eq!(reason("image.png"), Some(SkipReason::Extension));
        assert!(matches!(
            reason("big.txt"),
            Some(SkipReason::TooLarge {
                bytes: 2000,
                limit: 1000
            })
        ));
        assert_eq!(reason("empty.txt"), Some(SkipReason::Empty));
        assert_eq!(reason("target"), Some(SkipReason::ExcludedDirectory));
        assert_eq!(reason(".git"), Some(SkipReason::ExcludedDirectory));
        assert_eq!(reason(".hidden.md"), Some(SkipReason::Hidden));

        let one = load_path(root.join("README.md"), &LoadOptions::default()).unwrap();
        assert_eq!(one.documents[0].source(), "README.md");
        assert!(matches!(
            load_path(root.join("missing"), &LoadOptions::default()),
            Err(Error::NotFound { .. })
        ));
    }
}
