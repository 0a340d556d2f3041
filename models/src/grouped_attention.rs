//! The explicit steps of grouped-query attention — scores, softmax, mix of the values — shared by
//! the decoder families that expose their attention probabilities as a site (Llama, Gemma 3).
//!
//! With fewer key/value heads than query heads, query head `h` attends with key/value head
//! `h / (heads / kv_heads)`, as transformers' `repeat_kv` arranges them; the query heads that
//! share a key/value head are stacked so that one product serves them instead of repeating keys.

use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::causal::masked_score;

/// Softmax of the scores `q·kᵀ·scaling` of the queries `q` (`[batch, heads, queries, head_dim]`)
/// against the keys `k` (`[batch, kv_heads, keys, head_dim]`), masked positions (`true` in
/// `masked`, broadcast from `[batch, 1, queries, keys]`) excluded: `[batch, heads, queries, keys]`.
pub fn probabilities<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    masked: &Tensor<B, 4, Bool>,
    scaling: f64,
) -> Tensor<B, 4> {
    let [batch, heads, queries, head_dim] = q.dims();
    let (kv_heads, keys) = (k.dims()[1], k.dims()[2]);
    let groups = heads / kv_heads;
    let grouped = q.reshape([batch, kv_heads, groups * queries, head_dim]);
    let scores = grouped.matmul(k.swap_dims(2, 3)).mul_scalar(scaling).reshape([batch, heads, queries, keys]);
    // A finite fill: a row that may attend to nothing (padding) stays finite instead of NaN.
    let fill = masked_score(scores.dtype());
    let scores = scores.mask_fill(masked.clone().expand([batch, heads, queries, keys]), fill);
    softmax(scores, 3)
}

/// The values `v` (`[batch, kv_heads, keys, head_dim]`) weighted by `probs`
/// (`[batch, heads, queries, keys]`): `[batch, heads, queries, head_dim]`.
pub fn mix<B: Backend>(probs: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 4> {
    let [batch, heads, queries, keys] = probs.dims();
    let [_, kv_heads, _, head_dim] = v.dims();
    let grouped = probs.reshape([batch, kv_heads, heads / kv_heads * queries, keys]);
    grouped.matmul(v).reshape([batch, heads, queries, head_dim])
}
