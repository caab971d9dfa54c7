//! Export and import of a namespace on the in-memory stores: the refusals
//! that write nothing (another embedder, a damaged file, a non-empty
//! target), an interrupted import finished by a resumed one, and sessions.
//! `rag/tests/backup.rs` runs the round trip over LanceDB, pgvector and
//! Qdrant.

use std::io::{Cursor, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use rag_core::backup::{
    EmbedderInfo, ExportOptions, ImportMode, ImportOptions, export_namespace, import_namespace,
    verify_export,
};
use rag_core::{
    Capabilities, Chunk, ChunkId, Document, DocumentId, DocumentInfo, EmbeddedChunk, Embedder,
    Error, HashEmbedder, MemorySessionStore, MemoryVectorStore, Message, Namespace, NewSession,
    Rag, Result, ScoredChunk, SearchRequest, SessionStore, TextChunker, VectorStore, async_trait,
};

const DIMS: usize = 64;

fn ns(name: &str) -> Namespace {
    Namespace::new(name).expect("namespace")
}

/// A store holding a small corpus (12 documents, several chunks each).
async fn source() -> (MemoryVectorStore, Namespace) {
    let store = MemoryVectorStore::default();
    let rag = Rag::builder()
        .store_arc(std::sync::Arc::new(MemoryVectorStore::default()))
        .embedder(HashEmbedder::new(DIMS))
        .chunker(TextChunker::by_chars(120, 0).expect("chunker"))
        .build()
        .expect("rag");
    let ns = ns("source");
    let docs: Vec<Document> = (0..12)
        .map(|i| {
            let text = (0..5)
                .map(|j| {
                    format!(
                        "Paragraph {j} of note {i}: keys rotate every {} days, backups run at {} o'clock, \
                         and the {} team owns service {}.",
                        i + j,
                        (i * 7 + j) % 24,
                        ["ops", "data", "web"][(i + j) % 3],
                        i * 10 + j
                    )
                })
                .collect::<Vec<_>>()
                .join("\n\n");
            let team = ["ops", "data", "web"][i % 3];
            Document::new(format!("notes/{i:02}.md"), text)
                .with_metadata(serde_json::json!({"team": team, "n": i}))
        })
        .collect();
    let report = rag
        .ingest_stream(
            futures::stream::iter(docs),
            rag_core::IngestOptions::new(ns.clone()),
        )
        .await;
    assert_eq!(report.failed.len(), 0, "{report:?}");
    // Copy what the pipeline stored into the store under test.
    let mut after = None;
    loop {
        let page = rag
            .store()
            .scan(&ns, after.as_ref(), 1)
            .await
            .expect("scan");
        let Some(last) = page.last() else { break };
        after = Some(last.chunk.document_id.clone());
        store.upsert(&ns, &page).await.expect("upsert");
    }
    assert!(
        store.count(&ns).await.unwrap() > 24,
        "several chunks per document"
    );
    (store, ns)
}

/// One chunk of a document the export does not have.
fn stray_chunk() -> Vec<EmbeddedChunk> {
    let doc = Document::new("stray.md", "not in the export");
    vec![EmbeddedChunk {
        chunk: Chunk::from_document(&doc, 0, 0..3),
        vector: vec![0.5; DIMS],
    }]
}

fn info() -> EmbedderInfo {
    EmbedderInfo::of(&HashEmbedder::new(DIMS))
}

async fn export(store: &dyn VectorStore, ns: &Namespace) -> Vec<u8> {
    let mut file = Vec::new();
    export_namespace(store, ns, &info(), &mut file, &ExportOptions::default())
        .await
        .expect("export");
    file
}

async fn dense(store: &dyn VectorStore, ns: &Namespace, q: &str) -> Vec<(ChunkId, String)> {
    let v = HashEmbedder::new(DIMS).embed_query(q).await.expect("embed");
    store
        .search(ns, SearchRequest::dense(v, 8))
        .await
        .expect("search")
        .into_iter()
        .map(|h| (h.chunk.id, h.chunk.text))
        .collect()
}

const QUERIES: [&str; 3] = [
    "how often do keys rotate",
    "which team owns service 42",
    "backups at 3 o'clock",
];

async fn same_contents(
    a: &dyn VectorStore,
    a_ns: &Namespace,
    b: &dyn VectorStore,
    b_ns: &Namespace,
) {
    assert_eq!(
        a.count(a_ns).await.unwrap(),
        b.count(b_ns).await.unwrap(),
        "counts"
    );
    let (sa, sb) = (
        a.scan(a_ns, None, 1000).await.unwrap(),
        b.scan(b_ns, None, 1000).await.unwrap(),
    );
    let chunks = |s: &[EmbeddedChunk]| s.iter().map(|c| c.chunk.clone()).collect::<Vec<Chunk>>();
    assert_eq!(chunks(&sa), chunks(&sb), "chunks");
    for q in QUERIES {
        assert_eq!(
            dense(a, a_ns, q).await,
            dense(b, b_ns, q).await,
            "results of {q:?}"
        );
    }
}

fn gunzip(file: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut s)
        .expect("gunzip");
    s
}

fn gzip(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(text.as_bytes()).expect("gzip");
    e.finish().expect("gzip")
}

#[tokio::test]
async fn export_then_import_gives_the_same_namespace() {
    let (src, src_ns) = source().await;
    let file = export(&src, &src_ns).await;
    let text = gunzip(&file);
    let first: serde_json::Value =
        serde_json::from_str(text.lines().next().unwrap()).expect("header is JSON");
    assert_eq!(first["format"], "rag-export");
    assert_eq!(first["embedder"]["dimensions"], DIMS);
    assert_eq!(
        first["embedder"]["model_id"],
        HashEmbedder::new(DIMS).model_id()
    );

    let target = MemoryVectorStore::default();
    let into = ns("restored");
    let report = import_namespace(
        &target,
        &into,
        &info(),
        Cursor::new(&file),
        &ImportOptions::default(),
    )
    .await
    .expect("import");
    assert_eq!(
        report.chunks_written as usize,
        src.count(&src_ns).await.unwrap()
    );
    assert_eq!(report.documents_written, 12);
    assert_eq!(report.trailer.chunks, report.chunks_written);
    same_contents(&src, &src_ns, &target, &into).await;
    // The copy exports to a file of the same counts.
    let again = export(&target, &into).await;
    let summary = verify_export(Cursor::new(again), Some(&info())).expect("verifies");
    assert_eq!(summary.trailer.chunks, report.trailer.chunks);
    assert_eq!(summary.trailer.documents, 12);
    assert_eq!(summary.header.namespace, into);
}

#[tokio::test]
async fn another_embedder_or_dimension_is_refused_before_writing() {
    let (src, src_ns) = source().await;
    let file = export(&src, &src_ns).await;
    let target = MemoryVectorStore::default();
    let into = ns("kept");
    target
        .upsert(&into, &src.scan(&src_ns, None, 1).await.unwrap())
        .await
        .unwrap();
    let before = target.count(&into).await.unwrap();
    for other in [
        EmbedderInfo::new("text-embedding-3-small", DIMS),
        EmbedderInfo::new(HashEmbedder::new(DIMS).model_id(), DIMS * 2),
    ] {
        // Even with replace, the refusal comes before the namespace is deleted.
        let opts = ImportOptions::default().with_mode(ImportMode::Replace);
        let e = import_namespace(&target, &into, &other, Cursor::new(&file), &opts)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains(&other.model_id) && msg.contains(HashEmbedder::new(DIMS).model_id()),
            "{msg}"
        );
        assert!(msg.contains(&other.dimensions.to_string()), "{msg}");
        assert_eq!(
            target.count(&into).await.unwrap(),
            before,
            "target untouched"
        );
    }
    // A store whose dimension is fixed refuses a file of another.
    let fixed =
        MemoryVectorStore::new(rag_core::memory::MemoryConfig::default().with_dimensions(DIMS + 1));
    let e = import_namespace(
        &fixed,
        &into,
        &info(),
        Cursor::new(&file),
        &ImportOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains(&format!("{}", DIMS + 1)), "{e}");
    assert_eq!(fixed.count(&into).await.unwrap(), 0);
}

#[tokio::test]
async fn a_truncated_or_altered_file_writes_nothing() {
    let (src, src_ns) = source().await;
    let file = export(&src, &src_ns).await;
    let text = gunzip(&file);
    let lines: Vec<&str> = text.lines().collect();
    let without_trailer = lines[..lines.len() - 1].join("\n") + "\n";
    let altered = text.replacen("Paragraph 3 of note 4", "Paragraph 3 of note 5", 1);
    assert_ne!(altered, text);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "compressed bytes cut in half",
            file[..file.len() / 2].to_vec(),
        ),
        ("gzip footer cut", file[..file.len() - 4].to_vec()),
        ("no trailer", gzip(&without_trailer)),
        ("a line cut off", gzip(&text[..text.len() - 10])),
        ("a text altered", gzip(&altered)),
        (
            "a line dropped",
            gzip(&[&lines[..3], &lines[4..]].concat().join("\n")),
        ),
        ("empty", Vec::new()),
    ];
    let target = MemoryVectorStore::default();
    let into = ns("untouched");
    let keep = src.scan(&src_ns, None, 2).await.unwrap();
    target.upsert(&into, &keep).await.unwrap();
    for (what, bytes) in cases {
        let opts = ImportOptions::default().with_mode(ImportMode::Replace);
        let e = import_namespace(&target, &into, &info(), Cursor::new(bytes), &opts)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Corrupt { .. }), "{what}: {e}");
        assert_eq!(
            target.count(&into).await.unwrap(),
            keep.len(),
            "{what}: target untouched"
        );
    }
    verify_export(Cursor::new(&file), Some(&info())).expect("the intact file verifies");
}

#[tokio::test]
async fn a_non_empty_target_needs_replace_or_resume() {
    let (src, src_ns) = source().await;
    let file = export(&src, &src_ns).await;
    let target = MemoryVectorStore::default();
    let into = ns("busy");
    let stray = stray_chunk();
    target.upsert(&into, &stray).await.unwrap();
    let e = import_namespace(
        &target,
        &into,
        &info(),
        Cursor::new(&file),
        &ImportOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
    assert!(e.to_string().contains("not empty"), "{e}");
    assert_eq!(target.count(&into).await.unwrap(), 1);

    let opts = ImportOptions::default().with_mode(ImportMode::Replace);
    import_namespace(&target, &into, &info(), Cursor::new(&file), &opts)
        .await
        .expect("replace");
    same_contents(&src, &src_ns, &target, &into).await;
}

/// A store whose upserts fail after the first `ok` calls, as a lost
/// connection would.
#[derive(Debug)]
struct FailsAfter<'a> {
    inner: &'a MemoryVectorStore,
    ok: usize,
    calls: AtomicUsize,
}

#[async_trait]
impl VectorStore for FailsAfter<'_> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn upsert(&self, ns: &Namespace, chunks: &[EmbeddedChunk]) -> Result<()> {
        if self.calls.fetch_add(1, Ordering::SeqCst) >= self.ok {
            return Err(Error::backend("memory", true, "connection reset"));
        }
        self.inner.upsert(ns, chunks).await
    }
    async fn search(&self, ns: &Namespace, req: SearchRequest) -> Result<Vec<ScoredChunk>> {
        self.inner.search(ns, req).await
    }
    async fn delete_document(&self, ns: &Namespace, id: &DocumentId) -> Result<usize> {
        self.inner.delete_document(ns, id).await
    }
    async fn document_hashes(
        &self,
        ns: &Namespace,
        ids: &[DocumentId],
    ) -> Result<Vec<(DocumentId, String)>> {
        self.inner.document_hashes(ns, ids).await
    }
    async fn get_chunks(&self, ns: &Namespace, ids: &[ChunkId]) -> Result<Vec<Chunk>> {
        self.inner.get_chunks(ns, ids).await
    }
    async fn list_documents(
        &self,
        ns: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<DocumentInfo>> {
        self.inner.list_documents(ns, after, limit).await
    }
    async fn scan(
        &self,
        ns: &Namespace,
        after: Option<&DocumentId>,
        limit: usize,
    ) -> Result<Vec<EmbeddedChunk>> {
        self.inner.scan(ns, after, limit).await
    }
    async fn count(&self, ns: &Namespace) -> Result<usize> {
        self.inner.count(ns).await
    }
    async fn delete_namespace(&self, ns: &Namespace) -> Result<()> {
        self.inner.delete_namespace(ns).await
    }
    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }
}

#[tokio::test]
async fn an_interrupted_import_says_so_and_a_resumed_one_finishes_it() {
    let (src, src_ns) = source().await;
    let file = export(&src, &src_ns).await;
    let target = MemoryVectorStore::default();
    let into = ns("interrupted");
    let failing = FailsAfter {
        inner: &target,
        ok: 5,
        calls: AtomicUsize::new(0),
    };
    let e = import_namespace(
        &failing,
        &into,
        &info(),
        Cursor::new(&file),
        &ImportOptions::default(),
    )
    .await
    .unwrap_err();
    let written = target.count(&into).await.unwrap();
    let total = src.count(&src_ns).await.unwrap();
    assert!(written > 0 && written < total, "{written} of {total}");
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("after {written} of {total} chunks")),
        "the error says how much was written: {msg}"
    );
    assert!(
        msg.contains("resume"),
        "the error says how to finish: {msg}"
    );
    assert!(e.is_retryable(), "the store error's retryability is kept");
    assert!(
        matches!(&e, Error::Backend { backend, .. } if backend == "import"),
        "{e:?}"
    );

    // Without resume the partly written target is refused...
    let e = import_namespace(
        &target,
        &into,
        &info(),
        Cursor::new(&file),
        &ImportOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
    // ...and with it the import finishes, skipping what is there.
    let opts = ImportOptions::default().with_mode(ImportMode::Resume);
    let report = import_namespace(&target, &into, &info(), Cursor::new(&file), &opts)
        .await
        .expect("resume");
    assert_eq!(
        report.documents_skipped, 5,
        "one document per upsert for the memory store"
    );
    assert_eq!(report.chunks_written as usize, total - written);
    same_contents(&src, &src_ns, &target, &into).await;
}

#[tokio::test]
async fn sessions_are_exported_and_imported() {
    let (src, src_ns) = source().await;
    let sessions = MemorySessionStore::default();
    let mut made = Vec::new();
    for i in 0..3 {
        let s = sessions
            .create(
                NewSession::new(src_ns.clone())
                    .with_metadata(serde_json::json!({"user": format!("u{i}")}))
                    .with_ttl(std::time::Duration::from_secs(3600)),
            )
            .await
            .unwrap();
        sessions
            .append(
                s.id,
                vec![
                    Message::user(format!("question {i}")),
                    Message::assistant(format!("answer {i} [1]")),
                ],
            )
            .await
            .unwrap();
        made.push(s.id);
    }
    // Another namespace's session is not exported.
    sessions
        .create(NewSession::new(ns("elsewhere")))
        .await
        .unwrap();

    let mut file = Vec::new();
    let report = export_namespace(
        &src,
        &src_ns,
        &info(),
        &mut file,
        &ExportOptions::default().with_sessions(&sessions),
    )
    .await
    .unwrap();
    assert_eq!((report.sessions, report.messages), (3, 6));

    let target = MemoryVectorStore::default();
    let target_sessions = MemorySessionStore::default();
    let into = ns("with_sessions");
    let opts = ImportOptions::default().with_sessions(&target_sessions);
    let imported = import_namespace(&target, &into, &info(), Cursor::new(&file), &opts)
        .await
        .unwrap();
    assert_eq!(
        (imported.sessions_written, imported.messages_written),
        (3, 6)
    );
    let mut restored = target_sessions.list(&into, 10).await.unwrap();
    assert_eq!(restored.len(), 3);
    restored.sort_by_key(|s| s.metadata["user"].as_str().unwrap_or_default().to_owned());
    for (i, s) in restored.iter().enumerate() {
        assert_eq!(s.metadata["user"], format!("u{i}"));
        assert!(s.expires_at.is_some(), "the idle time is kept");
        let history = target_sessions.history(s.id, 10).await.unwrap();
        let texts: Vec<&str> = history.iter().map(|m| m.message.content.as_str()).collect();
        assert_eq!(texts, [format!("question {i}"), format!("answer {i} [1]")]);
    }

    // Importing again into a namespace holding sessions needs replace, which
    // swaps them rather than adding to them.
    let e = import_namespace(&target, &into, &info(), Cursor::new(&file), &opts)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("3 sessions"), "{e}");
    let opts = opts.with_mode(ImportMode::Replace);
    import_namespace(&target, &into, &info(), Cursor::new(&file), &opts)
        .await
        .unwrap();
    assert_eq!(target_sessions.list(&into, 10).await.unwrap().len(), 3);
}
