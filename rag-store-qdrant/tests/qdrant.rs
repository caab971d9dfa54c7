//! Qdrant-specific behaviour against a real server: native fusion, BM25
//! equal to the in-memory store's, batched replacement, repair of an
//! interrupted write, collection checks, large results, literal keys.

mod common;

use std::collections::HashMap;

use rag_core::search::fuse;
use rag_core::testkit::fresh_namespace;
use rag_core::testkit::vector_store::{doc_chunks, random_unit, unit};
use rag_core::text::Analyzer;
use rag_core::{
    ChunkId, DocumentId, EmbeddedChunk, Error, Filter, Fusion, MemoryVectorStore, SearchRequest,
    VectorStore,
};
use rag_store_qdrant::qdrant_client::qdrant::UpsertPoints;
use rag_store_qdrant::{Bm25Config, MIXED_VERSIONS, QdrantConfig, QdrantStore, Tenancy, schema};
use serde_json::json;

const WORDS: &[&str] = &[
    "key", "rotation", "vault", "token", "cluster", "backup", "restore", "latency", "index",
    "shard", "replica", "schema", "query", "cache", "budget", "invoice", "payroll", "audit",
];

/// Texts with overlapping vocabularies and varied lengths.
fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let len = 3 + (i * 7) % 11;
            (0..len)
                .map(|j| WORDS[(i * 5 + j * j * 3 + j) % WORDS.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// One-chunk documents `d{i}` with random vectors.
fn corpus(texts: &[String], d: usize) -> Vec<Vec<EmbeddedChunk>> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut c = doc_chunks(&format!("d{i:03}"), &[t.as_str()], json!({"i": i}), d, 0);
            c[0].vector = random_unit(i as u64 + 7, d);
            c
        })
        .collect()
}

async fn load(store: &dyn VectorStore, ns: &rag_core::Namespace, docs: Vec<Vec<EmbeddedChunk>>) {
    for doc in docs {
        store.upsert(ns, &doc).await.expect("upsert");
    }
}

fn by_id(hits: &[rag_core::ScoredChunk]) -> HashMap<ChunkId, f32> {
    hits.iter().map(|h| (h.chunk.id.clone(), h.score)).collect()
}

/// Native RRF (one request) gives the same results and scores as
/// `rag_core::search::fuse` over the dense and keyword lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_rrf_equals_core_fusion() {
    let Some(url) = common::qdrant_url("native_rrf_equals_core_fusion") else {
        return;
    };
    let store = common::store(&url, "rrf", |c| c).await;
    let ns = fresh_namespace("rrf");
    load(&store, &ns, corpus(&texts(80), 16)).await;
    let q = random_unit(999, 16);
    for (text, fusion) in [
        ("vault key rotation", Fusion::Rrf { k: 60.0 }),
        ("backup restore", Fusion::Rrf { k: 10.0 }),
        (
            "audit invoice payroll",
            Fusion::Weighted { dense_weight: 0.7 },
        ),
        // Not an integer k: fused client-side.
        ("cache query", Fusion::Rrf { k: 2.5 }),
    ] {
        let n = 50;
        let dense = store
            .search(&ns, SearchRequest::dense(q.clone(), n))
            .await
            .expect("dense");
        let keyword = store
            .search(&ns, SearchRequest::keyword(text, n))
            .await
            .expect("keyword");
        assert!(
            !keyword.is_empty(),
            "keyword search found nothing for {text}"
        );
        let expected = fuse(dense, keyword, fusion, 10);
        let got = store
            .search(
                &ns,
                SearchRequest::hybrid(q.clone(), text, 10).with_fusion(fusion),
            )
            .await
            .expect("hybrid");
        assert_eq!(got.len(), expected.len(), "{fusion:?}");
        // Same scores per chunk, and the same ranking up to ties.
        let want = by_id(&expected);
        for (g, e) in got.iter().zip(&expected) {
            assert!(
                (g.score - e.score).abs() < 1e-6,
                "{fusion:?}: rank score {} vs {}",
                g.score,
                e.score
            );
            let w = want
                .get(&g.chunk.id)
                .unwrap_or_else(|| panic!("{fusion:?}: {} not expected", g.chunk.id));
            assert!(
                (g.score - w).abs() < 1e-6,
                "{fusion:?}: {} scored {} not {w}",
                g.chunk.id,
                g.score
            );
            assert_eq!(g.fused_score, Some(g.score));
        }
    }
    common::drop_collections(&store).await;
}

/// With a collection per namespace and `avg_len` set to the corpus
/// average, keyword scores equal the in-memory store's BM25: same
/// tokenizer, same IDF, same term-frequency normalisation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyword_scores_equal_the_memory_bm25() {
    let Some(url) = common::qdrant_url("keyword_scores_equal_the_memory_bm25") else {
        return;
    };
    let docs = texts(60);
    let analyzer = Analyzer::default();
    let total: usize = docs.iter().map(|t| analyzer.terms(t).len()).sum();
    let avg = total as f32 / docs.len() as f32;
    let store = common::store(&url, "bm25", |c| {
        c.with_tenancy(Tenancy::Collection)
            .with_bm25(Bm25Config::default().with_avg_len(avg))
    })
    .await;
    let memory = MemoryVectorStore::default();
    let ns = fresh_namespace("bm25");
    load(&store, &ns, corpus(&docs, 16)).await;
    load(&memory, &ns, corpus(&docs, 16)).await;
    for q in [
        "vault",
        "key rotation",
        "the backup of the cluster",
        "audit audit invoice",
    ] {
        let want = memory
            .search(&ns, SearchRequest::keyword(q, 100))
            .await
            .expect("memory");
        let got = store
            .search(&ns, SearchRequest::keyword(q, 100))
            .await
            .expect("qdrant");
        assert_eq!(got.len(), want.len(), "{q}: same matching chunks");
        let want = by_id(&want);
        for g in &got {
            let w = want[&g.chunk.id];
            assert!(
                (g.score - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{q}: {} scored {} by qdrant, {w} by the memory store",
                g.chunk.document_id,
                g.score
            );
            assert_eq!(g.keyword_score, Some(g.score));
        }
    }
    store.delete_namespace(&ns).await.expect("drop");
}

/// A document larger than one write batch is replaced without a stale chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_batch_document_is_replaced_whole() {
    let Some(url) = common::qdrant_url("multi_batch_document_is_replaced_whole") else {
        return;
    };
    let store = common::store(&url, "batches", |c| c.with_batch_size(8)).await;
    let ns = fresh_namespace("batches");
    let parts: Vec<String> = (0..50).map(|i| format!("old part {i} zebra")).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let v1 = doc_chunks("big", &parts, json!({"v": 1}), 16, 0);
    let old: Vec<ChunkId> = v1.iter().map(|c| c.chunk.id.clone()).collect();
    store.upsert(&ns, &v1).await.expect("v1");
    assert_eq!(store.count(&ns).await.expect("count"), 50);
    let parts: Vec<String> = (0..20).map(|i| format!("new part {i} giraffe")).collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    store
        .upsert(&ns, &doc_chunks("big", &parts, json!({"v": 2}), 16, 0))
        .await
        .expect("v2");
    assert_eq!(store.count(&ns).await.expect("count"), 20);
    assert!(store.get_chunks(&ns, &old).await.expect("get").is_empty());
    let hits = store
        .search(&ns, SearchRequest::dense(unit(16, 0, 0.0), 100))
        .await
        .expect("dense");
    assert!(hits.iter().all(|h| h.chunk.metadata["v"] == json!(2)));
    assert!(
        store
            .search(&ns, SearchRequest::keyword("zebra", 10))
            .await
            .expect("keyword")
            .is_empty()
    );
    let listed = store.list_documents(&ns, None, 10).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].chunks, 20);
    common::drop_collections(&store).await;
}

/// A write that stored a new version's points but died before deleting the
/// old ones leaves two versions: `document_hashes` says so, so ingestion
/// writes the document again, and that upsert leaves only the new version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_write_is_reported_and_repaired() {
    let Some(url) = common::qdrant_url("interrupted_write_is_reported_and_repaired") else {
        return;
    };
    let store = common::store(&url, "repair", |c| c).await;
    let ns = fresh_namespace("repair");
    let v1 = doc_chunks("doc", &["one", "two", "three"], json!({"v": 1}), 16, 0);
    store.upsert(&ns, &v1).await.expect("v1");
    let v2 = doc_chunks("doc", &["uno", "dos"], json!({"v": 2}), 16, 0);
    let new_hash = v2[0].chunk.document_hash.clone();
    // The first half of an upsert: the new points, without the delete.
    let points = v2
        .iter()
        .map(|c| schema::point(&ns, &c.chunk, c.vector.clone(), (vec![], vec![])))
        .collect();
    store
        .client()
        .upsert_points(UpsertPoints {
            collection_name: store.collection_name(&ns),
            wait: Some(true),
            points,
            ..Default::default()
        })
        .await
        .expect("raw upsert");
    let id = DocumentId::new("doc").expect("id");
    let hashes = store
        .document_hashes(&ns, std::slice::from_ref(&id))
        .await
        .expect("hashes");
    assert_eq!(hashes, [(id.clone(), MIXED_VERSIONS.to_owned())]);
    store.upsert(&ns, &v2).await.expect("repair");
    assert_eq!(store.count(&ns).await.expect("count"), 2);
    let hashes = store.document_hashes(&ns, &[id]).await.expect("hashes");
    assert_eq!(hashes[0].1, new_hash);
    common::drop_collections(&store).await;
}

/// Opening a collection made for another dimension or distance is
/// `Corrupt`, and its data is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_collection_is_refused() {
    let Some(url) = common::qdrant_url("foreign_collection_is_refused") else {
        return;
    };
    let store = common::store(&url, "foreign", |c| c).await;
    let ns = fresh_namespace("foreign");
    store
        .upsert(&ns, &doc_chunks("a", &["alpha"], json!({}), 16, 0))
        .await
        .expect("upsert");
    let name = store.config().collection.clone();
    let e = QdrantStore::connect(QdrantConfig::new(&url, 32).with_collection(&name))
        .await
        .expect_err("dimension mismatch");
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("16"), "{e}");
    let e = QdrantStore::connect(
        QdrantConfig::new(&url, 16)
            .with_collection(&name)
            .with_distance(rag_core::Distance::Dot),
    )
    .await
    .expect_err("distance mismatch");
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    let e = QdrantStore::connect(
        QdrantConfig::new(&url, 16)
            .with_collection(common::fresh_collection("absent"))
            .with_create_collection(false),
    )
    .await
    .expect_err("missing collection");
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    assert_eq!(store.count(&ns).await.expect("count"), 1);
    common::drop_collections(&store).await;
}

/// A `top_k` above the inline limit reads payloads in pages: every result
/// arrives, with its text, best first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_top_k_reads_payloads_in_pages() {
    let Some(url) = common::qdrant_url("large_top_k_reads_payloads_in_pages") else {
        return;
    };
    let store = common::store(&url, "large_k", |c| c).await;
    let ns = fresh_namespace("large_k");
    let big = "lorem ipsum dolor sit amet ".repeat(40);
    let docs: Vec<EmbeddedChunk> = (0..700)
        .flat_map(|i| {
            let text = format!("{i} {big}");
            let mut c = doc_chunks(&format!("d{i:04}"), &[text.as_str()], json!({}), 16, 0);
            c[0].vector = random_unit(i as u64 + 1, 16);
            c
        })
        .collect();
    store.upsert(&ns, &docs).await.expect("upsert");
    let hits = store
        .search(&ns, SearchRequest::dense(random_unit(5, 16), 700))
        .await
        .expect("search");
    assert_eq!(hits.len(), 700);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(hits.iter().all(|h| h.chunk.text.ends_with("amet ")));
    let hits = store
        .search(&ns, SearchRequest::keyword("lorem", 600))
        .await
        .expect("keyword");
    assert_eq!(hits.len(), 600);
    // Weighted hybrid reads both lists (2,400 candidates each) in pages too.
    let hits = store
        .search(
            &ns,
            SearchRequest::hybrid(random_unit(5, 16), "lorem", 600)
                .with_fusion(Fusion::Weighted { dense_weight: 0.5 }),
        )
        .await
        .expect("weighted hybrid");
    assert_eq!(hits.len(), 600);
    assert!(hits.iter().all(|h| h.chunk.text.ends_with("amet ")));
    common::drop_collections(&store).await;
}

/// Metadata keys are literal: `a.b` is not the path `a` → `b`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotted_keys_are_literal() {
    let Some(url) = common::qdrant_url("dotted_keys_are_literal") else {
        return;
    };
    let store = common::store(&url, "dotted", |c| c).await;
    let ns = fresh_namespace("dotted");
    store
        .upsert(&ns, &doc_chunks("flat", &["x"], json!({"a.b": 1}), 16, 0))
        .await
        .expect("upsert");
    store
        .upsert(
            &ns,
            &doc_chunks("nested", &["y"], json!({"a": {"b": 1}}), 16, 1),
        )
        .await
        .expect("upsert");
    for f in [
        Filter::eq("a.b", 1),
        Filter::exists("a.b"),
        Filter::gte("a.b", 1),
    ] {
        let hits = store
            .search(
                &ns,
                SearchRequest::dense(unit(16, 0, 0.0), 10).with_filter(f.clone()),
            )
            .await
            .expect("search");
        let ids: Vec<&str> = hits.iter().map(|h| h.chunk.document_id.as_str()).collect();
        assert_eq!(ids, ["flat"], "{f:?}");
    }
    let e = store
        .search(
            &ns,
            SearchRequest::dense(unit(16, 0, 0.0), 10).with_filter(Filter::eq("say \"hi\"", 1)),
        )
        .await;
    assert!(matches!(e, Err(Error::Unsupported { .. })), "{e:?}");
    common::drop_collections(&store).await;
}

/// The API key never shows in `Debug` output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_is_never_shown() {
    let Some(url) = common::qdrant_url("api_key_is_never_shown") else {
        return;
    };
    // A server without authentication ignores the key.
    let store = common::store(&url, "apikey", |c| c.with_api_key("sk-qdrant-very-secret")).await;
    let dbg = format!("{store:?}");
    assert!(!dbg.contains("very-secret"), "{dbg}");
    assert!(!store.server_version().is_empty());
    store.health().await.expect("health");
    common::drop_collections(&store).await;
}
