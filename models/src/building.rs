//! Building the layers every family shares — projections and norms — from the tensors of a
//! [`Scope`] (Hugging Face names: `weight`, `bias`), so that each family's loader names only what
//! is its own.

use burn::module::Param;
use burn::nn::{LayerNorm, LayerNormConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;

use std::path::Path;

use nnsight::{Error, Result};

use crate::projection::Projection;
use crate::weights::{Kind, Scope, TensorSource, Weights};

/// Checks that `weights` hold no layer of the list `list` past the `count` the config at
/// `config` gives as `field`, so that a checkpoint with more layers than its config is an error
/// rather than a model with some layers silently left out.
///
/// # Errors
/// [`Error::Load`] naming the config, the field, and the first tensor past the last layer.
pub(crate) fn check_layer_count(
    weights: &Weights,
    lists: &[&str],
    count: usize,
    config: &Path,
    field: &str,
) -> Result<()> {
    match lists.iter().find_map(|list| weights.past_layers(list, count)) {
        Some(name) => Err(Error::Load {
            source_name: config.display().to_string(),
            problem: format!(
                "{field} is {count} but {} holds `{name}`: the config and the weights disagree",
                weights.describe()
            ),
        }),
        None => Ok(()),
    }
}

/// An `nn.Linear` `d_in → d_out` (weight `[out, in]` in the checkpoint, `[in, out]` in burn), with
/// its `bias` when it has one.
pub(crate) fn projection<B: Backend, S: TensorSource<B>>(
    vb: &Scope<'_, S>,
    d_in: usize,
    d_out: usize,
    bias: bool,
) -> Result<Projection<B>> {
    let weight = vb.linear_weight("weight", d_in, d_out)?;
    let bias = if bias { Some(vb.get("bias", [d_out], Kind::Bias)?) } else { None };
    Ok(Projection::new(weight, bias))
}

/// An RMSNorm of width `d` (its `weight`).
pub(crate) fn rms_norm<B: Backend, S: TensorSource<B>>(
    vb: &Scope<'_, S>,
    d: usize,
    epsilon: f64,
) -> Result<RmsNorm<B>> {
    let gamma = vb.get("weight", [d], Kind::NormScale)?;
    let mut norm = RmsNormConfig::new(d).with_epsilon(epsilon).init(&gamma.device());
    norm.gamma = Param::from_tensor(gamma);
    Ok(norm)
}

/// A LayerNorm of width `d` (its `weight` and `bias`).
pub(crate) fn layer_norm<B: Backend, S: TensorSource<B>>(
    vb: &Scope<'_, S>,
    d: usize,
    epsilon: f64,
) -> Result<LayerNorm<B>> {
    let gamma = vb.get("weight", [d], Kind::NormScale)?;
    let beta = vb.get("bias", [d], Kind::Bias)?;
    let mut norm = LayerNormConfig::new(d).with_epsilon(epsilon).init(&gamma.device());
    norm.gamma = Param::from_tensor(gamma);
    norm.beta = Some(Param::from_tensor(beta));
    Ok(norm)
}
