//! Shared helpers for the benches: deterministic synthetic data, so runs are
//! comparable without any file outside the repository.

/// A small deterministic PRNG (xorshift64*), enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `[0, 1)`.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A unit vector of `d` random components.
pub fn random_unit(rng: &mut Rng, d: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..d).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// `v` moved by uniform noise of `scale` per component, re-normalised.
pub fn perturb(rng: &mut Rng, v: &[f32], scale: f32) -> Vec<f32> {
    let mut out: Vec<f32> = v
        .iter()
        .map(|x| x + (rng.next_f32() * 2.0 - 1.0) * scale)
        .collect();
    let n = out.iter().map(|x| x * x).sum::<f32>().sqrt();
    out.iter_mut().for_each(|x| *x /= n);
    out
}

/// `n` clustered unit vectors of `dims` (1 000 centroids plus noise): closer
/// to real embeddings than uniform noise, on which ANN recall is
/// meaningless. Deterministic (seed 7), so stores can be compared.
pub fn clustered_dataset(n: usize, dims: usize) -> Vec<Vec<f32>> {
    let mut rng = Rng::new(7);
    let centroids: Vec<Vec<f32>> = (0..1_000).map(|_| random_unit(&mut rng, dims)).collect();
    (0..n)
        .map(|_| {
            let c = &centroids[rng.below(centroids.len())];
            perturb(&mut rng, c, 0.08)
        })
        .collect()
}

/// One-chunk document `doc{i:06}` with metadata `{"group": i % 10}` and the
/// vector `v`, as the store benches load them.
pub fn bench_chunk(i: usize, v: Vec<f32>) -> rag::EmbeddedChunk {
    let text = format!("chunk {i} of the benchmark corpus");
    let doc = rag::Document::new(format!("doc{i}"), text.clone())
        .with_id(rag::DocumentId::new(format!("doc{i:06}")).expect("id"))
        .with_metadata(serde_json::json!({"group": i % 10}));
    rag::EmbeddedChunk {
        chunk: rag::Chunk::from_document(&doc, 0, 0..text.len()),
        vector: v,
    }
}

/// The indices of the 10 vectors of `data` with the highest dot product
/// with `q` (exact search, the recall reference of the store benches).
pub fn exact_top10(data: &[Vec<f32>], q: &[f32]) -> Vec<usize> {
    let mut s: Vec<(f32, usize)> = data
        .iter()
        .enumerate()
        .map(|(i, v)| (v.iter().zip(q).map(|(a, b)| a * b).sum::<f32>(), i))
        .collect();
    s.select_nth_unstable_by(10, |a, b| b.0.total_cmp(&a.0));
    s.truncate(10);
    s.into_iter().map(|(_, i)| i).collect()
}

/// The `p` quantile (0 to 1) of sorted durations.
pub fn percentile(sorted: &[std::time::Duration], p: f64) -> std::time::Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A vocabulary of `n` pseudo-words with a Zipf-like draw, for text whose
/// term statistics resemble prose.
#[derive(Debug, Clone)]
pub struct Vocabulary(Vec<String>);

impl Vocabulary {
    /// `n` distinct words.
    pub fn new(n: usize, rng: &mut Rng) -> Self {
        const SYL: [&str; 16] = [
            "ka", "lo", "mi", "ter", "an", "vo", "ri", "sen", "tu", "pel", "or", "gan", "de",
            "shi", "mu", "ber",
        ];
        let mut words = std::collections::BTreeSet::new();
        while words.len() < n {
            let k = 1 + rng.below(3);
            let w: String = (0..k).map(|_| SYL[rng.below(SYL.len())]).collect();
            words.insert(format!("{w}{}", words.len() % 97));
        }
        Self(words.into_iter().collect())
    }
    /// A word, frequent ones more often.
    pub fn word(&self, rng: &mut Rng) -> &str {
        let r = rng.next_f32();
        let i = ((r * r * r) * self.0.len() as f32) as usize;
        &self.0[i.min(self.0.len() - 1)]
    }
    /// A sentence of `words` words.
    pub fn sentence(&self, rng: &mut Rng, words: usize) -> String {
        let mut s: Vec<&str> = (0..words).map(|_| self.word(rng)).collect();
        if let Some(first) = s.first_mut() {
            *first = first.trim();
        }
        let mut out = s.join(" ");
        out.push('.');
        out
    }
}

/// About `bytes` of prose-like text in paragraphs (Markdown headings every
/// few paragraphs when `markdown`).
pub fn prose(bytes: usize, markdown: bool, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let vocab = Vocabulary::new(5000, &mut rng);
    let mut out = String::with_capacity(bytes + 1024);
    let mut para = 0;
    while out.len() < bytes {
        if markdown && para % 4 == 0 {
            out.push_str(&format!("## Section {para}\n\n"));
        }
        let sentences = 3 + rng.below(5);
        for _ in 0..sentences {
            let n = 6 + rng.below(18);
            out.push_str(&vocab.sentence(&mut rng, n));
            out.push(' ');
        }
        out.push_str("\n\n");
        para += 1;
    }
    out
}
