//! The encoder both CLIP towers use: pre-norm layers of self-attention (causal and padded for
//! text, over all patches for images) and an MLP.

use burn::prelude::*;
use burn::tensor::activation::{gelu, sigmoid};
use nnsight::HookPoint;
use nnsight::prelude::*;

use crate::grouped_attention::{mix, probabilities};
use crate::projection::Projection;

/// Self-attention (`self_attn`), as Hugging Face's `CLIPAttention` (eager).
#[derive(Module, Debug, Inspectable)]
pub struct ClipAttention<B: Backend> {
    /// Query projection.
    pub q_proj: Projection<B>,
    /// Key projection.
    pub k_proj: Projection<B>,
    /// Value projection.
    pub v_proj: Projection<B>,
    /// Output projection.
    pub out_proj: Projection<B>,
    /// The attention probabilities `[batch, heads, queries, keys]` pass here (`self_attn.attn_probs`).
    pub attn_probs: HookPoint,
    /// Number of heads.
    pub num_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

#[inspect]
impl<B: Backend> ClipAttention<B> {
    /// Attends over `x` (`[batch, tokens, hidden]`, normalised); `masked` is `true` where a query
    /// may not attend to a key (`[batch, 1, tokens, tokens]`; all `false` for images).
    pub fn forward(&self, x: Tensor<B, 3>, masked: &Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        let [batch, tokens, _] = x.dims();
        let split =
            |t: Tensor<B, 3>| t.reshape([batch, tokens, self.num_heads, self.head_dim]).swap_dims(1, 2);
        let q = split(self.q_proj.forward(x.clone()));
        let k = split(self.k_proj.forward(x.clone()));
        let v = split(self.v_proj.forward(x));
        let scaling = (self.head_dim as f64).powf(-0.5);
        let probs = self.attn_probs.forward(probabilities(q, k, masked, scaling));
        let mixed = mix(probs, v).swap_dims(1, 2).reshape([batch, tokens, self.num_heads * self.head_dim]);
        self.out_proj.forward(mixed)
    }
}

/// The MLP's activation (`mlp.activation_fn`): OpenAI's `quick_gelu`, `x · sigmoid(1.702 x)`, or
/// the exact GELU.
#[derive(Module, Debug, Inspectable)]
pub struct ClipActivation<B: Backend> {
    /// Whether it is `quick_gelu` (else `gelu`).
    pub quick: bool,
    _backend: core::marker::PhantomData<B>,
}

#[inspect]
impl<B: Backend> ClipActivation<B> {
    /// The activation, element-wise.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        if self.quick { x.clone() * sigmoid(x.mul_scalar(1.702)) } else { gelu(x) }
    }
}

impl<B: Backend> ClipActivation<B> {
    /// `quick_gelu` when `quick`, else `gelu`.
    pub fn new(quick: bool) -> Self {
        ClipActivation { quick, _backend: core::marker::PhantomData }
    }
}

/// The MLP (`mlp`), as Hugging Face's `CLIPMLP`: `fc2(activation_fn(fc1(x)))`.
#[derive(Module, Debug, Inspectable)]
pub struct ClipMlp<B: Backend> {
    /// `hidden → intermediate`.
    pub fc1: Projection<B>,
    /// The activation.
    pub activation_fn: ClipActivation<B>,
    /// `intermediate → hidden`.
    pub fc2: Projection<B>,
}

#[inspect]
impl<B: Backend> ClipMlp<B> {
    /// Runs the MLP on the normalised residual stream.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.fc2.forward(self.activation_fn.forward(self.fc1.forward(x)))
    }
}

/// An encoder layer (`encoder.layers[i]`), as Hugging Face's `CLIPEncoderLayer`:
/// `x + self_attn(layer_norm1(x))`, then `x + mlp(layer_norm2(x))`.
#[derive(Module, Debug, Inspectable)]
pub struct ClipEncoderLayer<B: Backend> {
    /// LayerNorm before attention.
    pub layer_norm1: burn::nn::LayerNorm<B>,
    /// Self-attention.
    pub self_attn: ClipAttention<B>,
    /// LayerNorm before the MLP.
    pub layer_norm2: burn::nn::LayerNorm<B>,
    /// The MLP.
    pub mlp: ClipMlp<B>,
}

#[inspect]
impl<B: Backend> ClipEncoderLayer<B> {
    /// The residual stream after the layer.
    pub fn forward(&self, x: Tensor<B, 3>, masked: &Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x), masked);
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}

/// The layers (`encoder`), as Hugging Face's `CLIPEncoder`.
#[derive(Module, Debug, Inspectable)]
pub struct ClipEncoder<B: Backend> {
    /// The layers.
    pub layers: Vec<ClipEncoderLayer<B>>,
}

#[inspect]
impl<B: Backend> ClipEncoder<B> {
    /// Runs every layer on `x`.
    pub fn forward(&self, x: Tensor<B, 3>, masked: &Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        let mut x = x;
        for layer in &self.layers {
            x = layer.forward(x, masked);
        }
        x
    }
}
