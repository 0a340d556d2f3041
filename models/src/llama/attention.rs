//! Grouped-query causal self-attention with rotary position embeddings.

use burn::prelude::*;
use nnsight::HookPoint;
use nnsight::prelude::*;

use super::rope::apply_rotary_pos_emb;
use crate::fused_attention::fused_attention;
use crate::kv_cache::LayerCache;
use crate::projection::Projection;

/// Self-attention (`self_attn`), as Hugging Face's `LlamaAttention` with its eager implementation.
///
/// With fewer key/value heads than query heads (grouped-query attention), query head `h` attends
/// with key/value head `h / (num_heads / num_key_value_heads)`, as transformers' `repeat_kv`
/// arranges them. The cache keeps the keys (rotated) and values of the key/value heads.
#[derive(Module, Debug, Inspectable)]
pub struct LlamaAttention<B: Backend> {
    /// Query projection, `hidden → num_heads · head_dim`.
    pub q_proj: Projection<B>,
    /// Key projection, `hidden → num_key_value_heads · head_dim`.
    pub k_proj: Projection<B>,
    /// Value projection, `hidden → num_key_value_heads · head_dim`.
    pub v_proj: Projection<B>,
    /// Output projection, `num_heads · head_dim → hidden`.
    pub o_proj: Projection<B>,
    /// The attention probabilities `[batch, heads, queries, keys]` (after softmax) pass here:
    /// read or replace them as `self_attn.attn_probs`.
    pub attn_probs: HookPoint,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads (divides `num_heads`).
    pub num_key_value_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Factor applied to the attention scores, `head_dim^-0.5`.
    pub scaling: f64,
}

#[inspect]
impl<B: Backend> LlamaAttention<B> {
    /// Attends over the cached and the new positions; `x` is the normalised residual stream
    /// `[batch, tokens, hidden]`, `position_embeddings` the `(cos, sin)` of
    /// [`LlamaRotaryEmbedding`](super::LlamaRotaryEmbedding), `masked` is `true` where a query may
    /// not attend to a key (`[batch, 1, tokens, keys]`).
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
        let q = apply_rotary_pos_emb(q, cos, sin);
        let k = apply_rotary_pos_emb(k, cos, sin);
        let (k, v) = cache.append(k, v);
        // The probabilities are a site; when nothing in the trace can touch them (or no trace
        // runs), burn's fused attention computes the same mix without making them.
        let mixed = if nnsight::unwatched!(self.attn_probs) {
            fused_attention(q, k, v, masked, self.scaling)
        } else {
            let probs = self.attn_probs.forward(self.probabilities(q, k, masked));
            self.mix(probs, v)
        };
        let mixed = mixed.swap_dims(1, 2).reshape([batch, tokens, self.num_heads * self.head_dim]);
        self.o_proj.forward(mixed)
    }
}

impl<B: Backend> LlamaAttention<B> {
    /// Query heads per key/value head.
    pub fn groups(&self) -> usize {
        self.num_heads / self.num_key_value_heads
    }

    /// `[batch, tokens, heads · head_dim]` → `[batch, heads, tokens, head_dim]`.
    pub fn split_heads(&self, x: Tensor<B, 3>, heads: usize) -> Tensor<B, 4> {
        let [batch, tokens, _] = x.dims();
        x.reshape([batch, tokens, heads, self.head_dim]).swap_dims(1, 2)
    }

    /// Softmax of the scaled scores of the queries `q` (`[batch, heads, queries, head_dim]`) against
    /// the keys `k` (`[batch, kv_heads, keys, head_dim]`), masked positions excluded:
    /// `[batch, heads, queries, keys]`.
    pub fn probabilities(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        masked: &Tensor<B, 4, Bool>,
    ) -> Tensor<B, 4> {
        crate::grouped_attention::probabilities(q, k, masked, self.scaling)
    }

    /// The values `v` (`[batch, kv_heads, keys, head_dim]`) weighted by `probs`
    /// (`[batch, heads, queries, keys]`): `[batch, heads, queries, head_dim]`.
    pub fn mix(&self, probs: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
        crate::grouped_attention::mix(probs, v)
    }
}
