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
/// the explicit steps within float rounding at every query that may attend to some key. A query
/// that may attend to none (padding) attends to its own key here (the explicit steps give it the
/// mean of the values; its rows are never read): a fully masked row would be NaN on LibTorch, and
/// NaN keys and values would reach the real rows through the masked scores.
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
    let device = q.device();
    // The key of each query's own position (the new positions are the last `queries` keys).
    let own =
        |positions: Tensor<B, 1, Int>, shape: [usize; 2]| positions.reshape(shape).expand([queries, keys]);
    let query_at = own(Tensor::arange((keys - queries) as i64..keys as i64, &device), [queries, 1]);
    let key_at = own(Tensor::arange(0..keys as i64, &device), [1, keys]);
    let itself = query_at.equal(key_at).unsqueeze::<4>().expand([batch, heads, queries, keys]);
    let mask = masked.clone().expand([batch, heads, queries, keys]).bool_and(itself.bool_not());
    // burn-tch 0.21 hands the mask to PyTorch's scaled_dot_product_attention, whose boolean mask
    // marks the keys a query *may* attend to — the opposite of burn's convention (`true`: masked
    // out). The fused-attention tests compare both paths on each backend, so a fix upstream
    // shows there.
    let mask = if B::name(&device).starts_with("libtorch") { mask.bool_not() } else { mask };
    let options = AttentionModuleOptions { scale: Some(scale), softcap: None, is_causal: false };
    attention(q, repeat(k), repeat(v), Some(mask), None, options)
}
