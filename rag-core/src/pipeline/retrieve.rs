//! Retrieval: one hybrid search when the store has one, else dense and
//! keyword searches run concurrently and fused here with the same pool and
//! fusion ([`SearchRequest::fusion_pool`], [`fuse`]), so the ranking is the
//! same either way; a recorded fallback when the store lacks a mode; then
//! reranking.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::search::{MAX_TOP_K, ScoredChunk, SearchMode, SearchRequest, fuse};
use crate::types::{ChunkId, Namespace};
use std::collections::HashMap;

use super::Inner;
use super::answer::Trace;
use super::request::Ask;

/// What retrieval did, for the trace.
#[derive(Debug, Default)]
pub(crate) struct Retrieved {
    pub(crate) candidates: Vec<ScoredChunk>,
    pub(crate) mode: SearchMode,
    pub(crate) fallback: Option<String>,
    pub(crate) dense_candidates: usize,
    pub(crate) keyword_candidates: usize,
    pub(crate) embed: Duration,
    pub(crate) retrieve: Duration,
}

impl Retrieved {
    /// Writes retrieval's part of the trace.
    pub(crate) fn write_trace(&self, trace: &mut Trace) {
        trace.mode_used = self.mode;
        trace.fallback.clone_from(&self.fallback);
        trace.dense_candidates = self.dense_candidates;
        trace.keyword_candidates = self.keyword_candidates;
        trace.fused_candidates = self.candidates.len();
        trace.timings.embed = self.embed;
        trace.timings.retrieve = self.retrieve;
    }
}

/// The mode actually used for `requested` on a store with these
/// capabilities, and why it differs.
fn plan(
    requested: SearchMode,
    dense: bool,
    keyword: bool,
    backend: &str,
) -> Result<(SearchMode, Option<String>)> {
    use SearchMode::{Dense, Hybrid, Keyword};
    Ok(match (requested, dense, keyword) {
        (Hybrid, true, true) | (Dense, true, _) | (Keyword, _, true) => (requested, None),
        (Hybrid | Keyword, true, false) => (
            Dense,
            Some(format!(
                "store {backend} has no keyword search: {requested:?} fell back to dense"
            )),
        ),
        (Hybrid | Dense, false, true) => (
            Keyword,
            Some(format!(
                "store {backend} has no dense search: {requested:?} fell back to keyword"
            )),
        ),
        (_, false, false) => {
            return Err(Error::unsupported(backend, "dense and keyword search"));
        }
    })
}

impl Inner {
    /// Retrieves the fused candidates for `query`.
    pub(crate) async fn retrieve(
        &self,
        ns: &Namespace,
        query: &str,
        ask: &Ask,
    ) -> Result<Retrieved> {
        let caps = self.store.capabilities();
        let (mode, fallback) = plan(ask.mode, caps.dense, caps.keyword, &caps.backend)?;
        let top_k = ask.top_k.min(MAX_TOP_K);
        let started = Instant::now();
        let request = |mut req: SearchRequest| {
            req.filter.clone_from(&ask.filter);
            req.fusion = ask.fusion;
            req.pool = ask.hybrid_pool;
            req
        };

        if mode == SearchMode::Hybrid && caps.hybrid {
            // One request: the store fuses (natively, or in one transaction).
            let t = Instant::now();
            let vector = self.embedder.embed_query(query).await?;
            let embed = t.elapsed();
            let candidates = self
                .store
                .search(ns, request(SearchRequest::hybrid(vector, query, top_k)))
                .await?;
            return Ok(Retrieved {
                dense_candidates: candidates
                    .iter()
                    .filter(|c| c.dense_score.is_some())
                    .count(),
                keyword_candidates: candidates
                    .iter()
                    .filter(|c| c.keyword_score.is_some())
                    .count(),
                candidates,
                mode,
                fallback,
                embed,
                retrieve: started.elapsed().saturating_sub(embed),
            });
        }

        // The pool each side contributes when fusing here: the stores' rule.
        let depth = match mode {
            SearchMode::Hybrid => crate::search::fusion_pool(top_k, ask.hybrid_pool),
            _ => top_k,
        };
        let dense = async {
            if mode == SearchMode::Keyword {
                return Ok((Vec::new(), Duration::ZERO));
            }
            let t = Instant::now();
            let vector = self.embedder.embed_query(query).await?;
            let embed = t.elapsed();
            let req = request(SearchRequest::dense(vector, depth));
            Ok::<_, Error>((self.store.search(ns, req).await?, embed))
        };
        let keyword = async {
            if mode == SearchMode::Dense {
                return Ok(Vec::new());
            }
            self.store
                .search(ns, request(SearchRequest::keyword(query, depth)))
                .await
        };
        let (dense, keyword) = futures::join!(dense, keyword);
        let (dense, embed) = dense?;
        let keyword = keyword?;
        let (dense_candidates, keyword_candidates) = (dense.len(), keyword.len());
        let candidates = match mode {
            SearchMode::Dense => dense,
            SearchMode::Keyword => keyword,
            SearchMode::Hybrid => fuse(dense, keyword, ask.fusion, top_k),
        };
        Ok(Retrieved {
            candidates,
            mode,
            fallback,
            dense_candidates,
            keyword_candidates,
            embed,
            retrieve: started.elapsed().saturating_sub(embed),
        })
    }

    /// Reranks (when a reranker is set and the ask allows it) and keeps the
    /// best `rerank_top_n`.
    pub(crate) async fn rerank(
        &self,
        query: &str,
        mut candidates: Vec<ScoredChunk>,
        ask: &Ask,
    ) -> Result<(Vec<ScoredChunk>, bool)> {
        let n = ask.rerank_top_n;
        match (&self.reranker, ask.rerank) {
            (Some(r), true) if !candidates.is_empty() && ask.rerank_weight >= 1.0 => {
                let mut out = r.rerank(query, candidates, n).await?;
                out.truncate(n);
                Ok((out, true))
            }
            (Some(r), true) if !candidates.is_empty() => {
                let retrieval: HashMap<ChunkId, f32> = candidates
                    .iter()
                    .map(|c| (c.chunk.id.clone(), c.score))
                    .collect();
                let all = candidates.len();
                let mut out = r.rerank(query, candidates, all).await?;
                blend(&mut out, &retrieval, ask.rerank_weight);
                out.truncate(n);
                Ok((out, true))
            }
            _ => {
                candidates.truncate(n);
                Ok((candidates, false))
            }
        }
    }
}

/// Orders reranked candidates by `w · rerank + (1 − w) · retrieval`, both
/// min-max normalised over these candidates (a constant list counts as 0).
/// The blended value becomes `score`; `rerank_score` stays the reranker's.
fn blend(candidates: &mut [ScoredChunk], retrieval: &HashMap<ChunkId, f32>, w: f32) {
    fn unit(values: &[f32]) -> Vec<f32> {
        let (lo, hi) = values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(*v), hi.max(*v))
            });
        let span = hi - lo;
        values
            .iter()
            .map(|v| if span > 0.0 { (v - lo) / span } else { 0.0 })
            .collect()
    }
    let rerank: Vec<f32> = candidates
        .iter()
        .map(|c| c.rerank_score.unwrap_or(c.score))
        .collect();
    let first: Vec<f32> = candidates
        .iter()
        .map(|c| retrieval.get(&c.chunk.id).copied().unwrap_or(f32::MIN))
        .collect();
    let (rerank, first) = (unit(&rerank), unit(&first));
    for (i, c) in candidates.iter_mut().enumerate() {
        c.score = w * rerank[i] + (1.0 - w) * first[i];
    }
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blend_interpolates_normalised_scores() {
        use crate::types::{Chunk, Document};
        let chunk = |id: &str| {
            let mut c = Chunk::from_document(&Document::new(id, "text"), 0, 0..4);
            c.id = ChunkId::from_string(id.to_owned());
            c
        };
        // Retrieval: a 3, b 2, c 1. Reranker: c 10, b 0, a -10.
        let mut list: Vec<ScoredChunk> = [("c", 10.0), ("b", 0.0), ("a", -10.0)]
            .iter()
            .map(|(id, s)| {
                let mut sc = ScoredChunk::dense(chunk(id), *s);
                sc.rerank_score = Some(*s);
                sc
            })
            .collect();
        let retrieval: HashMap<ChunkId, f32> = [("a", 3.0), ("b", 2.0), ("c", 1.0)]
            .iter()
            .map(|(id, s)| (ChunkId::from_string((*id).to_owned()), *s))
            .collect();
        // w = 0.5: a 0.5, b 0.5, c 0.5 — ties; w = 0.25 favours retrieval.
        blend(&mut list, &retrieval, 0.25);
        let order: Vec<&str> = list.iter().map(|c| c.chunk.id.as_str()).collect();
        assert_eq!(order, ["a", "b", "c"]);
        assert!((list[0].score - 0.75).abs() < 1e-6);
        assert_eq!(list[2].rerank_score, Some(10.0));
        blend(&mut list, &retrieval, 0.9);
        let order: Vec<&str> = list.iter().map(|c| c.chunk.id.as_str()).collect();
        assert_eq!(order, ["c", "b", "a"]);
    }

    #[test]
    fn plan_falls_back_and_says_so() {
        use SearchMode::{Dense, Hybrid, Keyword};
        assert_eq!(plan(Hybrid, true, true, "m").unwrap(), (Hybrid, None));
        let (m, note) = plan(Hybrid, true, false, "m").unwrap();
        assert_eq!(m, Dense);
        assert!(note.unwrap().contains("no keyword search"));
        assert_eq!(plan(Keyword, true, false, "m").unwrap().0, Dense);
        assert_eq!(plan(Dense, false, true, "m").unwrap().0, Keyword);
        assert!(matches!(
            plan(Dense, false, false, "m"),
            Err(Error::Unsupported { .. })
        ));
    }
}
