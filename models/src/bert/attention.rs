//! BERT's attention block: multi-head self-attention over the unpadded tokens, then the output
//! projection, residual and LayerNorm.

use burn::nn::LayerNorm;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use nnsight::HookPoint;
use nnsight::prelude::*;

use crate::projection::Projection;

/// `encoder.layer[i].attention`, as Hugging Face's `BertAttention`: `self` (the attention) and
/// `output` (projection, residual, LayerNorm).
#[derive(Module, Debug, Inspectable)]
pub struct BertAttention<B: Backend> {
    /// The self-attention (`self` in the checkpoint and the path; `self_` in Rust).
    #[inspect(rename = "self")]
    pub self_: BertSelfAttention<B>,
    /// Output projection, residual and LayerNorm.
    pub output: BertSelfOutput<B>,
}

#[inspect]
impl<B: Backend> BertAttention<B> {
    /// The attention block on `x` (`[batch, tokens, hidden]`); `masked` is `true` for the padding
    /// keys (`[batch, 1, 1, tokens]`).
    pub fn forward(&self, x: Tensor<B, 3>, masked: &Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        let attended = self.self_.forward(x.clone(), masked);
        self.output.forward(attended, x)
    }
}

/// `attention.self`, as Hugging Face's `BertSelfAttention`.
#[derive(Module, Debug, Inspectable)]
pub struct BertSelfAttention<B: Backend> {
    /// Query projection.
    pub query: Projection<B>,
    /// Key projection.
    pub key: Projection<B>,
    /// Value projection.
    pub value: Projection<B>,
    /// The attention probabilities `[batch, heads, queries, keys]` pass here (`self.attn_probs`).
    pub attn_probs: HookPoint,
    /// Number of heads.
    pub num_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

#[inspect]
impl<B: Backend> BertSelfAttention<B> {
    /// The heads' mixed values `[batch, tokens, hidden]` (before the output projection).
    pub fn forward(&self, x: Tensor<B, 3>, masked: &Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        let [batch, tokens, _] = x.dims();
        let split =
            |t: Tensor<B, 3>| t.reshape([batch, tokens, self.num_heads, self.head_dim]).swap_dims(1, 2);
        let q = split(self.query.forward(x.clone()));
        let k = split(self.key.forward(x.clone()));
        let v = split(self.value.forward(x));
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar((self.head_dim as f64).powf(-0.5));
        let fill = crate::causal::masked_score(scores.dtype());
        let scores = scores.mask_fill(masked.clone().expand([batch, self.num_heads, tokens, tokens]), fill);
        let probs = self.attn_probs.forward(softmax(scores, 3));
        probs.matmul(v).swap_dims(1, 2).reshape([batch, tokens, self.num_heads * self.head_dim])
    }
}

/// `attention.output`, as Hugging Face's `BertSelfOutput`: `LayerNorm(dense(x) + residual)`.
#[derive(Module, Debug, Inspectable)]
pub struct BertSelfOutput<B: Backend> {
    /// Output projection.
    pub dense: Projection<B>,
    /// LayerNorm of the sum (`LayerNorm` in the path).
    #[inspect(rename = "LayerNorm")]
    pub layer_norm: LayerNorm<B>,
}

#[inspect]
impl<B: Backend> BertSelfOutput<B> {
    /// `LayerNorm(dense(x) + residual)`.
    pub fn forward(&self, x: Tensor<B, 3>, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        self.layer_norm.forward(self.dense.forward(x) + residual)
    }
}
