//! How to generate: how many tokens, and how to choose each.

/// How the next token is chosen from the logits.
#[derive(Clone, Debug, PartialEq)]
pub enum Sampling {
    /// The most likely token (ties: the lowest id), as transformers' greedy search.
    Greedy,
    /// A token drawn from the distribution, after temperature, top-k and top-p filtering, with a
    /// seeded random generator (the same seed gives the same text).
    Sample {
        /// Logits are divided by it (> 0; 1 leaves them as they are).
        temperature: f32,
        /// Keep only the `k` most likely tokens (`None`: all).
        top_k: Option<usize>,
        /// Keep the smallest set of most likely tokens whose probability reaches `p` (`None`: all).
        top_p: Option<f32>,
        /// The random generator's seed.
        seed: u64,
    },
}

/// Options of [`LanguageModel::generate`](crate::LanguageModel::generate).
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateOptions {
    /// The most tokens to add to each prompt.
    pub max_new_tokens: usize,
    /// How each token is chosen.
    pub sampling: Sampling,
    /// Whether a prompt stops at an end-of-sequence token (then the others go on until they stop
    /// too or reach `max_new_tokens`).
    pub stop_at_eos: bool,
    /// Whether the generation keeps each step's logits ([`Generation::logits`](crate::generation::Generation::logits),
    /// transformers' `output_logits`).
    pub output_logits: bool,
    /// Whether the generation keeps each step's processed scores
    /// ([`Generation::scores`](crate::generation::Generation::scores), transformers'
    /// `output_scores`).
    pub output_scores: bool,
}

impl GenerateOptions {
    /// Greedy generation of at most `max_new_tokens` tokens, stopping at end-of-sequence tokens.
    pub fn greedy(max_new_tokens: usize) -> Self {
        GenerateOptions {
            max_new_tokens,
            sampling: Sampling::Greedy,
            stop_at_eos: true,
            output_logits: false,
            output_scores: false,
        }
    }

    /// Sampling with `temperature` and `seed` (no top-k / top-p filtering; add them with
    /// [`top_k`](Self::top_k) and [`top_p`](Self::top_p)).
    pub fn sampled(max_new_tokens: usize, temperature: f32, seed: u64) -> Self {
        GenerateOptions {
            max_new_tokens,
            sampling: Sampling::Sample { temperature, top_k: None, top_p: None, seed },
            stop_at_eos: true,
            output_logits: false,
            output_scores: false,
        }
    }

    /// Keeps only the `k` most likely tokens when sampling (no effect on greedy search).
    pub fn top_k(mut self, k: usize) -> Self {
        if let Sampling::Sample { top_k, .. } = &mut self.sampling {
            *top_k = Some(k);
        }
        self
    }

    /// Nucleus sampling: keeps the most likely tokens up to probability `p` (no effect on greedy
    /// search).
    pub fn top_p(mut self, p: f32) -> Self {
        if let Sampling::Sample { top_p, .. } = &mut self.sampling {
            *top_p = Some(p);
        }
        self
    }

    /// Keeps the logits each token was chosen from ([`Generation::logits`](crate::generation::Generation::logits)):
    /// one vocabulary-sized row per new token, `max_new_tokens × vocab` floats per prompt at most.
    pub fn with_logits(mut self) -> Self {
        self.output_logits = true;
        self
    }

    /// Keeps the processed scores each token was chosen from ([`Generation::scores`](crate::generation::Generation::scores),
    /// transformers' `output_scores`: after temperature, top-k and top-p).
    pub fn with_scores(mut self) -> Self {
        self.output_scores = true;
        self
    }

    /// Generates exactly `max_new_tokens` tokens, ignoring end-of-sequence tokens.
    pub fn ignore_eos(mut self) -> Self {
        self.stop_at_eos = false;
        self
    }
}
