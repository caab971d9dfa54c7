//! Conformance suite for [`VectorStore`].
//!
//! `run_all(&store).await` runs every test; each is also public so a backend
//! can run one at a time while debugging. Tests read
//! [`VectorStore::capabilities`] and check that an operation the store does
//! not declare fails with `Error::Unsupported` instead of answering. Each test
//! works in a fresh namespace and deletes it at the end.
//!
//! The vectors are unit vectors of `capabilities().dimensions` (16 when the
//! store fixes none), so cosine, dot product and Euclidean rank them alike.

use std::collections::BTreeSet;

use futures::future::join_all;
use serde_json::{Value, json};

use crate::error::Error;
use crate::filter::{Field, Filter, FilterOp};
use crate::search::{Capabilities, SearchMode, SearchRequest};
use crate::testkit::fresh_namespace;
use crate::traits::VectorStore;
use crate::types::{Chunk, ChunkId, Document, DocumentId, EmbeddedChunk, Namespace};

/// Runs the whole suite.
pub async fn run_all(store: &dyn VectorStore) {
    health(store).await;
    empty_store(store).await;
    upsert_then_search_returns_nearest(store).await;
    reupsert_unchanged_changes_nothing(store).await;
    changed_document_replaces_old_chunks(store).await;
    delete_removes_from_every_index(store).await;
    keyword_search_ranks_matching_text(store).await;
    hybrid_search(store).await;
    hybrid_is_the_fusion_of_its_parts(store).await;
    every_filter_operator(store).await;
    filter_on_missing_field(store).await;
    filter_with_keyword_search(store).await;
    invalid_filter_is_invalid_input(store).await;
    namespaces_never_leak(store).await;
    top_k_larger_than_data(store).await;
    invalid_top_k(store).await;
    unicode_text(store).await;
    dimension_mismatch_is_invalid_input(store).await;
    bad_batch_changes_nothing(store).await;
    hostile_metadata_and_queries(store).await;
    concurrent_upserts_all_land(store).await;
    document_hashes_and_listing(store).await;
    get_chunks_in_order(store).await;
    scan_returns_what_was_upserted(store).await;
}

/// The dimension used for test vectors.
pub fn dims(store: &dyn VectorStore) -> usize {
    store.capabilities().dimensions.unwrap_or(16)
}

/// A unit vector close to basis vector `axis` (mod `d`), tilted towards
/// `axis + 1` by `tilt` (0 = exactly the axis).
pub fn unit(d: usize, axis: usize, tilt: f32) -> Vec<f32> {
    let mut v = vec![0f32; d];
    v[axis % d] = 1.0;
    v[(axis + 1) % d] += tilt;
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// A deterministic pseudo-random unit vector of `d` dimensions (xorshift
/// from `seed`): the same on every machine, spread over the sphere.
pub fn random_unit(seed: u64, d: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..d)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 20_000) as f32 / 10_000.0 - 1.0
        })
        .collect();
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= n);
    v
}

/// Embedded chunks for a document made of `parts` (joined by newlines), one
/// chunk per part, each with vector `unit(d, axis + i, 0.0)`.
pub fn doc_chunks(
    id: &str,
    parts: &[&str],
    meta: Value,
    d: usize,
    axis: usize,
) -> Vec<EmbeddedChunk> {
    let text = parts.join("\n");
    let doc = Document::new(format!("{id}.txt"), text)
        .with_id(DocumentId::new(id).expect("test document id"))
        .with_metadata(meta);
    let mut offset = 0;
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let chunk = Chunk::from_document(&doc, i as u32, offset..offset + p.len());
            offset += p.len() + 1;
            EmbeddedChunk {
                chunk,
                vector: unit(d, axis + i, 0.0),
            }
        })
        .collect()
}

async fn done(store: &dyn VectorStore, ns: &Namespace) {
    store
        .delete_namespace(ns)
        .await
        .expect("delete_namespace after a test");
}

fn ids(hits: &[crate::ScoredChunk]) -> Vec<String> {
    hits.iter()
        .map(|h| h.chunk.document_id.to_string())
        .collect()
}

fn chunk_ids(hits: &[crate::ScoredChunk]) -> BTreeSet<ChunkId> {
    hits.iter().map(|h| h.chunk.id.clone()).collect()
}

async fn dense(
    store: &dyn VectorStore,
    ns: &Namespace,
    v: Vec<f32>,
    k: usize,
) -> Vec<crate::ScoredChunk> {
    store
        .search(ns, SearchRequest::dense(v, k))
        .await
        .expect("dense search")
}

async fn keyword(
    store: &dyn VectorStore,
    ns: &Namespace,
    q: &str,
    k: usize,
) -> Option<Vec<crate::ScoredChunk>> {
    if !store.capabilities().keyword {
        let e = store.search(ns, SearchRequest::keyword(q, k)).await;
        assert!(
            matches!(e, Err(Error::Unsupported { .. })),
            "a store without keyword capability must return Unsupported, got {e:?}"
        );
        return None;
    }
    Some(
        store
            .search(ns, SearchRequest::keyword(q, k))
            .await
            .expect("keyword search"),
    )
}

/// `health` succeeds.
pub async fn health(store: &dyn VectorStore) {
    store.health().await.expect("health of a running store");
}

/// A namespace never written to is empty, and searching it is not an error.
pub async fn empty_store(store: &dyn VectorStore) {
    let ns = fresh_namespace("empty");
    let d = dims(store);
    assert_eq!(
        store.count(&ns).await.expect("count"),
        0,
        "fresh namespace must be empty"
    );
    assert!(
        dense(store, &ns, unit(d, 0, 0.0), 5).await.is_empty(),
        "search of an empty namespace"
    );
    if let Some(hits) = keyword(store, &ns, "anything", 5).await {
        assert!(hits.is_empty(), "keyword search of an empty namespace");
    }
    assert!(
        store
            .list_documents(&ns, None, 10)
            .await
            .expect("list")
            .is_empty()
    );
    let id = DocumentId::new("nothing").expect("id");
    assert!(
        store
            .document_hashes(&ns, std::slice::from_ref(&id))
            .await
            .expect("hashes")
            .is_empty()
    );
    assert_eq!(
        store
            .delete_document(&ns, &id)
            .await
            .expect("delete missing"),
        0
    );
    done(store, &ns).await;
}

/// Dense search returns the nearest chunk first, scores descending.
pub async fn upsert_then_search_returns_nearest(store: &dyn VectorStore) {
    let ns = fresh_namespace("nearest");
    let d = dims(store);
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        let part = format!("document {id} text");
        store
            .upsert(&ns, &doc_chunks(id, &[part.as_str()], json!({}), d, i))
            .await
            .expect("upsert");
    }
    assert_eq!(store.count(&ns).await.expect("count"), 3);
    let hits = dense(store, &ns, unit(d, 1, 0.1), 3).await;
    assert_eq!(
        ids(&hits).first().map(String::as_str),
        Some("b"),
        "nearest first: {:?}",
        ids(&hits)
    );
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "scores must be non-increasing"
    );
    assert!(
        hits[0].dense_score.is_some(),
        "dense results carry dense_score"
    );
    assert_eq!(
        hits[0].chunk.text, "document b text",
        "chunk text round-trips"
    );
    done(store, &ns).await;
}

/// Upserting the same chunks again changes nothing.
pub async fn reupsert_unchanged_changes_nothing(store: &dyn VectorStore) {
    let ns = fresh_namespace("reupsert");
    let d = dims(store);
    let chunks = doc_chunks("doc", &["one", "two", "three"], json!({"v": 1}), d, 0);
    store.upsert(&ns, &chunks).await.expect("upsert");
    let before = dense(store, &ns, unit(d, 0, 0.0), 10).await;
    store.upsert(&ns, &chunks).await.expect("second upsert");
    assert_eq!(
        store.count(&ns).await.expect("count"),
        3,
        "re-upsert must not duplicate"
    );
    let after = dense(store, &ns, unit(d, 0, 0.0), 10).await;
    assert_eq!(
        chunk_ids(&before),
        chunk_ids(&after),
        "same chunks after re-upsert"
    );
    done(store, &ns).await;
}

/// A changed document replaces all its old chunks: none is ever returned.
pub async fn changed_document_replaces_old_chunks(store: &dyn VectorStore) {
    let ns = fresh_namespace("replace");
    let d = dims(store);
    let v1 = doc_chunks(
        "doc",
        &["zebra alpha", "zebra beta", "zebra gamma"],
        json!({"v": 1}),
        d,
        0,
    );
    let old_ids: Vec<ChunkId> = v1.iter().map(|c| c.chunk.id.clone()).collect();
    store.upsert(&ns, &v1).await.expect("upsert v1");
    store
        .upsert(
            &ns,
            &doc_chunks("other", &["unrelated text"], json!({}), d, 5),
        )
        .await
        .expect("upsert other");
    let v2 = doc_chunks(
        "doc",
        &["giraffe one", "giraffe two"],
        json!({"v": 2}),
        d,
        0,
    );
    let new_hash = v2[0].chunk.document_hash.clone();
    store.upsert(&ns, &v2).await.expect("upsert v2");

    assert_eq!(
        store.count(&ns).await.expect("count"),
        3,
        "2 new chunks + 1 other"
    );
    let all = dense(store, &ns, unit(d, 0, 0.0), 100).await;
    for h in &all {
        assert!(
            !old_ids.contains(&h.chunk.id),
            "stale chunk {} returned by dense search",
            h.chunk.id
        );
        if h.chunk.document_id.as_str() == "doc" {
            assert_eq!(h.chunk.metadata["v"], json!(2), "stale metadata");
        }
    }
    if let Some(hits) = keyword(store, &ns, "zebra", 10).await {
        assert!(
            hits.is_empty(),
            "stale chunk returned by keyword search: {:?}",
            ids(&hits)
        );
    }
    if let Some(hits) = keyword(store, &ns, "giraffe", 10).await {
        assert_eq!(hits.len(), 2, "new chunks found by keyword search");
    }
    assert!(
        store
            .get_chunks(&ns, &old_ids)
            .await
            .expect("get")
            .is_empty(),
        "old chunks gone"
    );
    let hashes = store
        .document_hashes(&ns, &[DocumentId::new("doc").expect("id")])
        .await
        .expect("hashes");
    assert_eq!(hashes.len(), 1);
    assert_eq!(hashes[0].1, new_hash, "document hash updated");
    done(store, &ns).await;
}

/// Deleting a document removes it from dense search, keyword search,
/// counts, listings and lookups.
pub async fn delete_removes_from_every_index(store: &dyn VectorStore) {
    let ns = fresh_namespace("delete");
    let d = dims(store);
    store
        .upsert(
            &ns,
            &doc_chunks(
                "gone",
                &["platypus facts", "more platypus"],
                json!({}),
                d,
                0,
            ),
        )
        .await
        .expect("upsert");
    store
        .upsert(&ns, &doc_chunks("kept", &["wombat facts"], json!({}), d, 2))
        .await
        .expect("upsert");
    let gone = DocumentId::new("gone").expect("id");
    assert_eq!(store.delete_document(&ns, &gone).await.expect("delete"), 2);
    assert_eq!(store.count(&ns).await.expect("count"), 1);
    let hits = dense(store, &ns, unit(d, 0, 0.0), 10).await;
    assert_eq!(
        ids(&hits),
        ["kept"],
        "deleted document returned by dense search"
    );
    if let Some(hits) = keyword(store, &ns, "platypus", 10).await {
        assert!(
            hits.is_empty(),
            "deleted document returned by keyword search"
        );
    }
    assert!(
        store
            .document_hashes(&ns, std::slice::from_ref(&gone))
            .await
            .expect("hashes")
            .is_empty()
    );
    let listed = store.list_documents(&ns, None, 10).await.expect("list");
    assert_eq!(
        listed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["kept"]
    );
    assert_eq!(
        store
            .delete_document(&ns, &gone)
            .await
            .expect("delete again"),
        0
    );
    done(store, &ns).await;
}

/// Keyword search ranks the chunk containing the query's rare terms first.
pub async fn keyword_search_ranks_matching_text(store: &dyn VectorStore) {
    let ns = fresh_namespace("keyword");
    let d = dims(store);
    let parts = [
        "The quarterly report covers revenue and costs.",
        "Rotate the signing keys every month and revoke old keys.",
        "Lunch is served in the cafeteria at noon.",
    ];
    for (i, p) in parts.iter().enumerate() {
        store
            .upsert(&ns, &doc_chunks(&format!("d{i}"), &[p], json!({}), d, i))
            .await
            .expect("upsert");
    }
    if let Some(hits) = keyword(store, &ns, "signing keys", 3).await {
        assert!(!hits.is_empty(), "keyword search found nothing");
        assert_eq!(
            hits[0].chunk.document_id.as_str(),
            "d1",
            "best keyword match first"
        );
        assert!(
            hits[0].keyword_score.is_some(),
            "keyword results carry keyword_score"
        );
        assert!(
            !ids(&hits).contains(&"d2".to_owned()),
            "chunk without the terms returned"
        );
    }
    done(store, &ns).await;
}

/// Hybrid search fuses both signals, or is `Unsupported`.
pub async fn hybrid_search(store: &dyn VectorStore) {
    let ns = fresh_namespace("hybrid");
    let d = dims(store);
    store
        .upsert(
            &ns,
            &doc_chunks("a", &["aardvark burrows"], json!({}), d, 0),
        )
        .await
        .expect("upsert");
    store
        .upsert(&ns, &doc_chunks("b", &["badger setts"], json!({}), d, 1))
        .await
        .expect("upsert");
    let req = SearchRequest::hybrid(unit(d, 0, 0.0), "badger", 5);
    let res = store.search(&ns, req).await;
    if store.capabilities().hybrid {
        let hits = res.expect("hybrid search");
        let got: BTreeSet<String> = ids(&hits).into_iter().collect();
        assert!(
            got.contains("a") && got.contains("b"),
            "hybrid returns both the dense and the keyword match: {got:?}"
        );
        assert!(
            hits.iter().all(|h| h.fused_score.is_some()),
            "hybrid results carry fused_score"
        );
    } else {
        assert!(
            matches!(res, Err(Error::Unsupported { .. })),
            "hybrid must be Unsupported: {res:?}"
        );
    }
    done(store, &ns).await;
}

/// A store's hybrid search ranks exactly as the fusion of its own dense and
/// keyword searches, each [`SearchRequest::fusion_pool`] deep, by
/// [`crate::search::fuse`]: the ranking the pipeline computes itself for a
/// store without hybrid search. So `Rag` retrieval and `store.search` agree,
/// whichever of them fuses. Checked for RRF and weighted fusion, with the
/// default pool and with a pool shallower than the data.
pub async fn hybrid_is_the_fusion_of_its_parts(store: &dyn VectorStore) {
    let caps = store.capabilities();
    if !(caps.hybrid && caps.dense && caps.keyword) {
        return;
    }
    let ns = fresh_namespace("hybrid_parts");
    let d = dims(store);
    let words = ["alpha", "beta", "gamma", "delta", "epsilon"];
    let mut batch = Vec::new();
    for i in 0..30usize {
        // Term frequencies vary, so keyword scores differ between documents.
        let text = format!(
            "{} {} document{i} filler{}",
            words[i % 5],
            vec![words[(i + 1) % 5]; 1 + i % 4].join(" "),
            i % 7
        );
        let mut c = doc_chunks(&format!("p{i:02}"), &[text.as_str()], json!({}), d, 0);
        c[0].vector = random_unit(i as u64 + 1, d);
        batch.extend(c);
    }
    store.upsert(&ns, &batch).await.expect("upsert");
    let query = random_unit(4242, d);
    let text = "alpha beta";
    for fusion in [
        crate::search::Fusion::Rrf { k: 60.0 },
        crate::search::Fusion::Weighted { dense_weight: 0.7 },
    ] {
        for pool in [None, Some(6)] {
            let mut req = SearchRequest::hybrid(query.clone(), text, 4).with_fusion(fusion);
            req.pool = pool;
            let depth = req.fusion_pool();
            let hybrid = store.search(&ns, req).await.expect("hybrid search");
            let dense = store
                .search(&ns, SearchRequest::dense(query.clone(), depth))
                .await
                .expect("dense search");
            let keyword = store
                .search(&ns, SearchRequest::keyword(text, depth))
                .await
                .expect("keyword search");
            let fused = crate::search::fuse(dense, keyword, fusion, 4);
            let what = format!("{fusion:?}, pool {depth}");
            assert_same_ranking(&hybrid, &fused, &what);
        }
    }
    done(store, &ns).await;
}

/// The same chunks with the same scores (within float noise), in the same
/// order up to ties.
fn assert_same_ranking(got: &[crate::ScoredChunk], want: &[crate::ScoredChunk], what: &str) {
    let show = |l: &[crate::ScoredChunk]| -> Vec<(String, f32)> {
        l.iter()
            .map(|h| (h.chunk.document_id.to_string(), h.score))
            .collect()
    };
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {:?} vs {:?}",
        show(got),
        show(want)
    );
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1e-3);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            close(g.score, w.score),
            "{what}: score {i} differs: {:?} vs {:?}",
            show(got),
            show(want)
        );
        let tied = |l: &[crate::ScoredChunk]| {
            (i > 0 && close(l[i - 1].score, l[i].score))
                || (i + 1 < l.len() && close(l[i + 1].score, l[i].score))
        };
        if !tied(got) && !tied(want) {
            assert_eq!(
                g.chunk.id,
                w.chunk.id,
                "{what}: rank {i} differs: {:?} vs {:?}",
                show(got),
                show(want)
            );
        }
    }
}

/// The filter fixture: chunk metadata covering every value type.
pub fn filter_fixture() -> Vec<(&'static str, Value)> {
    vec![
        (
            "f0",
            json!({"team": "ops", "year": 2021, "tags": ["rust", "db"], "draft": false, "score": 0.5}),
        ),
        (
            "f1",
            json!({"team": "dev", "year": 2019, "tags": ["go"], "draft": true}),
        ),
        (
            "f2",
            json!({"team": "ops", "year": 2023, "tags": [], "score": 2}),
        ),
        (
            "f3",
            json!({"team": "ops's \"quoted\" team", "year": 2020.5, "note": null}),
        ),
        (
            "f4",
            json!({"year": "2021", "tags": "rust", "nested": {"a": 1}}),
        ),
        ("f5", json!({"team": "Ünïcödé 東京 🚀", "year": -3})),
        ("f6", json!({})),
        (
            "f7",
            json!({"team": "dev", "tags": ["rust"], "draft": false, "score": 10}),
        ),
    ]
}

/// Filters exercising every operator, nesting, type strictness and missing
/// fields; the expected matches come from [`Filter::matches`].
pub fn filter_cases() -> Vec<Filter> {
    vec![
        Filter::eq("team", "ops"),
        Filter::eq("team", "ops's \"quoted\" team"),
        Filter::eq("team", "Ünïcödé 東京 🚀"),
        Filter::eq("year", 2021),
        Filter::eq("year", "2021"),
        Filter::eq("tags", "rust"),
        Filter::eq("draft", false),
        Filter::eq("missing", "x"),
        Filter::ne("team", "ops"),
        Filter::ne("draft", true),
        Filter::gt("year", 2020),
        Filter::gte("year", 2021),
        Filter::lt("year", 2020.5),
        Filter::lte("year", 2020.5),
        Filter::gt("score", 1),
        Filter::is_in("team", ["dev", "ops"]),
        Filter::is_in("tags", ["go", "db"]),
        Filter::not_in("team", ["ops"]),
        Filter::not_in("tags", ["rust"]),
        Filter::exists("team"),
        Filter::exists("note"),
        Filter::exists("nested"),
        Filter::exists("tags"),
        Filter::eq(Field::DocumentId, "f3"),
        Filter::is_in(Field::DocumentId, ["f1", "f7", "nope"]),
        Filter::ne(Field::Source, "f0.txt"),
        Filter::eq("team", "ops").and(Filter::gte("year", 2021)),
        Filter::eq("team", "dev").or(Filter::lt("year", 0)),
        Filter::not(Filter::eq("team", "ops").or(Filter::exists("note"))),
        Filter::all([
            Filter::any([
                Filter::eq("draft", false),
                Filter::not(Filter::exists("draft")),
            ]),
            Filter::not(Filter::is_in("team", ["dev"])),
            Filter::exists("year"),
        ]),
        Filter::all([]),
        Filter::any([]),
    ]
}

async fn filter_fixture_ns(store: &dyn VectorStore, test: &str) -> (Namespace, Vec<Chunk>) {
    let ns = fresh_namespace(test);
    let d = dims(store);
    let mut chunks = Vec::new();
    for (i, (id, meta)) in filter_fixture().into_iter().enumerate() {
        let text = format!("filter fixture chunk {id} common");
        let c = doc_chunks(id, &[text.as_str()], meta, d, i);
        chunks.push(c[0].chunk.clone());
        store.upsert(&ns, &c).await.expect("upsert fixture");
    }
    (ns, chunks)
}

/// Every filter operator selects exactly what the reference evaluator
/// selects (or the store returns `Unsupported` for operators it does not
/// declare).
pub async fn every_filter_operator(store: &dyn VectorStore) {
    let (ns, chunks) = filter_fixture_ns(store, "filters").await;
    let d = dims(store);
    let caps = store.capabilities();
    for f in filter_cases() {
        let expected: BTreeSet<String> = chunks
            .iter()
            .filter(|c| f.matches(c))
            .map(|c| c.document_id.to_string())
            .collect();
        let res = store
            .search(
                &ns,
                SearchRequest::dense(unit(d, 0, 0.0), 100).with_filter(f.clone()),
            )
            .await;
        if !supports(&caps, &f) {
            assert!(
                matches!(res, Err(Error::Unsupported { .. })),
                "undeclared operator must be Unsupported for {f:?}: {res:?}"
            );
            continue;
        }
        let got: BTreeSet<String> =
            ids(&res.unwrap_or_else(|e| panic!("filter {f:?} failed: {e}")))
                .into_iter()
                .collect();
        assert_eq!(got, expected, "filter {f:?} selected the wrong chunks");
    }
    done(store, &ns).await;
}

fn supports(caps: &Capabilities, f: &Filter) -> bool {
    f.ops()
        .iter()
        .all(|op: &FilterOp| caps.filter_ops.contains(op))
}

/// A filter on a field no chunk has: `eq` matches nothing, `ne` everything.
pub async fn filter_on_missing_field(store: &dyn VectorStore) {
    let (ns, chunks) = filter_fixture_ns(store, "missing_field").await;
    let d = dims(store);
    let caps = store.capabilities();
    for (f, want) in [
        (Filter::eq("no_such_field", "x"), 0),
        (Filter::exists("no_such_field"), 0),
        (Filter::gt("no_such_field", 0), 0),
        (Filter::ne("no_such_field", "x"), chunks.len()),
        (Filter::not_in("no_such_field", ["x"]), chunks.len()),
    ] {
        if !supports(&caps, &f) {
            continue;
        }
        let hits = store
            .search(
                &ns,
                SearchRequest::dense(unit(d, 0, 0.0), 100).with_filter(f.clone()),
            )
            .await
            .unwrap_or_else(|e| {
                panic!("filter on a missing field must not be an error ({f:?}): {e}")
            });
        assert_eq!(hits.len(), want, "filter {f:?} on a missing field");
    }
    done(store, &ns).await;
}

/// Filters apply to keyword search too.
pub async fn filter_with_keyword_search(store: &dyn VectorStore) {
    if !store.capabilities().keyword || !supports(&store.capabilities(), &Filter::eq("team", "ops"))
    {
        return;
    }
    let (ns, chunks) = filter_fixture_ns(store, "kw_filter").await;
    let f = Filter::eq("team", "ops");
    let expected: BTreeSet<String> = chunks
        .iter()
        .filter(|c| f.matches(c))
        .map(|c| c.document_id.to_string())
        .collect();
    let hits = store
        .search(
            &ns,
            SearchRequest::keyword("fixture common", 100).with_filter(f),
        )
        .await
        .expect("filtered keyword search");
    let got: BTreeSet<String> = ids(&hits).into_iter().collect();
    assert_eq!(got, expected, "filtered keyword search");
    done(store, &ns).await;
}

/// A malformed filter is `InvalidInput` and changes nothing.
pub async fn invalid_filter_is_invalid_input(store: &dyn VectorStore) {
    let ns = fresh_namespace("bad_filter");
    let d = dims(store);
    store
        .upsert(&ns, &doc_chunks("a", &["text"], json!({"k": 1}), d, 0))
        .await
        .expect("upsert");
    for f in [Filter::eq("", 1), Filter::eq("k", f64::INFINITY)] {
        let e = store
            .search(
                &ns,
                SearchRequest::dense(unit(d, 0, 0.0), 5).with_filter(f.clone()),
            )
            .await;
        assert!(
            matches!(e, Err(Error::InvalidInput { .. })),
            "{f:?} must be InvalidInput: {e:?}"
        );
    }
    assert_eq!(store.count(&ns).await.expect("count"), 1);
    done(store, &ns).await;
}

/// Namespaces are isolated for search, count, delete and listing.
pub async fn namespaces_never_leak(store: &dyn VectorStore) {
    let a = fresh_namespace("ns_a");
    let b = fresh_namespace("ns_b");
    let d = dims(store);
    store
        .upsert(
            &a,
            &doc_chunks("shared-id", &["secret of tenant a"], json!({}), d, 0),
        )
        .await
        .expect("upsert a");
    store
        .upsert(
            &b,
            &doc_chunks("other", &["tenant b text"], json!({}), d, 1),
        )
        .await
        .expect("upsert b");
    let hits = dense(store, &b, unit(d, 0, 0.0), 10).await;
    assert_eq!(ids(&hits), ["other"], "namespace b sees a's data");
    if let Some(hits) = keyword(store, &b, "secret tenant", 10).await {
        assert!(
            ids(&hits).iter().all(|id| id == "other"),
            "keyword search leaks across namespaces"
        );
    }
    let id = DocumentId::new("shared-id").expect("id");
    assert_eq!(
        store.delete_document(&b, &id).await.expect("delete in b"),
        0,
        "delete in b touched a"
    );
    assert_eq!(store.count(&a).await.expect("count a"), 1);
    assert!(
        store
            .document_hashes(&b, &[id])
            .await
            .expect("hashes")
            .is_empty()
    );
    store
        .delete_namespace(&a)
        .await
        .expect("delete namespace a");
    assert_eq!(store.count(&a).await.expect("count a"), 0);
    assert_eq!(
        store.count(&b).await.expect("count b"),
        1,
        "deleting a emptied b"
    );
    done(store, &b).await;
}

/// `top_k` larger than the data returns everything.
pub async fn top_k_larger_than_data(store: &dyn VectorStore) {
    let ns = fresh_namespace("topk");
    let d = dims(store);
    store
        .upsert(
            &ns,
            &doc_chunks("a", &["one", "two", "three"], json!({}), d, 0),
        )
        .await
        .expect("upsert");
    assert_eq!(dense(store, &ns, unit(d, 0, 0.0), 1000).await.len(), 3);
    assert_eq!(dense(store, &ns, unit(d, 0, 0.0), 2).await.len(), 2);
    done(store, &ns).await;
}

/// `top_k` of 0 or above the maximum is `InvalidInput`.
pub async fn invalid_top_k(store: &dyn VectorStore) {
    let ns = fresh_namespace("bad_topk");
    let d = dims(store);
    for k in [0, crate::search::MAX_TOP_K + 1] {
        let e = store
            .search(&ns, SearchRequest::dense(unit(d, 0, 0.0), k))
            .await;
        assert!(
            matches!(e, Err(Error::InvalidInput { .. })),
            "top_k {k}: {e:?}"
        );
    }
    done(store, &ns).await;
}

/// Unicode text and metadata round-trip and are searchable.
pub async fn unicode_text(store: &dyn VectorStore) {
    let ns = fresh_namespace("unicode");
    let d = dims(store);
    let parts = [
        "Café crème brûlée über naïve",
        "東京都の天気は晴れです",
        "emoji 🚀🔥 rocket launch",
    ];
    let chunks = doc_chunks(
        "ü-doc",
        &parts,
        json!({"城市": "東京", "emoji": "🚀"}),
        d,
        0,
    );
    let first = chunks[0].chunk.id.clone();
    store.upsert(&ns, &chunks).await.expect("upsert unicode");
    let got = store.get_chunks(&ns, &[first]).await.expect("get");
    assert_eq!(got[0].text, parts[0], "unicode text round-trips");
    assert_eq!(got[0].metadata["城市"], json!("東京"));
    assert_eq!(got[0].document_id.as_str(), "ü-doc");
    if let Some(hits) = keyword(store, &ns, "rocket", 3).await {
        assert_eq!(hits.first().map(|h| h.chunk.text.as_str()), Some(parts[2]));
    }
    if supports(&store.capabilities(), &Filter::eq("城市", "東京")) {
        let hits = store
            .search(
                &ns,
                SearchRequest::dense(unit(d, 0, 0.0), 10).with_filter(Filter::eq("城市", "東京")),
            )
            .await
            .expect("unicode filter");
        assert_eq!(hits.len(), 3);
    }
    done(store, &ns).await;
}

/// Vectors of the wrong dimension are `InvalidInput`; stored data survives.
pub async fn dimension_mismatch_is_invalid_input(store: &dyn VectorStore) {
    let ns = fresh_namespace("dims");
    let d = dims(store);
    store
        .upsert(&ns, &doc_chunks("a", &["alpha"], json!({}), d, 0))
        .await
        .expect("upsert");
    let wrong = doc_chunks("b", &["beta"], json!({}), d + 1, 0);
    let e = store.upsert(&ns, &wrong).await;
    assert!(
        matches!(e, Err(Error::InvalidInput { .. })),
        "upsert with wrong dimension: {e:?}"
    );
    let e = store
        .search(&ns, SearchRequest::dense(unit(d + 1, 0, 0.0), 3))
        .await;
    assert!(
        matches!(e, Err(Error::InvalidInput { .. })),
        "search with wrong dimension: {e:?}"
    );
    assert_eq!(
        store.count(&ns).await.expect("count"),
        1,
        "data intact after bad input"
    );
    done(store, &ns).await;
}

/// A batch every store refuses whole ([`crate::search::validate_upsert`]) —
/// one bad vector, a chunk id twice, a reversed byte range, an empty
/// metadata key — is `InvalidInput`, and the previous version of the
/// document stays searchable.
pub async fn bad_batch_changes_nothing(store: &dyn VectorStore) {
    let ns = fresh_namespace("bad_batch");
    let d = dims(store);
    store
        .upsert(
            &ns,
            &doc_chunks("doc", &["original text"], json!({"v": 1}), d, 0),
        )
        .await
        .expect("upsert");
    let new = || doc_chunks("doc", &["new text", "more new"], json!({"v": 2}), d, 0);
    let mut nan = new();
    nan[1].vector[0] = f32::NAN;
    let mut twice = new();
    twice[1].chunk.id = twice[0].chunk.id.clone();
    let mut reversed = new();
    let (start, end) = (5, 2);
    reversed[0].chunk.byte_range = start..end;
    let bad_key = doc_chunks("doc", &["new text"], json!({"": 1}), d, 0);
    for (what, batch) in [
        ("a NaN vector", nan),
        ("a chunk id twice", twice),
        ("a reversed byte range", reversed),
        ("an empty metadata key", bad_key),
    ] {
        let e = store.upsert(&ns, &batch).await;
        assert!(
            matches!(e, Err(Error::InvalidInput { .. })),
            "{what}: {e:?}"
        );
    }
    let hits = dense(store, &ns, unit(d, 0, 0.0), 10).await;
    assert_eq!(hits.len(), 1, "old version intact");
    assert_eq!(hits[0].chunk.text, "original text");
    done(store, &ns).await;
}

/// Metadata keys and values, and keyword queries, that would break a store
/// which builds SQL or filter syntax by concatenation: each is stored and
/// read back byte for byte, each filter selects exactly what the reference
/// evaluator ([`Filter::matches`]) selects, and the store stays whole.
pub async fn hostile_metadata_and_queries(store: &dyn VectorStore) {
    let ns = fresh_namespace("hostile");
    let d = dims(store);
    let long = "λ'\"; DROP TABLE x; --\\".repeat(500); // about 11 KB
    let hostile = [
        "it's",
        "\"double\"",
        "'; DROP TABLE rag_chunks; --",
        "' OR 1=1 --",
        "`backtick` ``double``",
        "line\nbreak\r\n",
        "\\backslash\\",
        "$1::text) OR (TRUE",
        "?| ?& @> #>> '{}'",
        "東京 🚀 e\u{301}",
        long.as_str(),
    ];
    // Keys are at most 256 bytes and without control characters: the long
    // one is a value only.
    let key_of = |h: &str| -> String { h.chars().filter(|c| !c.is_control()).take(60).collect() };
    let mut chunks = Vec::new();
    for (i, h) in hostile.iter().enumerate() {
        let meta = json!({ key_of(h): h, "k": h, "list": [h, 1] });
        let text = format!("hostile {i} {h}");
        let c = doc_chunks(&format!("h{i}"), &[text.as_str()], meta, d, i);
        chunks.push(c[0].chunk.clone());
        store
            .upsert(&ns, &c)
            .await
            .unwrap_or_else(|e| panic!("upsert hostile metadata {i}: {e}"));
    }
    assert_eq!(store.count(&ns).await.expect("count"), hostile.len());
    let selected = |f: Filter| {
        let ns = ns.clone();
        async move {
            store
                .search(
                    &ns,
                    SearchRequest::dense(unit(d, 0, 0.0), 100).with_filter(f.clone()),
                )
                .await
                .unwrap_or_else(|e| panic!("filter {f:?}: {e}"))
                .into_iter()
                .map(|h| h.chunk.document_id.to_string())
                .collect::<BTreeSet<String>>()
        }
    };
    let expected = |f: &Filter| -> BTreeSet<String> {
        chunks
            .iter()
            .filter(|c| f.matches(c))
            .map(|c| c.document_id.to_string())
            .collect()
    };
    let ops = store.capabilities().filter_ops;
    for (i, h) in hostile.iter().enumerate() {
        let key = key_of(h);
        for f in [
            Filter::eq(key.as_str(), *h),
            Filter::eq("k", *h),
            Filter::eq("list", *h),
            Filter::is_in("k", [*h, "other"]),
            Filter::ne("k", *h),
            Filter::exists(key.as_str()),
            Filter::gt(key.as_str(), 0),
            Filter::eq(Field::Source, format!("h{i}.txt")),
        ] {
            if f.ops().iter().any(|op| !ops.contains(op)) {
                continue;
            }
            let want = expected(&f);
            assert_eq!(selected(f.clone()).await, want, "hostile filter {f:?}");
        }
        assert_eq!(
            selected(Filter::eq("k", *h)).await,
            BTreeSet::from([format!("h{i}")]),
            "exactly the hostile document {i}"
        );
    }
    // Round trip, byte for byte.
    let back = store
        .get_chunks(&ns, &[chunks[10].id.clone()])
        .await
        .expect("get");
    assert_eq!(back[0].metadata["k"], json!(long));
    assert!(back[0].text.ends_with(long.as_str()));
    // Keyword queries with hostile text are data, not syntax.
    if store.capabilities().keyword {
        for q in &hostile[..10] {
            store
                .search(&ns, SearchRequest::keyword(*q, 5))
                .await
                .unwrap_or_else(|e| panic!("keyword query {q:?}: {e}"));
        }
    }
    // Still there and whole.
    assert_eq!(store.count(&ns).await.expect("count"), hostile.len());
    done(store, &ns).await;
}

/// Concurrent upserts of different documents all land.
pub async fn concurrent_upserts_all_land(store: &dyn VectorStore) {
    let ns = fresh_namespace("concurrent");
    let d = dims(store);
    let batches: Vec<Vec<EmbeddedChunk>> = (0..20)
        .map(|i| {
            doc_chunks(
                &format!("doc{i:02}"),
                &["first part", "second part"],
                json!({"i": i}),
                d,
                i,
            )
        })
        .collect();
    let results = join_all(batches.iter().map(|b| store.upsert(&ns, b))).await;
    for r in results {
        r.expect("concurrent upsert");
    }
    assert_eq!(
        store.count(&ns).await.expect("count"),
        40,
        "every concurrent upsert landed"
    );
    let listed = store.list_documents(&ns, None, 100).await.expect("list");
    assert_eq!(listed.len(), 20);
    done(store, &ns).await;
}

/// `document_hashes` answers only stored ids; `list_documents` pages by id.
pub async fn document_hashes_and_listing(store: &dyn VectorStore) {
    let ns = fresh_namespace("listing");
    let d = dims(store);
    let mut hashes = Vec::new();
    for i in 0..5 {
        let c = doc_chunks(&format!("doc-{i}"), &["x", "y"], json!({}), d, i);
        hashes.push(c[0].chunk.document_hash.clone());
        store.upsert(&ns, &c).await.expect("upsert");
    }
    let asked: Vec<DocumentId> = ["doc-1", "doc-3", "doc-9"]
        .iter()
        .map(|s| DocumentId::new(*s).expect("id"))
        .collect();
    let mut got = store.document_hashes(&ns, &asked).await.expect("hashes");
    got.sort();
    assert_eq!(got.len(), 2, "only stored documents: {got:?}");
    assert_eq!(got[0], (asked[0].clone(), hashes[1].clone()));
    assert_eq!(got[1], (asked[1].clone(), hashes[3].clone()));

    let page1 = store.list_documents(&ns, None, 2).await.expect("page 1");
    let page2 = store
        .list_documents(&ns, Some(&page1[1].id), 2)
        .await
        .expect("page 2");
    let page3 = store
        .list_documents(&ns, Some(&page2[1].id), 2)
        .await
        .expect("page 3");
    let all: Vec<String> = page1
        .iter()
        .chain(&page2)
        .chain(&page3)
        .map(|p| p.id.to_string())
        .collect();
    assert_eq!(
        all,
        ["doc-0", "doc-1", "doc-2", "doc-3", "doc-4"],
        "pages in id order"
    );
    assert_eq!(page1[0].chunks, 2);
    assert_eq!(page1[0].source, "doc-0.txt");
    done(store, &ns).await;
}

/// `get_chunks` returns existing chunks in the order asked.
pub async fn get_chunks_in_order(store: &dyn VectorStore) {
    let ns = fresh_namespace("get");
    let d = dims(store);
    let chunks = doc_chunks("doc", &["zero", "one", "two"], json!({}), d, 0);
    let ids: Vec<ChunkId> = chunks.iter().map(|c| c.chunk.id.clone()).collect();
    store.upsert(&ns, &chunks).await.expect("upsert");
    let ask = vec![
        ids[2].clone(),
        ChunkId::from_string("0".repeat(32)),
        ids[0].clone(),
    ];
    let got = store.get_chunks(&ns, &ask).await.expect("get");
    let texts: Vec<&str> = got.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(
        texts,
        ["two", "zero"],
        "existing chunks, in the order asked"
    );
    assert_eq!(got[0].byte_range, 9..12, "byte range round-trips");
    assert_eq!(got[0].position, 2);
    let _ = SearchMode::Dense;
    done(store, &ns).await;
}

/// `scan` reads back exactly what was upserted — ids, texts, byte ranges,
/// token counts, metadata, document hashes and vectors (within f32
/// rounding; directions for a cosine store, which may normalise) — whole
/// documents in id order, chunks in position order, page by page, without
/// other namespaces' or deleted chunks.
pub async fn scan_returns_what_was_upserted(store: &dyn VectorStore) {
    let ns = fresh_namespace("scan");
    let other = fresh_namespace("scan_other");
    let d = dims(store);
    assert!(
        store
            .scan(&ns, None, 10)
            .await
            .expect("scan empty")
            .is_empty(),
        "scan of an empty namespace is empty"
    );
    let docs: [(&str, &[&str], Value); 3] = [
        ("gamma", &["six", "seven"], json!({})),
        (
            "alpha",
            &["one", "two", "three"],
            json!({"team": "ops", "n": 1.5}),
        ),
        (
            "beta",
            &["ünïcode ✓", "five"],
            json!({"tags": ["a", "b"], "nested": {"x": null}}),
        ),
    ];
    let mut upserted: Vec<EmbeddedChunk> = Vec::new();
    for (i, (id, parts, meta)) in docs.into_iter().enumerate() {
        let mut chunks = doc_chunks(id, parts, meta, d, 0);
        for (j, c) in chunks.iter_mut().enumerate() {
            c.vector = random_unit((i * 10 + j) as u64 + 1, d);
            c.chunk.token_count = (j % 2 == 0).then_some(j as u32 + 1);
        }
        // Stored out of position order: the scan must order them.
        chunks.reverse();
        store.upsert(&ns, &chunks).await.expect("upsert");
        upserted.extend(chunks);
    }
    store
        .upsert(&other, &doc_chunks("elsewhere", &["x"], json!({}), d, 1))
        .await
        .expect("upsert other namespace");

    let mut got: Vec<EmbeddedChunk> = Vec::new();
    let mut pages = Vec::new();
    let mut after: Option<DocumentId> = None;
    loop {
        let page = store.scan(&ns, after.as_ref(), 2).await.expect("scan page");
        let Some(last) = page.last() else { break };
        after = Some(last.chunk.document_id.clone());
        pages.push(
            page.iter()
                .map(|c| format!("{}/{}", c.chunk.document_id, c.chunk.position))
                .collect::<Vec<_>>()
                .join(" "),
        );
        got.extend(page);
    }
    assert_eq!(
        pages,
        ["alpha/0 alpha/1 alpha/2 beta/0 beta/1", "gamma/0 gamma/1"],
        "pages of 2 whole documents in id order, chunks in position order"
    );
    let cosine = store.capabilities().distance == crate::Distance::Cosine;
    let direction = |v: &[f32]| -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if cosine {
            v.iter().map(|x| x / n).collect()
        } else {
            v.to_vec()
        }
    };
    for c in &got {
        let want = upserted
            .iter()
            .find(|u| u.chunk.id == c.chunk.id)
            .expect("scanned chunk was upserted");
        assert_eq!(c.chunk, want.chunk, "the chunk reads back unchanged");
        assert_eq!(c.vector.len(), d, "vector length");
        let (a, b) = (direction(&c.vector), direction(&want.vector));
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        // 1e-3: a half-precision store (pgvector `halfvec`) keeps 11 bits.
        assert!(worst <= 1e-3, "vector of {} differs by {worst}", c.chunk.id);
    }

    let beta = DocumentId::new("beta").expect("id");
    assert_eq!(store.delete_document(&ns, &beta).await.expect("delete"), 2);
    let rest = store.scan(&ns, None, 100).await.expect("scan after delete");
    assert_eq!(rest.len(), 5, "deleted chunks are not scanned");
    assert!(rest.iter().all(|c| c.chunk.document_id != beta));
    let elsewhere = store.scan(&other, None, 100).await.expect("scan other");
    assert_eq!(elsewhere.len(), 1, "namespaces are scanned apart");
    done(store, &ns).await;
    done(store, &other).await;
}
