//! Lance-specific behaviour: persistence across restarts, foreign and
//! incompatible directories, index freshness, the vector index, maintenance
//! and atomic document replacement.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rag_core::testkit::vector_store::{doc_chunks, random_unit, unit};
use rag_core::{
    DocumentId, Error, Filter, MemoryVectorStore, Namespace, SearchRequest, VectorStore,
    memory::MemoryConfig,
};
use rag_store_lance::{LanceConfig, LanceVectorStore, VectorIndexConfig, VectorIndexKind};
use serde_json::json;

const D: usize = 16;

fn path(dir: &tempfile::TempDir) -> String {
    dir.path().to_str().expect("utf-8 path").to_owned()
}

async fn open(dir: &tempfile::TempDir) -> LanceVectorStore {
    LanceVectorStore::open(LanceConfig::new(path(dir), D))
        .await
        .expect("open lance store")
}

fn ns(name: &str) -> Namespace {
    Namespace::new(name).expect("namespace")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (ns("alpha"), ns("beta"));
    {
        let store = open(&dir).await;
        store
            .upsert(
                &a,
                &doc_chunks(
                    "d1",
                    &["rotate keys monthly", "audit logs weekly"],
                    json!({"team": "ops"}),
                    D,
                    0,
                ),
            )
            .await
            .expect("upsert");
        store
            .upsert(&b, &doc_chunks("d2", &["other tenant"], json!({}), D, 3))
            .await
            .expect("upsert");
    } // dropped: the "process" ends
    let store = open(&dir).await;
    let mut names: Vec<String> = store
        .namespaces()
        .await
        .expect("namespaces")
        .iter()
        .map(|n| n.as_str().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["alpha", "beta"]);
    assert_eq!(store.count(&a).await.expect("count"), 2);
    let hits = store
        .search(&a, SearchRequest::dense(unit(D, 1, 0.0), 1))
        .await
        .expect("dense");
    assert_eq!(hits[0].chunk.text, "audit logs weekly");
    assert_eq!(hits[0].chunk.metadata["team"], json!("ops"));
    let kw = store
        .search(&a, SearchRequest::keyword("rotating key", 5))
        .await
        .expect("keyword after reopen");
    assert_eq!(kw.len(), 1, "stemmed match: {kw:?}");
    assert_eq!(kw[0].chunk.text, "rotate keys monthly");
    let docs = store.list_documents(&a, None, 10).await.expect("list");
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].chunks, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_not_a_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"hello").expect("write");
    let e = LanceVectorStore::open(LanceConfig::new(file.to_str().expect("utf-8"), D))
        .await
        .expect_err("a file is not a database");
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("not a directory"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_that_is_not_a_lance_dataset_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table_dir = dir.path().join("rag_default.lance");
    std::fs::create_dir_all(table_dir.join("_versions")).expect("mkdir");
    std::fs::write(table_dir.join("_versions").join("1.manifest"), b"garbage").expect("write");
    let e = LanceVectorStore::open(LanceConfig::new(path(&dir), D))
        .await
        .expect_err("garbage table");
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("rag_default"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incompatible_schemas_are_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(&dir).await;
        store
            .upsert(
                &Namespace::default(),
                &doc_chunks("d", &["x"], json!({}), D, 0),
            )
            .await
            .expect("upsert");
    }
    // Another dimension.
    let e = LanceVectorStore::open(LanceConfig::new(path(&dir), 8))
        .await
        .expect_err("dimension mismatch");
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("16-dimensional"), "{e}");

    // A table of someone else's layout under our prefix.
    {
        use arrow_array::{Int32Array, RecordBatch};
        use arrow_schema::{DataType, Field, Schema};
        let db = lancedb::connect(&path(&dir))
            .execute()
            .await
            .expect("connect");
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int32, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(Int32Array::from(vec![1, 2]))])
            .expect("batch");
        db.create_table("rag_foreign", batch)
            .execute()
            .await
            .expect("create foreign table");
    }
    let e = LanceVectorStore::open(LanceConfig::new(path(&dir), D))
        .await
        .expect_err("foreign layout");
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    assert!(
        e.to_string().contains("rag_foreign") && e.to_string().contains("column \"id\""),
        "{e}"
    );
    // Refusing changed nothing: both tables are intact.
    let db = lancedb::connect(&path(&dir))
        .execute()
        .await
        .expect("connect");
    let t = db.open_table("rag_default").execute().await.expect("open");
    assert_eq!(t.count_rows(None).await.expect("rows"), 1);
    let t = db.open_table("rag_foreign").execute().await.expect("open");
    assert_eq!(t.count_rows(None).await.expect("rows"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_search_is_current_after_upserts_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let n = ns("fresh");
    let kw = |q: &'static str| {
        let store = &store;
        let n = &n;
        async move {
            store
                .search(n, SearchRequest::keyword(q, 10))
                .await
                .expect("keyword")
                .into_iter()
                .map(|h| h.chunk.document_id.to_string())
                .collect::<BTreeSet<_>>()
        }
    };
    store
        .upsert(&n, &doc_chunks("a", &["alpha particles"], json!({}), D, 0))
        .await
        .expect("upsert a");
    store
        .upsert(&n, &doc_chunks("b", &["bravo company"], json!({}), D, 1))
        .await
        .expect("upsert b");
    assert_eq!(kw("bravo").await, BTreeSet::from(["b".to_owned()]));
    assert_eq!(kw("alpha").await, BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        store
            .delete_document(&n, &DocumentId::new("b").expect("id"))
            .await
            .expect("delete"),
        1
    );
    assert!(kw("bravo").await.is_empty(), "deleted doc still found");
    // Replace a's text: the old words go, the new ones come.
    store
        .upsert(&n, &doc_chunks("a", &["charlie horse"], json!({}), D, 0))
        .await
        .expect("replace a");
    assert!(kw("alpha").await.is_empty(), "replaced text still found");
    assert_eq!(kw("charlie").await, BTreeSet::from(["a".to_owned()]));
    // Folding the new rows into the index changes nothing visible.
    store
        .optimize(&n, Duration::from_secs(3600))
        .await
        .expect("optimize");
    assert!(kw("alpha").await.is_empty());
    assert_eq!(kw("charlie").await, BTreeSet::from(["a".to_owned()]));
}

async fn recall_with(kind: VectorIndexKind) -> f64 {
    const ROWS: usize = 3_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LanceConfig::new(path(&dir), 32).with_vector_index(
        VectorIndexConfig::default()
            .with_kind(kind)
            .with_build_threshold(2_000)
            .with_nprobes(8),
    );
    let store = LanceVectorStore::open(cfg).await.expect("open");
    let exact = MemoryVectorStore::new(MemoryConfig::default());
    let n = ns("recall");
    for start in (0..ROWS).step_by(500) {
        let mut batch = Vec::new();
        for i in start..start + 500 {
            let mut c = doc_chunks(&format!("r{i}"), &["row"], json!({}), 32, 0);
            c[0].vector = random_unit(i as u64, 32);
            batch.extend(c);
        }
        store.upsert(&n, &batch).await.expect("upsert");
        exact.upsert(&n, &batch).await.expect("upsert memory");
    }
    let table = store.table(&n).await.expect("table").expect("exists");
    let indices = table.list_indices().await.expect("indices");
    assert!(
        indices
            .iter()
            .any(|i| i.columns.iter().any(|c| c == "vector")),
        "the vector index was built past the threshold: {indices:?}"
    );
    let mut found = 0usize;
    let queries = 50;
    for q in 0..queries {
        let v = random_unit(1_000_000 + q, 32);
        let want: BTreeSet<_> = exact
            .search(&n, SearchRequest::dense(v.clone(), 10))
            .await
            .expect("exact")
            .into_iter()
            .map(|h| h.chunk.id)
            .collect();
        let got: BTreeSet<_> = store
            .search(&n, SearchRequest::dense(v, 10))
            .await
            .expect("ann")
            .into_iter()
            .map(|h| h.chunk.id)
            .collect();
        found += want.intersection(&got).count();
    }
    found as f64 / (queries as f64 * 10.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_index_is_built_past_the_threshold_with_good_recall() {
    let pq = recall_with(VectorIndexKind::IvfPq {
        num_partitions: Some(8),
        num_sub_vectors: Some(4),
    })
    .await;
    assert!(pq >= 0.9, "IVF-PQ + refine recall@10 {pq}");
    let hnsw = recall_with(VectorIndexKind::IvfHnswSq {
        num_partitions: Some(4),
        m: 16,
        ef_construction: 100,
    })
    .await;
    assert!(hnsw >= 0.9, "IVF-HNSW-SQ recall@10 {hnsw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimize_compacts_and_prunes_without_losing_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let n = ns("maint");
    for i in 0..6 {
        store
            .upsert(
                &n,
                &doc_chunks(
                    &format!("m{i}"),
                    &["maintenance words"],
                    json!({"i": i}),
                    D,
                    i,
                ),
            )
            .await
            .expect("upsert");
    }
    store
        .delete_document(&n, &DocumentId::new("m0").expect("id"))
        .await
        .expect("delete");
    let report = store.optimize(&n, Duration::ZERO).await.expect("optimize");
    assert!(report.versions_removed > 0, "{report:?}");
    assert!(report.fragments_removed > 0, "{report:?}");
    assert_eq!(store.count(&n).await.expect("count"), 5);
    let hits = store
        .search(
            &n,
            SearchRequest::keyword("maintenance", 10).with_filter(Filter::gte("i", 3)),
        )
        .await
        .expect("search");
    assert_eq!(hits.len(), 3);
    // And after a restart.
    drop(store);
    let store = open(&dir).await;
    assert_eq!(store.count(&n).await.expect("count"), 5);
}

/// A reader never sees a mix of a document's old and new chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_half_replaced_documents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(&dir).await);
    let n = ns("atomic");
    let version = |v: usize| {
        let parts: Vec<String> = (0..4 + v % 3).map(|p| format!("v{v} part {p}")).collect();
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        doc_chunks("doc", &parts, json!({"v": v}), D, v)
    };
    store.upsert(&n, &version(0)).await.expect("first version");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, n, stop) = (store.clone(), n.clone(), stop.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                let hits = store
                    .search(
                        &n,
                        SearchRequest::dense(unit(D, 0, 0.0), 100)
                            .with_filter(Filter::eq(rag_core::Field::DocumentId, "doc")),
                    )
                    .await
                    .expect("search");
                let versions: BTreeSet<u64> = hits
                    .iter()
                    .map(|h| h.chunk.metadata["v"].as_u64().expect("version"))
                    .collect();
                assert_eq!(versions.len(), 1, "mixed versions: {versions:?}");
                let v = usize::try_from(versions.into_iter().next().expect("one")).expect("small");
                assert_eq!(hits.len(), 4 + v % 3, "version {v} incomplete");
                reads += 1;
            }
            reads
        })
    };
    for v in 1..12 {
        store.upsert(&n, &version(v)).await.expect("replace");
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await.expect("reader");
    assert!(reads > 0);
    assert_eq!(store.count(&n).await.expect("count"), 4 + 11 % 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_indexes_needs_enough_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let n = ns("small");
    let e = store.build_indexes(&n).await.expect_err("no table");
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    store
        .upsert(&n, &doc_chunks("d", &["x"], json!({}), D, 0))
        .await
        .expect("upsert");
    let e = store.build_indexes(&n).await.expect_err("too small");
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
}
