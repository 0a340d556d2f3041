//! One ViT encoder layer (pre-norm): `layernorm_before → attention → + → layernorm_after → mlp → +`.

use burn::nn::{Gelu, LayerNorm};
use burn::prelude::*;
use nnsight::prelude::*;

use super::ViTAttention;
use crate::projection::Projection;

/// An encoder layer (`layers[i]`), as Hugging Face's `ViTLayer`. Its output is the residual
/// stream after the layer.
#[derive(Module, Debug, Inspectable)]
pub struct ViTLayer<B: Backend> {
    /// Self-attention.
    pub attention: ViTAttention<B>,
    /// LayerNorm before attention.
    pub layernorm_before: LayerNorm<B>,
    /// LayerNorm before the MLP.
    pub layernorm_after: LayerNorm<B>,
    /// The MLP.
    pub mlp: ViTMlp<B>,
}

#[inspect]
impl<B: Backend> ViTLayer<B> {
    /// Runs the layer on the residual stream `x` (`[batch, tokens, hidden]`).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let attended = self.attention.forward(self.layernorm_before.forward(x.clone()));
        let x = attended + x;
        let transformed = self.mlp.forward(self.layernorm_after.forward(x.clone()));
        transformed + x
    }
}

/// The MLP (`mlp`), as Hugging Face's `ViTMLP`: `fc2(activation_fn(fc1(x)))`.
#[derive(Module, Debug, Inspectable)]
pub struct ViTMlp<B: Backend> {
    /// `hidden → intermediate`.
    pub fc1: Projection<B>,
    /// GELU (exact for `gelu`).
    pub activation_fn: Gelu,
    /// `intermediate → hidden`.
    pub fc2: Projection<B>,
}

#[inspect]
impl<B: Backend> ViTMlp<B> {
    /// Runs the MLP on the normalised residual stream.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.fc2.forward(self.activation_fn.forward(self.fc1.forward(x)))
    }
}
