//! `rag ingest`, `ask`, `docs`, `config`, `completions` as people use them:
//! the binary run in a fresh working directory on the in-memory store
//! (saved to a file between runs), the offline hash embedder and extractive
//! answers, so every run is fast and deterministic.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

mod common;

/// `rag` in `dir` ([`common::rag_in`]), driven by assert_cmd.
fn rag(dir: &Path) -> Command {
    Command::from_std(common::rag_in(dir))
}

fn docs(dir: &Path) {
    let d = dir.join("docs");
    std::fs::create_dir_all(d.join("sub")).unwrap();
    std::fs::write(
        d.join("tides.md"),
        "# Tides\n\nOcean tides are caused by the gravitational pull of the moon.\n",
    )
    .unwrap();
    std::fs::write(
        d.join("bread.txt"),
        "Sourdough bread rises because wild yeast ferments the dough.\n",
    )
    .unwrap();
    std::fs::write(
        d.join("sub/lava.md"),
        "Basaltic lava flows from shield volcanoes in Hawaii.\n",
    )
    .unwrap();
    // Not read from a directory: an unknown extension, and a hidden file.
    std::fs::write(d.join("logo.png"), [0x89, b'P', b'N', b'G', 0, 0, 0xff]).unwrap();
    std::fs::write(d.join(".draft.md"), "Hidden draft.\n").unwrap();
}

fn json(out: &[u8]) -> Value {
    serde_json::from_slice(out)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(out)))
}

fn ids(v: &Value, key: &str) -> Vec<String> {
    let mut ids: Vec<String> = v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[test]
fn ingesting_a_directory_twice_skips_everything_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    docs(dir.path());
    let first = rag(dir.path())
        .args(["ingest", "docs", "--json"])
        .assert()
        .success();
    let v = json(&first.get_output().stdout);
    assert_eq!(
        ids(&v, "added"),
        ["docs/bread.txt", "docs/sub/lava.md", "docs/tides.md"],
        "text files under the directory, by their path; not the image or the hidden file"
    );
    assert!(v["chunks_written"].as_u64().unwrap() >= 3, "{v}");

    let second = rag(dir.path())
        .args(["ingest", "docs", "--json"])
        .assert()
        .success();
    let v = json(&second.get_output().stdout);
    assert!(ids(&v, "added").is_empty(), "{v}");
    assert_eq!(ids(&v, "unchanged").len(), 3, "{v}");
    assert_eq!(v["chunks_written"], 0, "{v}");

    // A changed file is replaced; the human summary says so in one line.
    std::fs::write(
        dir.path().join("docs/bread.txt"),
        "Sourdough rises slowly overnight.\n",
    )
    .unwrap();
    rag(dir.path())
        .args(["ingest", "docs"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "ingested 3 documents into default: 0 new, 1 changed, 2 unchanged",
        ));
}

#[test]
fn include_exclude_globs_metadata_and_stdin() {
    let dir = tempfile::tempdir().unwrap();
    docs(dir.path());
    let out = rag(dir.path())
        .args(["ingest", "docs", "--include", "*.md", "--exclude", "sub/**"])
        .args([
            "--metadata",
            "team=geo",
            "--metadata",
            "year=2026",
            "--json",
        ])
        .assert()
        .success();
    assert_eq!(
        ids(&json(&out.get_output().stdout), "added"),
        ["docs/tides.md"]
    );

    // A quoted glob is expanded by rag, not the shell.
    let out = rag(dir.path())
        .args(["ingest", "docs/**/*.md", "--namespace", "globbed", "--json"])
        .assert()
        .success();
    assert_eq!(
        ids(&json(&out.get_output().stdout), "added"),
        ["docs/sub/lava.md", "docs/tides.md"]
    );

    rag(dir.path())
        .args(["ingest", "-", "--source", "faq.md", "--json"])
        .write_stdin("Refunds are paid within 14 days.\n")
        .assert()
        .success()
        .stdout(predicate::str::contains("\"faq.md\""));

    // The metadata is stored and filters what is asked.
    let out = rag(dir.path())
        .args(["docs", "show", "docs/tides.md", "--json"])
        .assert()
        .success();
    let v = json(&out.get_output().stdout);
    assert_eq!(v["metadata"]["team"], "geo", "{v}");
    assert_eq!(v["metadata"]["year"], 2026, "{v}");
    let out = rag(dir.path())
        .args([
            "ask",
            "What causes tides?",
            "--filter",
            "team=nobody",
            "--json",
        ])
        .assert()
        .success();
    let v = json(&out.get_output().stdout);
    assert!(v["citations"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn ask_streams_the_answer_and_cites_the_file() {
    let dir = tempfile::tempdir().unwrap();
    docs(dir.path());
    rag(dir.path())
        .args(["ingest", "docs", "-q"])
        .assert()
        .success();

    let out = rag(dir.path())
        .args(["ask", "What causes ocean tides?", "--json"])
        .assert()
        .success();
    let v = json(&out.get_output().stdout);
    assert_eq!(v["citations"][0]["source"], "docs/tides.md", "{v}");
    assert!(v["text"].as_str().unwrap().contains("moon"), "{v}");

    // On a terminal-less stdout: the text, then numbered sources with their
    // location and a snippet, and no colour codes.
    let out = rag(dir.path())
        .args(["ask", "What causes ocean tides?", "--top-k", "2"])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(
        stdout.contains("gravitational pull of the moon"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\nSources\n  [1] docs/tides.md line"),
        "{stdout}"
    );
    assert!(
        !stdout.contains('\x1b'),
        "no colour off a terminal: {stdout:?}"
    );

    // --color always forces them, NO_COLOR does not override an explicit choice.
    let out = rag(dir.path())
        .args(["ask", "What causes ocean tides?", "--color", "always"])
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains('\x1b'));
}

#[test]
fn docs_are_listed_shown_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    docs(dir.path());
    rag(dir.path())
        .args(["ingest", "docs", "-q"])
        .assert()
        .success();

    let out = rag(dir.path())
        .args(["docs", "list", "--json"])
        .assert()
        .success();
    let listed: Vec<String> = json(&out.get_output().stdout)
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        listed,
        ["docs/bread.txt", "docs/sub/lava.md", "docs/tides.md"]
    );

    rag(dir.path())
        .args(["docs", "show", "docs/tides.md"])
        .assert()
        .success()
        .stdout(predicate::str::contains("gravitational pull of the moon"));

    rag(dir.path())
        .args(["docs", "delete", "docs/tides.md"])
        .assert()
        .success()
        .stdout(predicate::str::contains("deleted docs/tides.md"));
    let out = rag(dir.path())
        .args(["docs", "list", "--json"])
        .assert()
        .success();
    assert_eq!(json(&out.get_output().stdout).as_array().unwrap().len(), 2);

    // Deleting it again fails, naming it; the others stay.
    rag(dir.path())
        .args(["docs", "delete", "docs/tides.md"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "no document docs/tides.md in namespace default",
        ));
    rag(dir.path())
        .args(["docs", "show", "nope.md"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no document nope.md"));
    let out = rag(dir.path())
        .args(["docs", "list", "--json"])
        .assert()
        .success();
    assert_eq!(json(&out.get_output().stdout).as_array().unwrap().len(), 2);
}

#[test]
fn bad_input_gets_a_clear_message_and_the_right_exit_code_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    docs(dir.path());
    rag(dir.path())
        .args(["ingest", "docs", "-q"])
        .assert()
        .success();
    let stored = || {
        let out = rag(dir.path())
            .args(["docs", "list", "--json"])
            .assert()
            .success();
        json(&out.get_output().stdout).as_array().unwrap().len()
    };

    // A path that does not exist: bad usage (2), nothing read.
    rag(dir.path())
        .args(["ingest", "docs", "missing.md"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "missing.md: no such file or directory",
        ));
    // A pattern matching nothing is bad usage too.
    rag(dir.path())
        .args(["ingest", "docs/*.pdf"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("the pattern matches no file"));

    // A binary file named explicitly: a failure (1) naming it and why; the
    // text file beside it is still ingested.
    std::fs::write(dir.path().join("new.md"), "Glaciers carve valleys.\n").unwrap();
    rag(dir.path())
        .args(["ingest", "docs/logo.png", "new.md"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "docs/logo.png: a binary file, not text",
        ))
        .stdout(predicate::str::contains("1 new").and(predicate::str::contains("1 failed")));
    assert_eq!(stored(), 4);

    // Invalid UTF-8 in a text file.
    std::fs::write(dir.path().join("latin1.txt"), b"caf\xe9\n").unwrap();
    rag(dir.path())
        .args(["ingest", "latin1.txt"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("latin1.txt: not UTF-8 text"));

    // Unknown flags and bad values: clap's message and code 2.
    rag(dir.path())
        .args(["ingest", "docs", "--frobnicate"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unexpected argument '--frobnicate'",
        ));
    rag(dir.path())
        .args(["ask", "q", "--top-k", "0"])
        .assert()
        .code(2);
    rag(dir.path())
        .args(["ask", "q", "--filter", "{not json"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not a filter"));
    rag(dir.path())
        .args(["ingest", "docs", "--namespace", "no spaces"])
        .assert()
        .code(2);
    // A configuration file that does not exist or does not parse.
    rag(dir.path())
        .args(["--config", "nope.toml", "docs", "list"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nope.toml: no such file"));
    std::fs::write(dir.path().join("bad.toml"), "[store]\nkind = 3\n").unwrap();
    rag(dir.path())
        .args(["--config", "bad.toml", "docs", "list"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid configuration"));
    assert_eq!(stored(), 4, "no refused command changed the store");
}

#[test]
fn config_check_completions_version_and_help() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rag.toml"),
        "[store]\nkind = \"pgvector\"\nurl = \"postgres://rag:s3cret@db/rag\"\n",
    )
    .unwrap();
    let out = rag(dir.path())
        .env_remove("RAG_STORE")
        .env_remove("RAG_STORE_PATH")
        .args(["config", "check", "--config", "rag.toml", "--json"])
        .assert()
        .success();
    let v = json(&out.get_output().stdout);
    assert_eq!(v["store"]["kind"], "pgvector");
    assert_eq!(
        v["store"]["location"], "postgres://rag:***@db/rag",
        "no password"
    );
    assert!(!String::from_utf8_lossy(&out.get_output().stdout).contains("s3cret"));

    rag(dir.path())
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("_rag()").and(predicate::str::contains("ingest")));
    rag(dir.path())
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("rag "));
    // Every subcommand has help with examples.
    for cmd in [
        "ingest",
        "ask",
        "chat",
        "export",
        "import",
        "serve",
        "eval",
        "completions",
    ] {
        rag(dir.path())
            .args([cmd, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Example"));
    }
    for sub in [
        ["docs", "list"],
        ["docs", "show"],
        ["docs", "delete"],
        ["config", "check"],
    ] {
        rag(dir.path())
            .args([sub[0], sub[1], "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Example"));
    }
}

/// A plain HTTP/1.1 GET: the status and the body, or `None` while nothing
/// listens.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let status = raw.split(' ').nth(1)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

#[test]
fn serve_answers_over_http_from_what_the_command_line_ingested() {
    let dir = tempfile::tempdir().unwrap();
    docs(dir.path());
    rag(dir.path())
        .args(["ingest", "docs", "-q"])
        .assert()
        .success();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = common::rag_in(dir.path())
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let listed = loop {
        if let Some((200, body)) = http_get(port, "/v1/documents") {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rag serve did not answer within 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(listed.contains("docs/tides.md"), "{listed}");
    // SIGTERM: a clean stop, exit code 0.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = server.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}
