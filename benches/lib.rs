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
