//! `rag eval`, `rag export` and `rag import` as a user runs them: a tiny
//! BEIR dataset on disk, the offline `HashEmbedder`, and the exit codes a
//! script relies on (0 success, 1 a failed gate or run, 2 bad usage).

use std::path::Path;
use std::process::{Command, Output};

fn rag(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rag"))
        .args(args)
        .output()
        .expect("run the rag binary")
}

/// Three documents, two judged queries whose words occur only in their
/// relevant document, so BM25 over the hash embedder ranks them first.
fn tiny_dataset(dir: &Path) {
    std::fs::create_dir_all(dir.join("qrels")).unwrap();
    std::fs::write(
        dir.join("corpus.jsonl"),
        concat!(
            r#"{"_id": "d1", "title": "Tides", "text": "Ocean tides are caused by the gravitational pull of the moon."}"#,
            "\n",
            r#"{"_id": "d2", "title": "Volcanoes", "text": "Basaltic lava flows from shield volcanoes in Hawaii."}"#,
            "\n",
            r#"{"_id": "d3", "title": "Bread", "text": "Sourdough bread rises because wild yeast ferments the dough."}"#,
            "\n",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("queries.jsonl"),
        concat!(
            r#"{"_id": "q1", "text": "What causes ocean tides?"}"#,
            "\n",
            r#"{"_id": "q2", "text": "Why does sourdough rise?"}"#,
            "\n",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("qrels/test.tsv"),
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n",
    )
    .unwrap();
}

#[test]
fn eval_reports_metrics_and_its_baseline_gate_decides_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path());
    let data = dir.path().to_str().unwrap();

    let out = rag(&[
        "eval",
        "--dataset",
        data,
        "--embedder",
        "hash",
        "--mode",
        "keyword",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("--json prints one JSON report");
    let ndcg = report["ndcg_at_10"]
        .as_f64()
        .expect("ndcg_at_10 in the report");
    assert!(
        (ndcg - 1.0).abs() < 1e-9,
        "both queries rank their document first: {report}"
    );

    // A baseline the run cannot reach: the gate fails with exit code 1.
    let baseline = dir.path().join("baseline.json");
    std::fs::write(
        &baseline,
        r#"{"split": "test", "ndcg_at_10": 1.5, "tolerance": 0.01}"#,
    )
    .unwrap();
    let out = rag(&[
        "eval",
        "--dataset",
        data,
        "--embedder",
        "hash",
        "--mode",
        "keyword",
        "--baseline",
        baseline.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("BELOW"));
}

#[test]
fn several_hybrid_pools_are_evaluated_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    tiny_dataset(dir.path());
    let data = dir.path().to_str().unwrap();
    let out = rag(&[
        "eval",
        "--dataset",
        data,
        "--embedder",
        "hash",
        "--hybrid-pool",
        "1,5",
    ]);
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| hybrid pool | nDCG@10 |"), "{stdout}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| 1 |") || l.starts_with("| 5 |"))
        .collect();
    assert_eq!(rows.len(), 2, "one row per pool: {stdout}");

    let out = rag(&["eval", "--dataset", data, "--hybrid-pool", "five"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a pool that is not a number is bad usage"
    );
}

#[test]
fn bad_usage_exits_with_code_2_and_says_how_to_call_it() {
    let out = rag(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unrecognized subcommand 'frobnicate'") && stderr.contains("Usage: rag"),
        "{stderr}"
    );

    let out = rag(&["eval", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));

    let out = rag(&["eval"]);
    assert_eq!(out.status.code(), Some(2), "--dataset is required");
}

/// `rag export` of a LanceDB namespace and `rag import` of the file into an
/// in-memory store's file: the same chunks and the same search results; a
/// second import into the now non-empty namespace is refused (exit 1), and
/// `--replace` redoes it.
#[test]
fn export_from_lance_and_import_into_memory() {
    use rag::lance::{LanceConfig, LanceVectorStore};
    use rag::memory::MemoryConfig;
    use rag::{Document, Embedder, HashEmbedder, MemoryVectorStore, Namespace, Rag};
    use rag::{SearchRequest, VectorStore};

    let dir = tempfile::tempdir().unwrap();
    let lance_dir = dir.path().join("lance");
    let memory_file = dir.path().join("memory.bin");
    let file = dir.path().join("docs.jsonl.gz");
    let ns = Namespace::new("docs").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let embedder = HashEmbedder::default();
    let query = rt.block_on(embedder.embed_query("ocean tides")).unwrap();
    let lance_hits = rt.block_on(async {
        let store = LanceVectorStore::open(LanceConfig::new(
            lance_dir.to_string_lossy(),
            embedder.dimensions(),
        ))
        .await
        .unwrap();
        let rag = Rag::builder()
            .store(store)
            .embedder(HashEmbedder::default())
            .build()
            .unwrap();
        for (source, text) in [
            (
                "tides.md",
                "Ocean tides are caused by the gravitational pull of the moon.",
            ),
            (
                "lava.md",
                "Basaltic lava flows from shield volcanoes in Hawaii.",
            ),
            (
                "bread.md",
                "Sourdough bread rises because wild yeast ferments the dough.",
            ),
        ] {
            rag.ingest_in(&ns, Document::new(source, text))
                .await
                .unwrap();
        }
        let hits = rag
            .store()
            .search(&ns, SearchRequest::dense(query.clone(), 3))
            .await
            .unwrap();
        hits.into_iter().map(|h| h.chunk.id).collect::<Vec<_>>()
    });
    assert_eq!(lance_hits.len(), 3);

    let (lance, memory, out) = (
        lance_dir.to_str().unwrap(),
        memory_file.to_str().unwrap(),
        file.to_str().unwrap(),
    );
    let exported = rag(&[
        "export",
        "--store",
        "lance",
        "--data",
        lance,
        "--namespace",
        "docs",
        "--embedder",
        "hash",
        "--out",
        out,
    ]);
    assert!(
        exported.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&exported.stderr)
    );
    assert!(
        String::from_utf8_lossy(&exported.stdout).contains("exported 3 chunks of 3 documents"),
        "{}",
        String::from_utf8_lossy(&exported.stdout)
    );

    let import = |extra: &[&str]| {
        let mut args = vec![
            "import",
            "--store",
            "memory",
            "--data",
            memory,
            "--namespace",
            "docs",
            "--embedder",
            "hash",
            "--in",
            out,
        ];
        args.extend_from_slice(extra);
        rag(&args)
    };
    let imported = import(&[]);
    assert!(
        imported.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let restored =
        MemoryVectorStore::load(&memory_file, MemoryConfig::default().with_dimensions(384))
            .unwrap();
    let memory_hits: Vec<_> = rt
        .block_on(restored.search(&ns, SearchRequest::dense(query, 3)))
        .unwrap()
        .into_iter()
        .map(|h| h.chunk.id)
        .collect();
    assert_eq!(
        memory_hits, lance_hits,
        "the same results, in the same order"
    );

    let again = import(&[]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "a non-empty namespace is refused"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let replaced = import(&["--replace"]);
    assert!(
        replaced.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&replaced.stderr)
    );

    let usage = rag(&["export", "--store", "lance", "--data", lance]);
    assert_eq!(usage.status.code(), Some(2), "--out is required");
    let usage = rag(&[
        "import",
        "--store",
        "memory",
        "--data",
        memory,
        "--in",
        "no/such/file.gz",
    ]);
    assert_eq!(
        usage.status.code(),
        Some(2),
        "a backup file that does not exist is bad usage"
    );
}

/// `rag export --sessions-url` takes the namespace's sessions from a
/// PostgreSQL session store (the server's `sessions.url`) and `rag import
/// --sessions-url` restores them into another, with their messages in order.
#[test]
fn export_and_import_carry_sessions_through_postgres() {
    use rag::pgvector::{PgSessionConfig, PgSessionStore};
    use rag::{Message, Namespace, NewSession, SessionStore};

    let Some(url) = rag::testkit::service_url(
        "RAG_TEST_PG_URL",
        "export_and_import_carry_sessions_through_postgres",
        "scripts/test starts PostgreSQL",
    ) else {
        return;
    };
    let unique = std::process::id();
    let (from, to) = (format!("t_cli_from_{unique}"), format!("t_cli_to_{unique}"));
    let ns = Namespace::new("docs").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store =
            PgSessionStore::connect(&url, PgSessionConfig::default().with_table_prefix(&from))
                .await
                .unwrap();
        let s = store.create(NewSession::new(ns.clone())).await.unwrap();
        store
            .append(
                s.id,
                vec![
                    Message::user("How often are keys rotated?"),
                    Message::assistant("Every 90 days [1]."),
                ],
            )
            .await
            .unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("docs.jsonl.gz");
    let (file, a, b) = (
        file.to_str().unwrap(),
        dir.path().join("a.bin"),
        dir.path().join("b.bin"),
    );
    let exported = rag(&[
        "export",
        "--store",
        "memory",
        "--data",
        a.to_str().unwrap(),
        "--namespace",
        "docs",
        "--embedder",
        "hash",
        "--sessions-url",
        &url,
        "--sessions-prefix",
        &from,
        "--out",
        file,
    ]);
    let stdout = String::from_utf8_lossy(&exported.stdout);
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    assert!(stdout.contains("and 1 sessions"), "{stdout}");
    let imported = rag(&[
        "import",
        "--store",
        "memory",
        "--data",
        b.to_str().unwrap(),
        "--namespace",
        "docs",
        "--embedder",
        "hash",
        "--sessions-url",
        &url,
        "--sessions-prefix",
        &to,
        "--in",
        file,
    ]);
    let stdout = String::from_utf8_lossy(&imported.stdout);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(stdout.contains("and 1 sessions"), "{stdout}");
    rt.block_on(async {
        let store =
            PgSessionStore::connect(&url, PgSessionConfig::default().with_table_prefix(&to))
                .await
                .unwrap();
        let list = store.list(&ns, 10).await.unwrap();
        assert_eq!(list.len(), 1);
        let h = store.history(list[0].id, 10).await.unwrap();
        let texts: Vec<&str> = h.iter().map(|m| m.message.content.as_str()).collect();
        assert_eq!(texts, ["How often are keys rotated?", "Every 90 days [1]."]);
    });
}
