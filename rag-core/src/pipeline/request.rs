//! The question: [`Ask`] and its [`TokenBudget`].

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::filter::Filter;
use crate::search::{Fusion, MAX_TOP_K, SearchMode};
use crate::session::SessionId;
use crate::types::Namespace;

use super::prompt::PromptTemplate;

/// Token budgets of one question.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenBudget {
    /// Most tokens of sources in the prompt; 3,000 by default.
    pub context: usize,
    /// Most tokens of conversation history in the prompt; 1,000 by default.
    pub history: usize,
    /// Tokens reserved for the answer (`max_tokens`); 512 by default. The
    /// prompt never exceeds the model's context window minus this.
    pub answer: u32,
}

impl Default for TokenBudget {
    fn default() -> Self {
        Self {
            context: 3000,
            history: 1000,
            answer: 512,
        }
    }
}

impl TokenBudget {
    /// A budget.
    pub fn new(context: usize, history: usize, answer: u32) -> Self {
        Self {
            context,
            history,
            answer,
        }
    }
}

/// A question and how to answer it.
///
/// ```
/// use rag_core::{Ask, Filter, Fusion, SearchMode};
/// let ask = Ask::new("How do I rotate keys?")
///     .filter(Filter::eq("team", "ops"))
///     .mode(SearchMode::Hybrid)
///     .fusion(Fusion::Rrf { k: 60.0 })
///     .top_k(20)
///     .rerank_top_n(5);
/// assert_eq!(ask.top_k, 20);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Ask {
    /// The question.
    pub question: String,
    /// The conversation it belongs to: its history is used and the
    /// exchange appended.
    pub session: Option<SessionId>,
    /// The tenant searched; [`Namespace::default`] unless set.
    pub namespace: Namespace,
    /// Only chunks matching this are retrieved.
    pub filter: Option<Filter>,
    /// Candidates retrieved (after fusion, for hybrid); 20.
    pub top_k: usize,
    /// Dense, keyword or hybrid (both, fused); hybrid by default.
    pub mode: SearchMode,
    /// How hybrid lists are fused; [`Fusion::default`]: weighted, dense 0.7.
    pub fusion: Fusion,
    /// Candidates each side of a hybrid search contributes to fusion;
    /// `None` for the rule every store uses
    /// ([`hybrid_pool`](crate::search::hybrid_pool)).
    #[serde(default)]
    pub hybrid_pool: Option<usize>,
    /// Whether the pipeline's reranker (if any) is used; true.
    pub rerank: bool,
    /// Candidates kept after reranking (or after fusion without a
    /// reranker) and offered to packing; 8.
    pub rerank_top_n: usize,
    /// How much the reranker decides, in `[0, 1]`: candidates are ordered by
    /// `w · rerank + (1 − w) · retrieval`, each score min-max normalised
    /// over the reranked candidates. 1 is the reranker's order alone.
    #[serde(default = "full_weight")]
    pub rerank_weight: f32,
    /// Token budgets.
    pub budget: TokenBudget,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// A prompt replacing the pipeline's.
    pub prompt: Option<PromptTemplate>,
    /// Whether a follow-up is rewritten into a standalone query using the
    /// session history before retrieval; true.
    pub condense: bool,
}

fn full_weight() -> f32 {
    1.0
}

impl Ask {
    /// A question with default settings.
    pub fn new(question: impl Into<String>) -> Self {
        Self {
            question: question.into(),
            session: None,
            namespace: Namespace::default(),
            filter: None,
            top_k: 20,
            mode: SearchMode::Hybrid,
            fusion: Fusion::default(),
            hybrid_pool: None,
            rerank: true,
            rerank_top_n: 8,
            rerank_weight: 1.0,
            budget: TokenBudget::default(),
            temperature: None,
            prompt: None,
            condense: true,
        }
    }
    /// Sets the session.
    pub fn session(mut self, id: SessionId) -> Self {
        self.session = Some(id);
        self
    }
    /// Sets the namespace.
    pub fn namespace(mut self, ns: Namespace) -> Self {
        self.namespace = ns;
        self
    }
    /// Sets the filter.
    pub fn filter(mut self, f: Filter) -> Self {
        self.filter = Some(f);
        self
    }
    /// Sets the candidates per search.
    pub fn top_k(mut self, n: usize) -> Self {
        self.top_k = n;
        self
    }
    /// Sets the retrieval mode.
    pub fn mode(mut self, mode: SearchMode) -> Self {
        self.mode = mode;
        self
    }
    /// Sets the fusion.
    pub fn fusion(mut self, fusion: Fusion) -> Self {
        self.fusion = fusion;
        self
    }
    /// Sets the candidates each side of a hybrid search contributes to
    /// fusion (default: [`hybrid_pool`](crate::search::hybrid_pool)).
    pub fn hybrid_pool(mut self, n: usize) -> Self {
        self.hybrid_pool = Some(n);
        self
    }
    /// Turns reranking on or off.
    pub fn rerank(mut self, on: bool) -> Self {
        self.rerank = on;
        self
    }
    /// Sets how much the reranker decides (see [`Ask::rerank_weight`]).
    pub fn rerank_weight(mut self, w: f32) -> Self {
        self.rerank_weight = w;
        self
    }
    /// Sets how many candidates survive reranking.
    pub fn rerank_top_n(mut self, n: usize) -> Self {
        self.rerank_top_n = n;
        self
    }
    /// Sets the token budgets.
    pub fn budget(mut self, budget: TokenBudget) -> Self {
        self.budget = budget;
        self
    }
    /// Sets the source token budget.
    pub fn context_tokens(mut self, n: usize) -> Self {
        self.budget.context = n;
        self
    }
    /// Sets the history token budget.
    pub fn history_tokens(mut self, n: usize) -> Self {
        self.budget.history = n;
        self
    }
    /// Sets the answer token budget.
    pub fn answer_tokens(mut self, n: u32) -> Self {
        self.budget.answer = n;
        self
    }
    /// Sets the temperature.
    pub fn temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }
    /// Sets a prompt template for this question.
    pub fn prompt(mut self, template: PromptTemplate) -> Self {
        self.prompt = Some(template);
        self
    }
    /// Turns follow-up condensing on or off.
    pub fn condense(mut self, on: bool) -> Self {
        self.condense = on;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.question.trim().is_empty() {
            return Err(Error::invalid_input("question is empty"));
        }
        if self.top_k == 0 || self.top_k > MAX_TOP_K {
            return Err(Error::invalid_input(format!(
                "top_k must be 1 to {MAX_TOP_K}, got {}",
                self.top_k
            )));
        }
        if let Some(pool) = self.hybrid_pool
            && (pool == 0 || pool > MAX_TOP_K)
        {
            return Err(Error::invalid_input(format!(
                "hybrid_pool must be 1 to {MAX_TOP_K}, got {pool}"
            )));
        }
        if self.rerank_top_n == 0 {
            return Err(Error::invalid_input("rerank_top_n must be at least 1"));
        }
        if !(self.rerank_weight.is_finite() && (0.0..=1.0).contains(&self.rerank_weight)) {
            return Err(Error::invalid_input(format!(
                "rerank_weight must be 0 to 1, got {}",
                self.rerank_weight
            )));
        }
        if let Some(t) = self.temperature
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(Error::invalid_input(
                "temperature must be a finite number >= 0",
            ));
        }
        if let Some(p) = &self.prompt {
            p.validate()?;
        }
        Ok(())
    }
}
