//! The interactive side of `rag`, driven through a pseudo-terminal as a
//! person uses it: `rag chat` (a question, a follow-up that only makes
//! sense after it, `/sources`, `/quit`, then the stored session resumed by
//! its id) and Ctrl-C during `rag ingest` (it stops between documents and
//! says what was stored).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use expectrl::{Eof, Expect, Regex, Session};

mod common;

/// `rag` in `dir` ([`common::rag_in`]), without colours.
fn rag(dir: &Path) -> Command {
    let mut c = common::rag_in(dir);
    c.env("NO_COLOR", "1").env("TERM", "xterm");
    c
}

#[test]
fn a_chat_in_a_terminal_answers_a_question_and_a_follow_up_and_can_be_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("docs");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("tides.md"),
        "Ocean tides are caused by the gravitational pull of the moon.\n",
    )
    .unwrap();
    std::fs::write(
        d.join("bread.md"),
        "Sourdough bread rises because wild yeast ferments the dough.\n",
    )
    .unwrap();
    let ingest = rag(dir.path())
        .args(["ingest", "docs", "-q"])
        .output()
        .unwrap();
    assert!(ingest.status.success(), "{ingest:?}");

    let mut cmd = rag(dir.path());
    cmd.arg("chat");
    let mut p = Session::spawn(cmd).expect("spawn rag chat on a pty");
    p.set_expect_timeout(Some(Duration::from_secs(60)));

    let m = p.expect(Regex("session ([0-9a-f-]{36})")).unwrap();
    let id = String::from_utf8(m.get(1).unwrap().to_vec()).unwrap();
    p.expect("› ").unwrap();

    p.send_line("What causes ocean tides?").unwrap();
    p.expect("gravitational pull of the moon").unwrap();
    p.expect(Regex(r"\[1\] docs/tides\.md")).unwrap();
    p.expect("› ").unwrap();

    // "it" only means the tides through the conversation's history.
    p.send_line("And what does it have to do with the moon?")
        .unwrap();
    p.expect(Regex(r"\[1\] docs/tides\.md")).unwrap();
    p.expect("› ").unwrap();

    p.send_line("/sources").unwrap();
    p.expect(Regex(r"\[1\] docs/tides\.md")).unwrap();
    p.expect("› ").unwrap();

    p.send_line("/quit").unwrap();
    p.expect(format!("resume with: rag chat --session {id}").as_str())
        .unwrap();
    p.expect(Eof).unwrap();

    // The session is stored: resumed by id, it holds both exchanges.
    let out = rag(dir.path())
        .args(["chat", "--session", &id])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"/quit\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("resumed session {id}: 4 messages")),
        "{stdout}"
    );
    assert!(
        stdout.contains("And what does it have to do with the moon?"),
        "{stdout}"
    );

    // An unknown session id is a failure naming it.
    let out = rag(dir.path())
        .args(["chat", "--session", "00000000-0000-4000-8000-000000000000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no session 00000000"));
}

#[test]
fn ctrl_c_stops_an_ingest_between_documents_and_says_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("many");
    std::fs::create_dir_all(&d).unwrap();
    const FILES: usize = 5000;
    for i in 0..FILES {
        std::fs::write(
            d.join(format!("note-{i:05}.txt")),
            format!("Note {i} is about topic {} and nothing else.\n", i % 97),
        )
        .unwrap();
    }
    let mut cmd = rag(dir.path());
    cmd.args(["ingest", "many"]);
    let mut p = Session::spawn(cmd).expect("spawn rag ingest on a pty");
    p.set_expect_timeout(Some(Duration::from_secs(120)));
    // The progress bar is drawn on a terminal; once it moves, Ctrl-C.
    p.expect(Regex(&format!(r"[1-9][0-9]*/{FILES} documents")))
        .unwrap();
    p.send(expectrl::ControlCode::EndOfText).unwrap();
    let m = p
        .expect(Regex(
            r"interrupted: the ([0-9]+) documents above are stored; ([0-9]+) were not read",
        ))
        .unwrap();
    let stored: usize = String::from_utf8_lossy(m.get(1).unwrap()).parse().unwrap();
    let not_read: usize = String::from_utf8_lossy(m.get(2).unwrap()).parse().unwrap();
    p.expect(Eof).unwrap();
    let status = p.get_process_mut().wait().unwrap();
    assert_eq!(
        status,
        expectrl::process::unix::WaitStatus::Exited(p.get_process().pid(), 130),
        "Ctrl-C exits with 130"
    );
    assert!(stored > 0 && stored < FILES, "stopped part way: {stored}");
    assert!(
        not_read > 0 && stored + not_read <= FILES,
        "{stored} + {not_read}"
    );

    // What it said was stored is stored; a second run adds the rest.
    let out = rag(dir.path())
        .args(["ingest", "many", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["unchanged"].as_array().unwrap().len(),
        stored,
        "{}",
        v["unchanged"]
    );
    assert_eq!(v["added"].as_array().unwrap().len(), FILES - stored);
}
