//! Deterministic inputs: Zipf-distributed words and long unique keys.

/// A small, fast, deterministic generator (xorshift64*).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Words drawn from a vocabulary with Zipf's law (exponent 1), as in
/// natural text: a few words are very common, most are rare.
pub(crate) struct Zipf {
    words: Vec<String>,
    cdf: Vec<f64>,
    rng: Rng,
}

impl Zipf {
    pub(crate) fn new(vocabulary: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ 0x9E37_79B9_7F4A_7C15);
        let mut words = Vec::with_capacity(vocabulary);
        let mut seen = std::collections::HashSet::new();
        while words.len() < vocabulary {
            let len = 2 + (rng.next_u64() % 9) as usize;
            let w: String = (0..len)
                .map(|_| (b'a' + (rng.next_u64() % 26) as u8) as char)
                .collect();
            if seen.insert(w.clone()) {
                words.push(w);
            }
        }
        let mut cdf = Vec::with_capacity(vocabulary);
        let mut sum = 0.0;
        for rank in 1..=vocabulary {
            sum += 1.0 / rank as f64;
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf {
            words,
            cdf,
            rng: Rng::new(seed),
        }
    }

    pub(crate) fn word(&mut self) -> &str {
        let u = self.rng.unit();
        let i = self
            .cdf
            .partition_point(|&c| c < u)
            .min(self.words.len() - 1);
        &self.words[i]
    }

    /// A line of `n` words separated by single spaces.
    pub(crate) fn line(&mut self, n: usize, out: &mut String) {
        out.clear();
        for i in 0..n {
            if i > 0 {
                out.push(' ');
            }
            let w = self.word().to_owned();
            out.push_str(&w);
        }
    }
}

/// The `i`-th of a set of unique words of `len` bytes (for large state).
pub(crate) fn long_word(i: u64, len: usize, out: &mut String) {
    out.clear();
    out.push_str(&format!("k{i:010}-"));
    let mut rng = Rng::new(i.wrapping_add(1));
    while out.len() < len {
        out.push((b'a' + (rng.next_u64() % 26) as u8) as char);
    }
}
