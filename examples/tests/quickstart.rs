//! The quickstart binary as a user runs it.

use std::process::Command;

#[test]
fn the_quickstart_binary_refuses_unknown_flags_without_touching_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("rag-data");
    let out = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .args(["--no-such-flag", "--data", data.to_str().unwrap()])
        .output()
        .expect("run the quickstart binary");
    assert!(!out.status.success());
    assert!(!data.exists(), "a refused invocation creates no store");
}
