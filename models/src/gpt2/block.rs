//! One GPT-2 block: `ln_1 → attn → + → ln_2 → mlp → +`, with Hugging Face's module names.

use burn::nn::{Dropout, Gelu, LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use nnsight::prelude::*;

use crate::fused_attention::fused_attention;
use crate::kv_cache::LayerCache;
use nnsight_kernels::activation::FastGelu;
use nnsight_kernels::matmul::FastLinear;

/// A transformer block (`transformer.h[i]`). Its output is the residual stream after the block.
#[derive(Module, Debug, Inspectable)]
pub struct Gpt2Block<B: Backend> {
    /// LayerNorm before attention.
    pub ln_1: LayerNorm<B>,
    /// Causal self-attention.
    pub attn: Gpt2Attention<B>,
    /// LayerNorm before the MLP.
    pub ln_2: LayerNorm<B>,
    /// The MLP.
    pub mlp: Gpt2Mlp<B>,
}

#[inspect]
impl<B: Backend> Gpt2Block<B> {
    /// Runs the block on the residual stream `x` (`[batch, tokens, n_embd]`).
    ///
    /// `masked` is [`CausalMask::masked`](crate::causal::CausalMask::masked); `cache` receives
    /// this layer's keys and values (and supplies earlier ones).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        masked: &Tensor<B, 4, Bool>,
        cache: &mut LayerCache<B>,
    ) -> Tensor<B, 3> {
        let attended = self.attn.forward(self.ln_1.forward(x.clone()), masked, cache);
        let x = x + attended;
        let transformed = self.mlp.forward(self.ln_2.forward(x.clone()));
        x + transformed
    }
}

/// Multi-head causal self-attention (`attn`). The attention probabilities are the input of
/// `attn_dropout`, as in Hugging Face's eager implementation.
#[derive(Module, Debug, Inspectable)]
pub struct Gpt2Attention<B: Backend> {
    /// Query, key and value projection (HF `Conv1D`, weight `[n_embd, 3 * n_embd]`).
    pub c_attn: Linear<B>,
    /// Output projection.
    pub c_proj: Linear<B>,
    /// Dropout on the attention probabilities (identity at inference).
    pub attn_dropout: Dropout,
    /// Dropout on the output (identity at inference).
    pub resid_dropout: Dropout,
    /// Number of heads.
    pub n_head: usize,
    /// Factor applied to the attention scores.
    pub scale: f64,
}

#[inspect]
impl<B: Backend> Gpt2Attention<B> {
    /// Attends over the cached and the new positions; `x` is the normalised residual stream.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        masked: &Tensor<B, 4, Bool>,
        cache: &mut LayerCache<B>,
    ) -> Tensor<B, 3> {
        let [batch, tokens, width] = x.dims();
        let qkv = self.c_attn.forward_fast(x);
        let (q, k, v) = self.split_heads(qkv);
        let (k, v) = cache.append(k, v);
        // The probabilities are a site (`attn_dropout`'s input); when nothing in the trace can
        // touch them (or no trace runs), burn's fused attention computes the same mix without
        // making them.
        let mixed = if self.attn_dropout.prob == 0.0 && nnsight::unwatched!(self.attn_dropout) {
            fused_attention(q, k, v, masked, self.scale)
        } else {
            let probs = self.probabilities(q, k, masked);
            self.attn_dropout.forward(probs).matmul(v)
        };
        let mixed = mixed.swap_dims(1, 2).reshape([batch, tokens, width]);
        self.resid_dropout.forward(self.c_proj.forward_fast(mixed))
    }
}

impl<B: Backend> Gpt2Attention<B> {
    /// Splits `c_attn`'s output `[batch, tokens, 3 * width]` into queries, keys and values, each
    /// `[batch, heads, tokens, head_dim]`.
    pub fn split_heads(&self, qkv: Tensor<B, 3>) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let [batch, tokens, width3] = qkv.dims();
        let width = width3 / 3;
        let head_dim = width / self.n_head;
        let heads = |part: Tensor<B, 3>| part.reshape([batch, tokens, self.n_head, head_dim]).swap_dims(1, 2);
        let mut parts = qkv.chunk(3, 2).into_iter().map(heads);
        match (parts.next(), parts.next(), parts.next()) {
            (Some(q), Some(k), Some(v)) => (q, k, v),
            _ => unreachable!("chunk(3) yields three parts"),
        }
    }

    /// Softmax of the scaled scores of `q` against `k`, with masked positions excluded:
    /// `[batch, heads, queries, keys]`.
    pub fn probabilities(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        masked: &Tensor<B, 4, Bool>,
    ) -> Tensor<B, 4> {
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(self.scale);
        let [batch, heads, queries, keys] = scores.dims();
        // A finite fill: a row that may attend to nothing (padding) stays finite instead of NaN.
        let fill = crate::causal::masked_score(scores.dtype());
        let scores = scores.mask_fill(masked.clone().expand([batch, heads, queries, keys]), fill);
        softmax(scores, 3)
    }
}

/// The MLP (`mlp`): `c_fc → act → c_proj → dropout`.
#[derive(Module, Debug, Inspectable)]
pub struct Gpt2Mlp<B: Backend> {
    /// Up projection (HF `Conv1D`, weight `[n_embd, n_inner]`).
    pub c_fc: Linear<B>,
    /// GELU (tanh approximation for `gelu_new`).
    pub act: Gelu,
    /// Down projection.
    pub c_proj: Linear<B>,
    /// Dropout (identity at inference).
    pub dropout: Dropout,
}

#[inspect]
impl<B: Backend> Gpt2Mlp<B> {
    /// Runs the MLP on the normalised residual stream.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let hidden = self.act.forward_fast(self.c_fc.forward_fast(x));
        self.dropout.forward(self.c_proj.forward_fast(hidden))
    }
}
