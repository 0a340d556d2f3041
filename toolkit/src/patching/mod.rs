//! Activation patching, written once for every [`Standardized`](nnsight_models::vocabulary::Standardized)
//! model: which values of a run, put into another run, carry the behaviour a metric measures.
//!
//! A [`Patching`] names the sites ([`SiteKind`]: the residual stream before, between or after a
//! layer's blocks, the attention's or MLP's output, one attention head), the layers and positions,
//! the [`Direction`] (the clean run's values into the corrupted run — denoising — or the reverse)
//! and the [`Metric`] on the final logits. [`Patching::run`] measures every (site, layer,
//! position) entry: from the causal structure where the family has that algorithm (every
//! layer's output at every position, a logit difference, denoising), else with one batched
//! forward pass of invokes per chunk of entries — each entry equal to its own trace.
//! [`Patching::attribute`] estimates the same entries by attribution patching (gradient ×
//! activation difference) from one forward and one backward pass, on an autodiff backend.
//!
//! ```no_run
//! # use burn::backend::Flex;
//! # use nnsight_models::{LanguageModel, gpt2::Gpt2LMHeadModel};
//! # use nnsight_toolkit::patching::{Metric, Patching, SiteKind};
//! # fn main() -> nnsight::Result<()> {
//! # let lm = LanguageModel::<Flex, Gpt2LMHeadModel<Flex>>::from_pretrained("openai-community/gpt2", &Default::default())?;
//! let (paris, rome) = (lm.encode(" Paris")?[0], lm.encode(" Rome")?[0]);
//! let result = Patching::new(Metric::logit_diff(paris, rome))
//!     .sites(&[SiteKind::AttnOut, SiteKind::MlpOut, SiteKind::Head(3)])
//!     .run(&lm, "The Eiffel Tower is in the city of", "The Colosseum is in the city of")?;
//! println!("MLP 5 at the last token restores {:.2}", result.recovered(1, 5, result.positions.len() - 1));
//! # Ok(())
//! # }
//! ```

mod attribution;
mod picture;
mod sweep;

pub use picture::{result_heatmap, sweep_heatmap};
pub use sweep::{Method, PatchResult, Patching};

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use nnsight::Result;
use nnsight_models::vocabulary::{Location, Vocabulary};

/// Which value of a layer a patch replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteKind {
    /// The residual stream before the layer (its input; TransformerLens' `hook_resid_pre`).
    ResidPre,
    /// The residual stream between attention and MLP (`hook_resid_mid`).
    ResidMid,
    /// The residual stream after the layer (its output; `hook_resid_post`).
    ResidPost,
    /// What the attention adds to the residual stream (`hook_attn_out`).
    AttnOut,
    /// What the MLP adds to the residual stream (`hook_mlp_out`).
    MlpOut,
    /// One attention head's output before the output projection (its columns of `attn.hook_z`).
    Head(usize),
}

impl SiteKind {
    /// Where the site is in layer `layer`.
    pub(crate) fn location(self, words: &Vocabulary, layer: usize) -> Result<Location> {
        match self {
            SiteKind::ResidPre => words.layer_input(layer),
            SiteKind::ResidMid => words.resid_mid(layer),
            SiteKind::ResidPost => words.layer(layer),
            SiteKind::AttnOut => words.attention(layer),
            SiteKind::MlpOut => words.mlp(layer),
            SiteKind::Head(head) => {
                let location = words.head_values(layer)?;
                if head >= words.num_heads {
                    return Err(nnsight::Error::Input {
                        problem: format!(
                            "head {head} of a {}-head {} attention",
                            words.num_heads, words.family
                        ),
                    });
                }
                Ok(location)
            }
        }
    }

    /// The site's name, for labels (`mlp_out`, `head 3`).
    pub fn label(self) -> String {
        match self {
            SiteKind::ResidPre => "resid_pre".to_owned(),
            SiteKind::ResidMid => "resid_mid".to_owned(),
            SiteKind::ResidPost => "resid_post".to_owned(),
            SiteKind::AttnOut => "attn_out".to_owned(),
            SiteKind::MlpOut => "mlp_out".to_owned(),
            SiteKind::Head(h) => format!("head {h}"),
        }
    }

    /// Where in the forward pass of a layer the site is, to read a run's sites in order.
    pub(crate) fn order(self) -> u8 {
        match self {
            SiteKind::ResidPre => 0,
            SiteKind::Head(_) => 1,
            SiteKind::AttnOut => 2,
            SiteKind::ResidMid => 3,
            SiteKind::MlpOut => 4,
            SiteKind::ResidPost => 5,
        }
    }
}

/// Which run's values go into which.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The clean run's values into the corrupted run: what restores the behaviour.
    Denoising,
    /// The corrupted run's values into the clean run: what breaks it.
    Noising,
}

/// What a patching experiment measures on the final logits (`[1, tokens, vocab]`), at the last
/// position.
pub enum Metric<'a, B: Backend> {
    /// `logit(answer) − logit(distractor)`.
    LogitDiff {
        /// The clean prompt's answer.
        answer: u32,
        /// The corrupted prompt's answer.
        distractor: u32,
    },
    /// The probability of a token.
    Probability(u32),
    /// `KL(reference ‖ run)` of the next-token distributions, from the reference's
    /// log-probabilities `[vocab]` (e.g. the clean run's, from [`Metric::log_probs`]).
    KlFrom(Tensor<B, 1>),
    /// Any function of the logits.
    Custom(MetricFn<'a, B>),
}

/// A metric as a function of the final logits `[1, tokens, vocab]`.
pub type MetricFn<'a, B> = Box<dyn Fn(&Tensor<B, 3>) -> f32 + 'a>;

impl<B: Backend> Metric<'_, B> {
    /// `logit(answer) − logit(distractor)` at the last position.
    pub fn logit_diff(answer: u32, distractor: u32) -> Self {
        Metric::LogitDiff { answer, distractor }
    }

    /// The next-token log-probabilities `[vocab]` of logits `[1, tokens, vocab]`.
    pub fn log_probs(logits: &Tensor<B, 3>) -> Tensor<B, 1> {
        let [_, tokens, vocab] = logits.dims();
        log_softmax(logits.clone().narrow(1, tokens - 1, 1).reshape([vocab]), 0)
    }

    /// The metric of logits `[1, tokens, vocab]`.
    pub fn of(&self, logits: &Tensor<B, 3>) -> f32 {
        let [_, tokens, vocab] = logits.dims();
        let last = || logits.clone().narrow(1, tokens - 1, 1).reshape([vocab]);
        let at = |t: Tensor<B, 1>, id: u32| t.narrow(0, id as usize, 1).into_scalar().elem::<f32>();
        match self {
            Metric::LogitDiff { answer, distractor } => at(last(), *answer) - at(last(), *distractor),
            Metric::Probability(id) => at(Self::log_probs(logits), *id).exp(),
            Metric::KlFrom(reference) => {
                let run = Self::log_probs(logits);
                (reference.clone().exp() * (reference.clone() - run)).sum().into_scalar().elem::<f32>()
            }
            Metric::Custom(f) => f(logits),
        }
    }

    /// The metric of logits `[1, tokens, vocab]` as a scalar tensor `[1]`, through which a
    /// backward pass can run; `None` for a [`Metric::Custom`] function, which gives a number.
    pub(crate) fn differentiable(&self, logits: &Tensor<B, 3>) -> Option<Tensor<B, 1>> {
        let [_, tokens, vocab] = logits.dims();
        let last = || logits.clone().narrow(1, tokens - 1, 1).reshape([vocab]);
        Some(match self {
            Metric::LogitDiff { answer, distractor } => {
                last().narrow(0, *answer as usize, 1) - last().narrow(0, *distractor as usize, 1)
            }
            Metric::Probability(id) => Self::log_probs(logits).narrow(0, *id as usize, 1).exp(),
            Metric::KlFrom(reference) => {
                (reference.clone().exp() * (reference.clone() - Self::log_probs(logits))).sum()
            }
            Metric::Custom(_) => return None,
        })
    }

    /// The token ids the metric names, to check against the vocabulary.
    pub(crate) fn tokens(&self) -> Vec<u32> {
        match self {
            Metric::LogitDiff { answer, distractor } => vec![*answer, *distractor],
            Metric::Probability(id) => vec![*id],
            _ => Vec::new(),
        }
    }
}
