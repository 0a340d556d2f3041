//! One BERT encoder layer (post-norm): attention block, then `intermediate` and `output`.

use burn::nn::{Gelu, LayerNorm};
use burn::prelude::*;
use nnsight::prelude::*;

use super::BertAttention;
use crate::projection::Projection;

/// `encoder.layer[i]`, as Hugging Face's `BertLayer`. Its output is the hidden states after the
/// layer.
#[derive(Module, Debug, Inspectable)]
pub struct BertLayer<B: Backend> {
    /// Self-attention, projection, residual, LayerNorm.
    pub attention: BertAttention<B>,
    /// `hidden → intermediate` and the GELU.
    pub intermediate: BertIntermediate<B>,
    /// `intermediate → hidden`, residual, LayerNorm.
    pub output: BertOutput<B>,
}

#[inspect]
impl<B: Backend> BertLayer<B> {
    /// Runs the layer on `x` (`[batch, tokens, hidden]`); `masked` marks the padding keys.
    pub fn forward(&self, x: Tensor<B, 3>, masked: &Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        let attended = self.attention.forward(x, masked);
        let inner = self.intermediate.forward(attended.clone());
        self.output.forward(inner, attended)
    }
}

/// `intermediate`, as Hugging Face's `BertIntermediate`: `act(dense(x))`.
#[derive(Module, Debug, Inspectable)]
pub struct BertIntermediate<B: Backend> {
    /// `hidden → intermediate`.
    pub dense: Projection<B>,
    /// The GELU (`intermediate_act_fn`).
    pub intermediate_act_fn: Gelu,
}

#[inspect]
impl<B: Backend> BertIntermediate<B> {
    /// `act(dense(x))`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.intermediate_act_fn.forward(self.dense.forward(x))
    }
}

/// `output`, as Hugging Face's `BertOutput`: `LayerNorm(dense(x) + residual)`.
#[derive(Module, Debug, Inspectable)]
pub struct BertOutput<B: Backend> {
    /// `intermediate → hidden`.
    pub dense: Projection<B>,
    /// LayerNorm of the sum (`LayerNorm` in the path).
    #[inspect(rename = "LayerNorm")]
    pub layer_norm: LayerNorm<B>,
}

#[inspect]
impl<B: Backend> BertOutput<B> {
    /// `LayerNorm(dense(x) + residual)`.
    pub fn forward(&self, x: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        self.layer_norm.forward(self.dense.forward(x) + residual)
    }
}
