//! ViT self-attention: bidirectional, every token attends to every token.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use nnsight::HookPoint;
use nnsight::prelude::*;

use crate::projection::Projection;

/// Self-attention (`layers[i].attention`), as Hugging Face's `ViTAttention` (transformers ≥ 5
/// names: `q_proj`, `k_proj`, `v_proj`, `o_proj`).
#[derive(Module, Debug, Inspectable)]
pub struct ViTAttention<B: Backend> {
    /// Query projection.
    pub q_proj: Projection<B>,
    /// Key projection.
    pub k_proj: Projection<B>,
    /// Value projection.
    pub v_proj: Projection<B>,
    /// Output projection.
    pub o_proj: Projection<B>,
    /// The attention probabilities `[batch, heads, queries, keys]` (after softmax) pass here:
    /// read or replace them as `attention.attn_probs`.
    pub attn_probs: HookPoint,
    /// Number of heads.
    pub num_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

#[inspect]
impl<B: Backend> ViTAttention<B> {
    /// Attends over all tokens of `x` (`[batch, tokens, hidden]`, normalised).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, tokens, _] = x.dims();
        let q = self.split_heads(self.q_proj.forward(x.clone()));
        let k = self.split_heads(self.k_proj.forward(x.clone()));
        let v = self.split_heads(self.v_proj.forward(x));
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar((self.head_dim as f64).powf(-0.5));
        let probs = self.attn_probs.forward(softmax(scores, 3));
        let mixed = probs.matmul(v).swap_dims(1, 2).reshape([batch, tokens, self.num_heads * self.head_dim]);
        self.o_proj.forward(mixed)
    }
}

impl<B: Backend> ViTAttention<B> {
    /// `[batch, tokens, heads · head_dim]` → `[batch, heads, tokens, head_dim]`.
    fn split_heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [batch, tokens, _] = x.dims();
        x.reshape([batch, tokens, self.num_heads, self.head_dim]).swap_dims(1, 2)
    }
}
