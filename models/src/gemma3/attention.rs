//! Gemma 3's self-attention: grouped-query attention with RMS-normed queries and keys, scores
//! scaled by `query_pre_attn_scalar^-0.5`, and a sliding window on the sliding layers.

use burn::prelude::*;
use nnsight::HookPoint;
use nnsight::prelude::*;

use super::{Gemma3RmsNorm, LayerType};
use crate::fused_attention::fused_attention;
use crate::grouped_attention::{mix, probabilities};
use crate::kv_cache::LayerCache;
use crate::llama::apply_rotary_pos_emb;
use crate::projection::Projection;

/// Self-attention (`self_attn`), as Hugging Face's `Gemma3Attention` with its eager
/// implementation: the heads' queries and keys pass `q_norm` / `k_norm` before the rotation.
#[derive(Module, Debug, Inspectable)]
pub struct Gemma3Attention<B: Backend> {
    /// Query projection, `hidden → num_heads · head_dim`.
    pub q_proj: Projection<B>,
    /// Key projection, `hidden → num_key_value_heads · head_dim`.
    pub k_proj: Projection<B>,
    /// Value projection, `hidden → num_key_value_heads · head_dim`.
    pub v_proj: Projection<B>,
    /// Output projection, `num_heads · head_dim → hidden`.
    pub o_proj: Projection<B>,
    /// RMSNorm of each query head, `[batch, heads, tokens, head_dim]`.
    pub q_norm: Gemma3RmsNorm<B, 4>,
    /// RMSNorm of each key head, `[batch, kv_heads, tokens, head_dim]`.
    pub k_norm: Gemma3RmsNorm<B, 4>,
    /// The attention probabilities `[batch, heads, queries, keys]` (after softmax) pass here:
    /// read or replace them as `self_attn.attn_probs`.
    pub attn_probs: HookPoint,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (divides `num_heads`).
    pub num_key_value_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Factor applied to the attention scores, `query_pre_attn_scalar^-0.5`.
    pub scaling: f64,
    /// Whether this layer attends to a sliding window or to everything.
    #[module(skip)]
    pub layer_type: LayerType,
}

#[inspect]
impl<B: Backend> Gemma3Attention<B> {
    /// Attends over the cached and the new positions; `x` is the normalised residual stream
    /// `[batch, tokens, hidden]`, `position_embeddings` the `(cos, sin)` of this layer's type,
    /// `masked` is `true` where a query may not attend to a key (`[batch, 1, tokens, keys]`,
    /// the window already applied on a sliding layer).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        position_embeddings: &(Tensor<B, 3>, Tensor<B, 3>),
        masked: &Tensor<B, 4, Bool>,
        cache: &mut LayerCache<B>,
    ) -> Tensor<B, 3> {
        let [batch, tokens, _] = x.dims();
        let (cos, sin) = position_embeddings;
        let q = self.split_heads(self.q_proj.forward(x.clone()), self.num_heads);
        let k = self.split_heads(self.k_proj.forward(x.clone()), self.num_key_value_heads);
        let v = self.split_heads(self.v_proj.forward(x), self.num_key_value_heads);
        let q = apply_rotary_pos_emb(self.q_norm.forward(q), cos, sin);
        let k = apply_rotary_pos_emb(self.k_norm.forward(k), cos, sin);
        let (k, v) = cache.append(k, v);
        // The probabilities are a site; when nothing in the trace can touch them (or no trace
        // runs), burn's fused attention computes the same mix without making them.
        let mixed = if nnsight::unwatched!(self.attn_probs) {
            fused_attention(q, k, v, masked, self.scaling)
        } else {
            let probs = self.attn_probs.forward(probabilities(q, k, masked, self.scaling));
            mix(probs, v)
        };
        let mixed = mixed.swap_dims(1, 2).reshape([batch, tokens, self.num_heads * self.head_dim]);
        self.o_proj.forward(mixed)
    }
}

impl<B: Backend> Gemma3Attention<B> {
    /// `[batch, tokens, heads · head_dim]` → `[batch, heads, tokens, head_dim]`.
    pub fn split_heads(&self, x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
        let [batch, tokens, _] = x.dims();
        x.reshape([batch, tokens, heads, self.head_dim]).swap_dims(1, 2)
    }
}
