//! Choosing the next token from one row of logits.

use nnsight::{Error, Result};

use super::options::Sampling;

/// The tokens sampling may choose, `(id, logit / temperature)`, with their probabilities.
type Candidates = (Vec<(u32, f32)>, Vec<f64>);

/// Chooses tokens per [`Sampling`]; owns the random generator of seeded sampling.
#[derive(Debug)]
pub(crate) struct Sampler {
    sampling: Sampling,
    rng: SplitMix64,
}

impl Sampler {
    /// A sampler; checks the options.
    pub(crate) fn new(sampling: Sampling) -> Result<Self> {
        let seed = match &sampling {
            Sampling::Greedy => 0,
            Sampling::Sample { temperature, top_k, top_p, seed } => {
                let bad = |problem: String| Err(Error::Input { problem });
                if !(temperature.is_finite() && *temperature > 0.0) {
                    return bad(format!("temperature must be positive, not {temperature}"));
                }
                if *top_k == Some(0) {
                    return bad("top_k must be at least 1".to_owned());
                }
                if let Some(p) = top_p
                    && !(*p > 0.0 && *p <= 1.0)
                {
                    return bad(format!("top_p must be in (0, 1], not {p}"));
                }
                *seed
            }
        };
        Ok(Sampler { sampling, rng: SplitMix64(seed) })
    }

    /// The tokens sampling may choose from `logits` (one row) with their processed scores
    /// (`logit / temperature`), most likely first, and their probabilities: after top-k and
    /// top-p filtering. `None` for greedy search.
    fn candidates(&self, logits: &[f32]) -> Option<Candidates> {
        let Sampling::Sample { temperature, top_k, top_p, .. } = &self.sampling else { return None };
        let mut candidates: Vec<(u32, f32)> =
            logits.iter().enumerate().map(|(i, &l)| (i as u32, l / temperature)).collect();
        candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(k) = top_k {
            candidates.truncate((*k).max(1));
        }
        let max = candidates[0].1;
        let mut weights: Vec<f64> = candidates.iter().map(|c| f64::from(c.1 - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        if let Some(p) = top_p {
            let mut mass = 0.0;
            let keep = weights
                .iter()
                .position(|w| {
                    mass += w;
                    mass >= f64::from(*p)
                })
                .map_or(weights.len(), |i| i + 1);
            candidates.truncate(keep);
            weights.truncate(keep);
        }
        Some((candidates, weights))
    }

    /// The next token for `logits` (one row, `vocab` values).
    pub(crate) fn choose(&mut self, logits: &[f32]) -> u32 {
        let Some((candidates, weights)) = self.candidates(logits) else { return argmax(logits) };
        let total: f64 = weights.iter().sum();
        let mut draw = self.rng.next_f64() * total;
        for (candidate, weight) in candidates.iter().zip(&weights) {
            if draw < *weight {
                return candidate.0;
            }
            draw -= weight;
        }
        candidates[candidates.len() - 1].0
    }

    /// The processed scores of `logits` the choice is made from, as transformers'
    /// `output_scores`: the logits for greedy search; divided by the temperature, with the tokens
    /// top-k and top-p filter out at −∞, when sampling.
    pub(crate) fn scores(&self, logits: &[f32]) -> Vec<f32> {
        let Some((candidates, _)) = self.candidates(logits) else { return logits.to_vec() };
        let mut scores = vec![f32::NEG_INFINITY; logits.len()];
        for (id, score) in candidates {
            scores[id as usize] = score;
        }
        scores
    }
}

/// The index of the largest value; the first one on ties (as `torch.argmax`).
pub(crate) fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// SplitMix64: a small, fast, well-mixed generator; its stream depends only on the seed.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[0.0, 2.0, 2.0, 1.0]), 1);
    }

    #[test]
    fn top_k_one_is_greedy_and_seeds_repeat() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let mut one =
            Sampler::new(Sampling::Sample { temperature: 1.0, top_k: Some(1), top_p: None, seed: 3 })
                .unwrap();
        assert_eq!(one.choose(&logits), argmax(&logits));
        let draw = |seed| {
            let mut s =
                Sampler::new(Sampling::Sample { temperature: 1.0, top_k: None, top_p: None, seed }).unwrap();
            (0..20).map(|_| s.choose(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // One token holds almost all the mass: with top_p 0.5 it is always chosen.
        let mut logits = vec![0.0f32; 10];
        logits[4] = 10.0;
        let mut s =
            Sampler::new(Sampling::Sample { temperature: 1.0, top_k: None, top_p: Some(0.5), seed: 1 })
                .unwrap();
        assert!((0..100).all(|_| s.choose(&logits) == 4));
    }

    #[test]
    fn bad_options_are_errors() {
        assert!(
            Sampler::new(Sampling::Sample { temperature: 0.0, top_k: None, top_p: None, seed: 0 }).is_err()
        );
        assert!(
            Sampler::new(Sampling::Sample { temperature: 1.0, top_k: Some(0), top_p: None, seed: 0 })
                .is_err()
        );
        assert!(
            Sampler::new(Sampling::Sample { temperature: 1.0, top_k: None, top_p: Some(1.5), seed: 0 })
                .is_err()
        );
    }
}
