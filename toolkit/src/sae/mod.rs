//! Sparse autoencoders in SAELens' format (a directory with `cfg.json` and
//! `sae_weights.safetensors`, as `SAE.save_model` writes it): encode a site's activations into
//! features, edit features, decode them back into the forward pass — at the TransformerLens hook
//! the SAE was trained on, found through the model's [`Vocabulary`](nnsight_models::vocabulary::Vocabulary).
//!
//! ```no_run
//! # use burn::backend::Flex;
//! # use nnsight_models::{LanguageModel, gpt2::Gpt2LMHeadModel};
//! # use nnsight_toolkit::sae::{Sae, Splice};
//! # fn main() -> nnsight::Result<()> {
//! # let lm = LanguageModel::<Flex, Gpt2LMHeadModel<Flex>>::from_pretrained("openai-community/gpt2", &Default::default())?;
//! let sae = Sae::<Flex>::load("gpt2-small-res-jb/blocks.8.hook_resid_pre", &Default::default())?;
//! let features = sae.features(&lm, "The Eiffel Tower is in Paris")?; // [1, tokens, d_sae]
//! // Switch feature 1234 off at every token, keeping the SAE's reconstruction error.
//! let (logits, _) = sae.edited(&lm, "The Eiffel Tower is in", Splice::KeepError, |f| {
//!     let [b, t, _] = f.dims();
//!     f.slice_assign([0..b, 0..t, 1234..1235], burn::tensor::Tensor::zeros([b, t, 1], &Default::default()))
//! })?;
//! # Ok(())
//! # }
//! ```

mod config;
mod trace;

use std::path::Path;

use burn::prelude::*;
use burn::tensor::activation::relu;
use nnsight::{Error, Result};
use nnsight_models::weights::Weights;

pub use config::{Architecture, Normalization, SaeConfig};
pub use trace::Splice;

/// A sparse autoencoder: `features = encode(x)`, `x ≈ decode(features)`, with SAELens' weights
/// (`W_enc [d_in, d_sae]`, `b_enc [d_sae]`, `W_dec [d_sae, d_in]`, `b_dec [d_in]`, JumpReLU's
/// `threshold [d_sae]`) and SAELens' arithmetic for each [`Architecture`] and [`Normalization`].
#[derive(Clone, Debug)]
pub struct Sae<B: Backend> {
    config: SaeConfig,
    w_enc: Tensor<B, 2>,
    b_enc: Tensor<B, 1>,
    w_dec: Tensor<B, 2>,
    b_dec: Tensor<B, 1>,
    threshold: Option<Tensor<B, 1>>,
    /// The norms of `W_dec`'s rows, `[d_sae]` (top-k with rescaling).
    row_norms: Tensor<B, 1>,
}

/// Features of some activations, `[batch, tokens, d_sae]`, with what decoding needs to restore
/// the activations' normalisation.
#[derive(Clone, Debug)]
pub struct Features<B: Backend> {
    /// The feature activations.
    pub values: Tensor<B, 3>,
    /// The normalisation undone after decoding: `(scale, shift)` per token, `[batch, tokens, 1]`.
    restore: Option<(Tensor<B, 3>, Tensor<B, 3>)>,
}

impl<B: Backend> Features<B> {
    /// The same normalisation with other feature values (an edit of these), `[batch, tokens,
    /// d_sae]`.
    ///
    /// # Errors
    /// [`Error::Input`] for values of another shape.
    pub fn with_values(&self, values: Tensor<B, 3>) -> Result<Features<B>> {
        if values.dims() != self.values.dims() {
            return Err(Error::Input {
                problem: format!(
                    "edited features are {:?}, the features {:?}",
                    values.dims(),
                    self.values.dims()
                ),
            });
        }
        Ok(Features { values, restore: self.restore.clone() })
    }
}

impl<B: Backend> Sae<B> {
    /// Loads the SAE in directory `dir` (`cfg.json`, `sae_weights.safetensors`).
    ///
    /// # Errors
    /// [`Error::Load`] for a missing or unreadable file or a configuration that cannot run;
    /// [`Error::MissingWeight`] / [`Error::BadWeight`] for a tensor that is absent or not of the
    /// shape the configuration implies.
    pub fn load(dir: impl AsRef<Path>, device: &B::Device) -> Result<Sae<B>> {
        let dir = dir.as_ref();
        let config = SaeConfig::from_file(&dir.join("cfg.json"))?;
        let weights = Weights::open(&[dir.join("sae_weights.safetensors")])?;
        let (d_in, d_sae) = (config.d_in, config.d_sae);
        let w_dec: Tensor<B, 2> = weights.tensor("W_dec", [d_sae, d_in], device)?;
        let threshold = match config.architecture {
            Architecture::JumpRelu => Some(weights.tensor("threshold", [d_sae], device)?),
            _ => None,
        };
        Ok(Sae {
            w_enc: weights.tensor("W_enc", [d_in, d_sae], device)?,
            b_enc: weights.tensor("b_enc", [d_sae], device)?,
            b_dec: weights.tensor("b_dec", [d_in], device)?,
            row_norms: w_dec.clone().square().sum_dim(1).sqrt().reshape([d_sae]),
            w_dec,
            threshold,
            config,
        })
    }

    /// What its `cfg.json` says.
    pub fn config(&self) -> &SaeConfig {
        &self.config
    }

    /// The features of activations `x` `[batch, tokens, d_in]`.
    ///
    /// # Errors
    /// [`Error::Input`] for activations of another width.
    pub fn encode(&self, x: Tensor<B, 3>) -> Result<Features<B>> {
        let [batch, tokens, width] = x.dims();
        let (d_in, d_sae) = (self.config.d_in, self.config.d_sae);
        if width != d_in {
            return Err(Error::Input {
                problem: format!(
                    "the SAE reads activations {d_in} wide; these are [{batch}, {tokens}, {width}]"
                ),
            });
        }
        let (x, restore) = match self.config.normalization {
            Normalization::None => (x, None),
            Normalization::ConstantNormRescale => {
                let norm = x.clone().square().sum_dim(2).sqrt();
                let scale = norm.clone().recip() * (d_in as f64).sqrt();
                (x * scale.clone(), Some((scale.recip(), norm.zeros_like())))
            }
            Normalization::LayerNorm => {
                let mu = x.clone().mean_dim(2);
                let centred = x - mu.clone();
                let sigma = (centred.clone().square().sum_dim(2) / (d_in.max(2) - 1) as f64).sqrt();
                (centred / (sigma.clone() + 1e-5), Some((sigma, mu)))
            }
        };
        let x =
            if self.config.apply_b_dec_to_input { x - self.b_dec.clone().reshape([1, 1, d_in]) } else { x };
        let h = x.matmul(self.w_enc.clone().unsqueeze::<3>()) + self.b_enc.clone().reshape([1, 1, d_sae]);
        let values = match self.config.architecture {
            Architecture::Standard => relu(h),
            Architecture::JumpRelu => {
                let threshold =
                    self.threshold.clone().expect("a JumpReLU SAE has a threshold").reshape([1, 1, d_sae]);
                let kept = h.clone().greater(threshold).float();
                relu(h) * kept
            }
            Architecture::TopK { k, rescale } => {
                let h = if rescale { h * self.row_norms.clone().reshape([1, 1, d_sae]) } else { h };
                let (top, indices) = h.clone().topk_with_indices(k, 2);
                h.zeros_like().scatter(2, indices, relu(top), burn::tensor::IndexingUpdateOp::Add)
            }
        };
        Ok(Features { values, restore })
    }

    /// The activations `[batch, tokens, d_in]` `features` stand for.
    ///
    /// # Errors
    /// [`Error::Input`] for features of another width.
    pub fn decode(&self, features: &Features<B>) -> Result<Tensor<B, 3>> {
        let [batch, tokens, width] = features.values.dims();
        let (d_in, d_sae) = (self.config.d_in, self.config.d_sae);
        if width != d_sae {
            return Err(Error::Input {
                problem: format!("the SAE has {d_sae} features; these are [{batch}, {tokens}, {width}]"),
            });
        }
        let mut f = features.values.clone();
        if let Architecture::TopK { rescale: true, .. } = self.config.architecture {
            f = f / self.row_norms.clone().reshape([1, 1, d_sae]);
        }
        let out = f.matmul(self.w_dec.clone().unsqueeze::<3>()) + self.b_dec.clone().reshape([1, 1, d_in]);
        Ok(match &features.restore {
            None => out,
            Some((scale, shift)) => out * scale.clone() + shift.clone(),
        })
    }

    /// `decode(encode(x))`, SAELens' `forward`.
    ///
    /// # Errors
    /// As [`encode`](Self::encode).
    pub fn reconstruct(&self, x: Tensor<B, 3>) -> Result<Tensor<B, 3>> {
        self.decode(&self.encode(x)?)
    }
}
