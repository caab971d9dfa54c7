//! Answer-level evaluation: question answering over a corpus, scored against
//! gold answers.
//!
//! A dataset is BEIR-shaped ([`QaDataset`]): `corpus.jsonl`,
//! `queries.jsonl` whose lines carry `"answers": [..]` (gold answer strings,
//! any one is right) and optionally `"facts": [..]` (strings a correct answer
//! must all contain; `a|b` accepts either) and `"paragraph"` (the document the
//! question was written on), and `qrels/<split>.tsv` naming the documents that
//! answer each question. [`evaluate_answers`] runs the whole ask pipeline per
//! question and [`AnswerMetrics`] summarises:
//!
//! * **contained**: a gold answer occurs in the answer, both normalised as
//!   the official SQuAD v1.1 evaluation does ([`normalize_answer`]: lower
//!   case, no ASCII punctuation, no articles, single spaces), as a run of
//!   whole tokens;
//! * **exact match** and **token F1**, the SQuAD v1.1 definitions, maximum
//!   over the gold answers ([`exact_match`], [`token_f1`]);
//! * **facts**: every required fact contained ([`has_facts`]);
//! * **gold in sources / gold cited**: a relevant document among the
//!   sources the model was given / among those it cited;
//! * **cites nothing**: an answer (not an abstention) without a citation;
//! * **abstained**: the answer says the sources do not answer
//!   ([`is_abstention`]);
//! * **groundedness**: the share of the answer's content words (the keyword
//!   analyzer's terms: stemmed, no stop words) found in the sources it cites
//!   ([`groundedness`]); an answer citing nothing scores 0;
//! * the median answer length in words, latency p50/p95 end to end and split
//!   into retrieval (everything before generation) and generation, and
//!   generated tokens per second.
//!
//! Citation markers (`[1]`) are removed from an answer before it is scored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{BeirDoc, Qrels, jsonl, read_qrels};
use crate::error::{Error, Result};
use crate::pipeline::{Answer, Ask, Rag};
use crate::search::{Fusion, SearchMode};
use crate::text::Analyzer;
use crate::types::{Document, DocumentId, Namespace};

/// A question with its gold answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QaQuery {
    /// Its id (`_id`).
    #[serde(rename = "_id")]
    pub id: String,
    /// The question.
    pub text: String,
    /// Gold answers: any one is right.
    #[serde(default)]
    pub answers: Vec<String>,
    /// Facts a correct answer must all contain; `a|b` accepts either.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<String>,
    /// The document the question was written on, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paragraph: Option<String>,
}

/// A question-answering dataset: a BEIR corpus, questions with gold answers,
/// and the documents that answer each question.
#[derive(Clone, Debug)]
pub struct QaDataset {
    /// The directory it was read from.
    pub dir: PathBuf,
    /// The split.
    pub split: String,
    /// The corpus; empty when the directory has no `corpus.jsonl` (the
    /// caller ingests the documents, for example a directory of files).
    pub corpus: Vec<BeirDoc>,
    /// The judged questions of the split, in file order.
    pub queries: Vec<QaQuery>,
    /// Relevant documents per question (document ids or sources).
    pub qrels: Qrels,
}

impl QaDataset {
    /// Reads `dir/queries.jsonl`, `dir/qrels/<split>.tsv` and, when present,
    /// `dir/corpus.jsonl`. Keeps the questions judged in the split.
    /// `InvalidInput` naming file and line for anything malformed, for a
    /// judged question missing from `queries.jsonl`, and for a question with
    /// neither answers nor facts.
    pub fn load(dir: impl AsRef<Path>, split: &str) -> Result<Self> {
        let dir = dir.as_ref();
        let corpus_path = dir.join("corpus.jsonl");
        let corpus = if corpus_path.exists() {
            jsonl(&corpus_path)?
        } else {
            Vec::new()
        };
        let all: Vec<QaQuery> = jsonl(&dir.join("queries.jsonl"))?;
        let qrels_path = dir.join("qrels").join(format!("{split}.tsv"));
        let qrels = read_qrels(&qrels_path)?;
        let known: HashSet<&str> = all.iter().map(|q| q.id.as_str()).collect();
        if let Some(q) = qrels.keys().find(|q| !known.contains(q.as_str())) {
            return Err(Error::invalid_input(format!(
                "{}: query {q:?} has judgements but is not in queries.jsonl",
                qrels_path.display()
            )));
        }
        if let Some(q) = all
            .iter()
            .find(|q| q.answers.is_empty() && q.facts.is_empty())
        {
            return Err(Error::invalid_input(format!(
                "{}: query {:?} has neither \"answers\" nor \"facts\"",
                dir.join("queries.jsonl").display(),
                q.id
            )));
        }
        let queries = all
            .into_iter()
            .filter(|q| qrels.contains_key(&q.id))
            .collect();
        Ok(Self {
            dir: dir.to_owned(),
            split: split.to_owned(),
            corpus,
            queries,
            qrels,
        })
    }

    /// A fixed sample of `n` questions (all when there are fewer), chosen by
    /// seed: the questions ordered by SHA-256 of `"{seed}:{id}"`, the first
    /// `n` kept, in that order. The same dataset, `n` and seed give the same
    /// questions on every machine and in every version.
    pub fn sample(&self, n: usize, seed: u64) -> Self {
        let key = |id: &str| -> [u8; 32] { Sha256::digest(format!("{seed}:{id}")).into() };
        let mut keyed: Vec<([u8; 32], &QaQuery)> =
            self.queries.iter().map(|q| (key(&q.id), q)).collect();
        keyed.sort_by_key(|k| k.0);
        keyed.truncate(n);
        let queries: Vec<QaQuery> = keyed.into_iter().map(|(_, q)| q.clone()).collect();
        let ids: HashSet<&str> = queries.iter().map(|q| q.id.as_str()).collect();
        let qrels = self
            .qrels
            .iter()
            .filter(|(q, _)| ids.contains(q.as_str()))
            .map(|(q, j)| (q.clone(), j.clone()))
            .collect();
        Self {
            dir: self.dir.clone(),
            split: self.split.clone(),
            corpus: self.corpus.clone(),
            queries,
            qrels,
        }
    }

    /// The corpus as documents, as [`BeirDataset::documents`](super::BeirDataset::documents)
    /// makes them.
    pub fn documents(&self) -> Result<Vec<Document>> {
        super::corpus_documents(&self.corpus)
    }

    /// The documents that answer a question: its judged documents (grade
    /// above 0) and its `paragraph`.
    pub fn gold(&self, query: &QaQuery) -> HashSet<String> {
        let mut gold: HashSet<String> = self
            .qrels
            .get(&query.id)
            .into_iter()
            .flatten()
            .filter(|(_, g)| **g > 0)
            .map(|(d, _)| d.clone())
            .collect();
        gold.extend(query.paragraph.clone());
        gold
    }
}

/// Normalises an answer as the official SQuAD v1.1 evaluation script does:
/// lower case, ASCII punctuation removed, the words `a`, `an` and `the`
/// removed, whitespace collapsed to single spaces.
///
/// ```
/// use rag_core::eval::answers::normalize_answer;
/// assert_eq!(normalize_answer("The  Denver Broncos!"), "denver broncos");
/// ```
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    // Python's `\b(a|an|the)\b` on the unpunctuated text: a maximal run of
    // word characters that is exactly an article becomes a space.
    let mut out = String::with_capacity(no_punct.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if matches!(word.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in no_punct.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn tokens(s: &str) -> Vec<String> {
    normalize_answer(s)
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// SQuAD v1.1 exact match: the normalised prediction equals a normalised
/// gold answer.
pub fn exact_match(prediction: &str, golds: &[String]) -> bool {
    let p = normalize_answer(prediction);
    golds.iter().any(|g| normalize_answer(g) == p)
}

/// SQuAD v1.1 token F1 of the normalised prediction against the best gold
/// answer (0 when there are none).
pub fn token_f1(prediction: &str, golds: &[String]) -> f64 {
    let p = tokens(prediction);
    golds
        .iter()
        .map(|g| {
            let g = tokens(g);
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for t in &g {
                *counts.entry(t).or_default() += 1;
            }
            let mut same = 0usize;
            for t in &p {
                if let Some(c) = counts.get_mut(t.as_str())
                    && *c > 0
                {
                    *c -= 1;
                    same += 1;
                }
            }
            if same == 0 {
                return 0.0;
            }
            let precision = same as f64 / p.len() as f64;
            let recall = same as f64 / g.len() as f64;
            2.0 * precision * recall / (precision + recall)
        })
        .fold(0.0, f64::max)
}

/// Whether the normalised tokens of `needle` occur as a contiguous run in
/// those of `haystack` (an empty needle never does).
fn contains_tokens(haystack: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether a gold answer occurs in the prediction, both normalised, as a
/// run of whole tokens.
pub fn contains_answer(prediction: &str, golds: &[String]) -> bool {
    let p = tokens(prediction);
    golds.iter().any(|g| contains_tokens(&p, &tokens(g)))
}

/// Whether the prediction contains every fact (`a|b`: either), each as
/// [`contains_answer`] does. True for no facts.
pub fn has_facts(prediction: &str, facts: &[String]) -> bool {
    let p = tokens(prediction);
    facts.iter().all(|f| {
        f.split('|')
            .any(|alt| contains_tokens(&p, &tokens(alt.trim())))
    })
}

/// The text without citation markers (`[1]`, `[2][3]`, `[1, 2]`).
pub fn strip_citation_markers(text: &str) -> String {
    static MARKER: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\s*\[\s*\d+(?:\s*,\s*\d+)*\s*\]").expect("a valid regex")
    });
    MARKER.replace_all(text, "").trim().to_owned()
}

/// Whether an answer declines to answer: it says it does not know, or that
/// the sources do not answer (the pipeline's and the extractive answerer's
/// wordings, and the usual ones of instruction-tuned models).
pub fn is_abstention(text: &str) -> bool {
    let t = normalize_answer(&strip_citation_markers(text));
    if t.is_empty() {
        return true;
    }
    const PHRASES: [&str; 10] = [
        "i do not know",
        "i dont know",
        "do not contain answer",
        "do not contain information",
        "do not appear to answer",
        "no sources were found",
        "do not provide",
        "not enough information",
        "cannot answer",
        "unable to answer",
    ];
    PHRASES.iter().any(|p| t.contains(p))
}

/// The share of the answer's content words (the keyword analyzer's terms:
/// lower case, stemmed, stop words removed; citation markers ignored) that
/// occur in `cited`. `None` when the answer has no content words.
pub fn groundedness<'a>(answer: &str, cited: impl IntoIterator<Item = &'a str>) -> Option<f64> {
    let analyzer = Analyzer::default();
    let words = analyzer.terms(&strip_citation_markers(answer));
    if words.is_empty() {
        return None;
    }
    let mut known = HashSet::new();
    for text in cited {
        analyzer.for_each_term(text, |t| {
            known.insert(t.to_owned());
        });
    }
    let found = words.iter().filter(|w| known.contains(w.as_str())).count();
    Some(found as f64 / words.len() as f64)
}

/// How [`evaluate_answers`] runs.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AnswerOptions {
    /// The namespace the corpus is ingested into and searched; `eval`.
    pub namespace: Namespace,
    /// Sources per question; `None`: the pipeline's default.
    pub top_k: Option<usize>,
    /// Dense, keyword or hybrid; hybrid.
    pub mode: SearchMode,
    /// How hybrid lists are fused; the default.
    pub fusion: Fusion,
    /// The answer's token budget; `None`: the pipeline's default.
    pub answer_tokens: Option<u32>,
    /// The sources' token budget; `None`: the pipeline's default.
    pub context_tokens: Option<usize>,
    /// Questions in flight at once; 1, so latencies are those of one user.
    pub concurrency: usize,
    /// Whether to ingest the corpus first (idempotent); true.
    pub ingest: bool,
}

impl Default for AnswerOptions {
    fn default() -> Self {
        Self {
            namespace: Namespace::new("eval").expect("a valid namespace"),
            top_k: None,
            mode: SearchMode::Hybrid,
            fusion: Fusion::default(),
            answer_tokens: None,
            context_tokens: None,
            concurrency: 1,
            ingest: true,
        }
    }
}

impl AnswerOptions {
    /// Sets the namespace.
    pub fn with_namespace(mut self, namespace: Namespace) -> Self {
        self.namespace = namespace;
        self
    }
    /// Sets the sources per question.
    pub fn with_top_k(mut self, n: usize) -> Self {
        self.top_k = Some(n);
        self
    }
    /// Sets the retrieval mode.
    pub fn with_mode(mut self, mode: SearchMode) -> Self {
        self.mode = mode;
        self
    }
    /// Sets the fusion of hybrid lists.
    pub fn with_fusion(mut self, fusion: Fusion) -> Self {
        self.fusion = fusion;
        self
    }
    /// Sets the answer's token budget.
    pub fn with_answer_tokens(mut self, n: u32) -> Self {
        self.answer_tokens = Some(n);
        self
    }
    /// Sets the sources' token budget.
    pub fn with_context_tokens(mut self, n: usize) -> Self {
        self.context_tokens = Some(n);
        self
    }
    /// Sets the questions in flight at once.
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }
    /// Sets whether the corpus is ingested first.
    pub fn with_ingest(mut self, on: bool) -> Self {
        self.ingest = on;
        self
    }
}

/// One question's answer and its scores.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AnswerResult {
    /// The question id.
    pub query_id: String,
    /// The question.
    pub question: String,
    /// The answer as the pipeline returned it (empty on error).
    pub answer: String,
    /// Gold answers.
    pub gold_answers: Vec<String>,
    /// Required facts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<String>,
    /// The model that answered.
    pub model: String,
    /// A gold answer is contained in the answer.
    pub contained: bool,
    /// Exact match with a gold answer.
    pub exact_match: bool,
    /// Token F1 against the best gold answer.
    pub f1: f64,
    /// Every required fact is contained; `None` without facts.
    pub has_facts: Option<bool>,
    /// A relevant document was among the sources.
    pub gold_in_sources: bool,
    /// A relevant document was cited.
    pub gold_cited: bool,
    /// The documents cited, in citation order.
    pub cited: Vec<String>,
    /// The answer abstained.
    pub abstained: bool,
    /// Groundedness in the cited sources (0 when nothing is cited);
    /// `None` for an abstention or an answer without content words.
    pub groundedness: Option<f64>,
    /// Words in the answer, citation markers removed.
    pub words: usize,
    /// Everything before generation.
    pub retrieval: Duration,
    /// Generation.
    pub generation: Duration,
    /// End to end.
    pub total: Duration,
    /// Tokens a model generated (0 for an extractive answer).
    pub completion_tokens: u32,
    /// The error, when the pipeline failed on this question (scored as
    /// wrong).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Means and percentiles over a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnswerMetrics {
    /// Questions asked.
    pub questions: usize,
    /// Share with a gold answer contained.
    pub contained: f64,
    /// Share matching a gold answer exactly.
    pub exact_match: f64,
    /// Mean token F1.
    pub f1: f64,
    /// Share with every required fact, over the questions that have facts.
    pub facts: Option<f64>,
    /// Share with a relevant document among the sources.
    pub gold_in_sources: f64,
    /// Share citing a relevant document.
    pub gold_cited: f64,
    /// Share of answers (not abstentions, not errors) that cite nothing.
    pub cites_nothing: f64,
    /// Share of abstentions.
    pub abstained: f64,
    /// Share of questions the pipeline failed on.
    pub errors: f64,
    /// Mean groundedness over the answers it is defined for.
    pub groundedness: f64,
    /// Median answer length in words.
    pub median_words: f64,
    /// End-to-end latency, median.
    pub latency_p50: Duration,
    /// End-to-end latency, 95th percentile.
    pub latency_p95: Duration,
    /// Retrieval (everything before generation), median.
    pub retrieval_p50: Duration,
    /// Retrieval, 95th percentile.
    pub retrieval_p95: Duration,
    /// Generation, median.
    pub generation_p50: Duration,
    /// Generation, 95th percentile.
    pub generation_p95: Duration,
    /// Generated tokens per second of generation time (0 when no tokens
    /// were counted).
    pub tokens_per_second: f64,
}

/// The nearest-rank percentile `p` (0–100) of `values`; zero when empty.
fn percentile<T: Copy + Ord + Default>(values: &[T], p: f64) -> T {
    if values.is_empty() {
        return T::default();
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &[usize]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    }
}

/// Summarises per-question results.
pub fn summarize(results: &[AnswerResult]) -> AnswerMetrics {
    let n = results.len();
    if n == 0 {
        return AnswerMetrics::default();
    }
    let share = |f: &dyn Fn(&AnswerResult) -> bool| {
        results.iter().filter(|r| f(r)).count() as f64 / n as f64
    };
    let answered: Vec<&AnswerResult> = results
        .iter()
        .filter(|r| !r.abstained && r.error.is_none())
        .collect();
    let with_facts: Vec<bool> = results.iter().filter_map(|r| r.has_facts).collect();
    let grounded: Vec<f64> = results.iter().filter_map(|r| r.groundedness).collect();
    let ok: Vec<&AnswerResult> = results.iter().filter(|r| r.error.is_none()).collect();
    let pick = |f: fn(&AnswerResult) -> Duration| ok.iter().map(|r| f(r)).collect::<Vec<_>>();
    let (total, retrieval, generation) = (
        pick(|r| r.total),
        pick(|r| r.retrieval),
        pick(|r| r.generation),
    );
    let (tokens, gen_secs) =
        ok.iter()
            .filter(|r| r.completion_tokens > 0)
            .fold((0u64, 0f64), |(t, s), r| {
                (
                    t + u64::from(r.completion_tokens),
                    s + r.generation.as_secs_f64(),
                )
            });
    AnswerMetrics {
        questions: n,
        contained: share(&|r| r.contained),
        exact_match: share(&|r| r.exact_match),
        f1: results.iter().map(|r| r.f1).sum::<f64>() / n as f64,
        facts: (!with_facts.is_empty())
            .then(|| with_facts.iter().filter(|b| **b).count() as f64 / with_facts.len() as f64),
        gold_in_sources: share(&|r| r.gold_in_sources),
        gold_cited: share(&|r| r.gold_cited),
        cites_nothing: if answered.is_empty() {
            0.0
        } else {
            answered.iter().filter(|r| r.cited.is_empty()).count() as f64 / answered.len() as f64
        },
        abstained: share(&|r| r.abstained),
        errors: share(&|r| r.error.is_some()),
        groundedness: if grounded.is_empty() {
            0.0
        } else {
            grounded.iter().sum::<f64>() / grounded.len() as f64
        },
        median_words: median(&results.iter().map(|r| r.words).collect::<Vec<_>>()),
        latency_p50: percentile(&total, 50.0),
        latency_p95: percentile(&total, 95.0),
        retrieval_p50: percentile(&retrieval, 50.0),
        retrieval_p95: percentile(&retrieval, 95.0),
        generation_p50: percentile(&generation, 50.0),
        generation_p95: percentile(&generation, 95.0),
        tokens_per_second: if gen_secs > 0.0 {
            tokens as f64 / gen_secs
        } else {
            0.0
        },
    }
}

/// Scores one answer against a question's gold answers and documents.
pub fn score_answer(query: &QaQuery, gold: &HashSet<String>, answer: &Answer) -> AnswerResult {
    let is_gold =
        |id: &DocumentId, source: &str| gold.contains(id.as_str()) || gold.contains(source);
    let text = strip_citation_markers(&answer.text);
    let abstained = is_abstention(&answer.text);
    let cited_texts: Vec<&str> = answer
        .citations
        .iter()
        .filter_map(|c| answer.sources.iter().find(|s| s.number == c.number))
        .map(|s| s.text.as_str())
        .collect();
    let groundedness = if abstained {
        None
    } else if answer.citations.is_empty() {
        Some(0.0)
    } else {
        groundedness(&text, cited_texts)
    };
    let t = &answer.trace.timings;
    AnswerResult {
        query_id: query.id.clone(),
        question: query.text.clone(),
        answer: answer.text.clone(),
        gold_answers: query.answers.clone(),
        facts: query.facts.clone(),
        model: answer.model.clone(),
        contained: contains_answer(&text, &query.answers),
        exact_match: exact_match(&text, &query.answers),
        f1: token_f1(&text, &query.answers),
        has_facts: (!query.facts.is_empty()).then(|| has_facts(&text, &query.facts)),
        gold_in_sources: answer
            .sources
            .iter()
            .any(|s| is_gold(&s.document_id, &s.source)),
        gold_cited: answer
            .citations
            .iter()
            .any(|c| is_gold(&c.document_id, &c.source)),
        cited: answer
            .citations
            .iter()
            .map(|c| c.document_id.as_str().to_owned())
            .collect(),
        abstained,
        groundedness,
        words: text.split_whitespace().count(),
        retrieval: t.condense + t.embed + t.retrieve + t.rerank + t.pack,
        generation: t.generate,
        total: t.total,
        // Extractive answers generate nothing (their usage counts words).
        completion_tokens: if answer.extractive {
            0
        } else {
            answer.usage.completion_tokens
        },
        error: None,
    }
}

/// What [`evaluate_answers`] measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AnswerReport {
    /// The dataset directory.
    pub dataset: PathBuf,
    /// The split.
    pub split: String,
    /// The models that answered (normally one), by count.
    pub models: BTreeMap<String, usize>,
    /// The summary.
    pub metrics: AnswerMetrics,
    /// Per question, in the dataset's (or sample's) order.
    pub per_query: Vec<AnswerResult>,
    /// Documents newly written by ingestion.
    pub ingested: usize,
    /// Ingestion time.
    pub ingest_time: Duration,
    /// Wall time of all the questions.
    pub query_time: Duration,
}

impl AnswerReport {
    /// Writes one JSON object per question (an [`AnswerResult`]) per line.
    pub fn write_per_query(&self, out: &mut impl Write) -> std::io::Result<()> {
        for r in &self.per_query {
            serde_json::to_writer(&mut *out, r)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// Ingests the corpus of `data` through `rag` (unless told not to; a
/// dataset without a corpus is never ingested), asks every question through
/// the whole pipeline (retrieval, packing, generation, citations; no
/// session, no condensing) and scores the answers.
///
/// A question the pipeline fails on is recorded with its error and scored
/// as wrong; the run goes on. Errors: `InvalidInput` for bad options or a
/// document that fails to ingest.
pub async fn evaluate_answers(
    rag: &Rag,
    data: &QaDataset,
    options: &AnswerOptions,
) -> Result<AnswerReport> {
    use futures::StreamExt;

    if options.concurrency == 0 || options.top_k == Some(0) {
        return Err(Error::invalid_input(
            "AnswerOptions: concurrency and top_k must be positive",
        ));
    }
    let (ingested, ingest_time) = if options.ingest && !data.corpus.is_empty() {
        super::ingest_corpus(rag, data.documents()?, &options.namespace).await?
    } else {
        (0, Duration::ZERO)
    };
    let started = Instant::now();
    let per_query: Vec<AnswerResult> = futures::stream::iter(&data.queries)
        .map(|q| async move {
            let mut ask = Ask::new(q.text.as_str())
                .namespace(options.namespace.clone())
                .mode(options.mode)
                .fusion(options.fusion)
                .condense(false);
            if let Some(k) = options.top_k {
                ask = ask.top_k(k);
            }
            if let Some(n) = options.answer_tokens {
                ask = ask.answer_tokens(n);
            }
            if let Some(n) = options.context_tokens {
                ask = ask.context_tokens(n);
            }
            let gold = data.gold(q);
            match rag.ask(ask).await {
                Ok(answer) => score_answer(q, &gold, &answer),
                Err(e) => AnswerResult {
                    query_id: q.id.clone(),
                    question: q.text.clone(),
                    answer: String::new(),
                    gold_answers: q.answers.clone(),
                    facts: q.facts.clone(),
                    model: String::new(),
                    contained: false,
                    exact_match: false,
                    f1: 0.0,
                    has_facts: (!q.facts.is_empty()).then_some(false),
                    gold_in_sources: false,
                    gold_cited: false,
                    cited: Vec::new(),
                    abstained: false,
                    groundedness: None,
                    words: 0,
                    retrieval: Duration::ZERO,
                    generation: Duration::ZERO,
                    total: Duration::ZERO,
                    completion_tokens: 0,
                    error: Some(e.to_string()),
                },
            }
        })
        .buffered(options.concurrency)
        .collect()
        .await;
    let query_time = started.elapsed();
    let mut models = BTreeMap::new();
    for r in per_query.iter().filter(|r| r.error.is_none()) {
        *models.entry(r.model.clone()).or_insert(0) += 1;
    }
    Ok(AnswerReport {
        dataset: data.dir.clone(),
        split: data.split.clone(),
        models,
        metrics: summarize(&per_query),
        per_query,
        ingested,
        ingest_time,
        query_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golds(g: &[&str]) -> Vec<String> {
        g.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn normalisation_follows_the_squad_script() {
        assert_eq!(normalize_answer("The Denver Broncos."), "denver broncos");
        assert_eq!(
            normalize_answer("  a  cat, an apple & the END "),
            "cat apple end"
        );
        // Articles only as whole words; punctuation removed first, so
        // "the-end" becomes "theend" and stays.
        assert_eq!(normalize_answer("theatre the-end"), "theatre theend");
        // Only ASCII punctuation goes; the en dash stays.
        assert_eq!(normalize_answer("24–10"), "24–10");
        assert_eq!(normalize_answer("Éire's"), "éires");
    }

    #[test]
    fn hand_computed_f1_and_exact_match() {
        // Prediction tokens: denver broncos won; gold: denver broncos.
        // Precision 2/3, recall 1, F1 = 2·(2/3)/(5/3) = 0.8.
        let g = golds(&["Denver Broncos"]);
        assert!((token_f1("the Denver Broncos won", &g) - 0.8).abs() < 1e-12);
        assert!(!exact_match("the Denver Broncos won", &g));
        assert!(exact_match("The Denver Broncos!", &g));
        // Max over gold answers; repeated tokens count once each.
        let g = golds(&["Santa Clara, California", "Levi's Stadium"]);
        assert!((token_f1("Levi's Stadium", &g) - 1.0).abs() < 1e-12);
        // "to to" against "to": common 1, precision 1/2, recall 1 → 2/3.
        assert!((token_f1("to to", &golds(&["to"])) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(token_f1("nothing shared", &golds(&["Denver"])), 0.0);
        assert_eq!(token_f1("", &golds(&["Denver"])), 0.0);
        assert_eq!(token_f1("anything", &[]), 0.0);
    }

    #[test]
    fn containment_is_by_whole_tokens() {
        let g = golds(&["Denver Broncos"]);
        assert!(contains_answer(
            "It was the Denver Broncos [1], who won.",
            &g
        ));
        assert!(!contains_answer("Denver's Broncosaurus", &g));
        assert!(!contains_answer("Broncos Denver", &g));
        // A gold answer that normalises to nothing is never contained.
        assert!(!contains_answer("the", &golds(&["The"])));
        assert!(has_facts(
            "Run scripts/test; it uses cargo nextest.",
            &golds(&["scripts/test", "nextest|cargo test"])
        ));
        assert!(!has_facts("Run cargo test.", &golds(&["scripts/test"])));
        assert!(has_facts("anything", &[]));
    }

    #[test]
    fn markers_abstentions_and_groundedness() {
        assert_eq!(
            strip_citation_markers("Denver won [1][2]. It rained [3, 4]."),
            "Denver won. It rained."
        );
        assert!(is_abstention("I do not know."));
        assert!(is_abstention(
            "The sources found do not appear to answer this question."
        ));
        assert!(is_abstention(""));
        assert!(!is_abstention("Denver Broncos [1]"));
        // Content words: denver, broncos, won (stems); "the" is a stop word.
        let g = groundedness(
            "The Denver Broncos won [1].",
            ["The Broncos of Denver played."],
        )
        .unwrap();
        assert!((g - 2.0 / 3.0).abs() < 1e-12, "{g}");
        assert_eq!(groundedness("the [1]", ["x"]), None);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=20).collect();
        assert_eq!(percentile(&v, 50.0), 10);
        assert_eq!(percentile(&v, 95.0), 19);
        assert_eq!(percentile(&[7u32], 95.0), 7);
        assert_eq!(percentile::<u32>(&[], 50.0), 0);
        assert_eq!(median(&[3, 1, 2]), 2.0);
        assert_eq!(median(&[4, 1, 2, 3]), 2.5);
    }
}
