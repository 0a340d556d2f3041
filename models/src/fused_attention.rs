//! The fused attention the families call when nothing watches their attention probabilities
//! (`nnsight::unwatched!`): burn's `attention` — flash attention on CUDA, PyTorch's scaled
//! dot-product attention on LibTorch, a tiled kernel on the CPU backend.

use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

/// `softmax(q·kᵀ·scale, masked excluded)·v` in one call: queries `q` `[batch, heads, queries,
/// head_dim]`, keys `k` and values `v` `[batch, kv_heads, keys, head_dim]` (`kv_heads` divides
/// `heads`: query head `h` attends with key/value head `h / (heads / kv_heads)`, as
/// transformers' `repeat_kv`), `masked` `true` where a query may not attend to a key (broadcast
/// to `[batch, heads, queries, keys]`). Returns `[batch, heads, queries, head_dim]`, equal to
/// the explicit steps within float rounding; a query that may attend to nothing (padding) gets
/// zeros, where the explicit steps give the mean of the values.
pub(crate) fn fused_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    masked: &Tensor<B, 4, Bool>,
    scale: f64,
) -> Tensor<B, 4> {
    let [batch, heads, queries, _] = q.dims();
    let keys = k.dims()[2];
    let repeat = |x: Tensor<B, 4>| {
        let [batch, kv_heads, keys, head_dim] = x.dims();
        if kv_heads == heads {
            return x;
        }
        x.unsqueeze_dim::<5>(2)
            .expand([batch, kv_heads, heads / kv_heads, keys, head_dim])
            .reshape([batch, heads, keys, head_dim])
    };
    let mask = masked.clone().expand([batch, heads, queries, keys]);
    let options = AttentionModuleOptions { scale: Some(scale), softcap: None, is_causal: false };
    attention(q, repeat(k), repeat(v), Some(mask), None, options)
}
