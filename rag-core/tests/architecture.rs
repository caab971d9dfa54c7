//! The module boundaries of rag-core, checked rather than promised: a layer
//! wraps a trait and knows nothing of the pipeline (what only the pipeline
//! uses lives in `pipeline/`).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Code lines (comments and doc comments left out) of `path` that name one
/// of `needles`.
fn offending_lines(path: &Path, needles: &[&str]) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .filter(|(_, line)| needles.iter().any(|n| line.contains(n)))
        .map(|(i, line)| format!("{}:{}: {}", path.display(), i + 1, line.trim()))
        .collect()
}

#[test]
fn layers_import_nothing_from_the_pipeline() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/layers");
    let files = rust_files(&dir);
    assert!(
        files.len() >= 8,
        "the layers are where this test looks: {files:?}"
    );
    let needles = [
        "pipeline",
        "crate::Rag",
        "crate::Ask",
        "crate::Answer",
        "crate::Trace",
        "crate::Source",
        "crate::PromptGuard",
        "crate::AnswerCacheConfig",
    ];
    let offending: Vec<String> = files
        .iter()
        .flat_map(|f| offending_lines(f, &needles))
        .collect();
    assert!(
        offending.is_empty(),
        "layers/ must not depend on pipeline/:\n{}",
        offending.join("\n")
    );
}

#[test]
fn the_check_sees_an_import_of_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("layer.rs");
    std::fs::write(
        &file,
        "//! Docs may mention the pipeline.\nuse crate::pipeline::Trace;\n",
    )
    .unwrap();
    let found = offending_lines(&file, &["pipeline"]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].ends_with("use crate::pipeline::Trace;"));
}
