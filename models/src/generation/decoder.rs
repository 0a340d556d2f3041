//! [`Decoder`]: what generation needs from a causal language model.

use burn::prelude::*;

use crate::kv_cache::KvCache;
use crate::language_model::CausalLm;

/// A causal language model that can continue from a KV cache.
pub trait Decoder<B: Backend>: CausalLm<B> {
    /// Number of attention layers (the size of its [`KvCache`]).
    fn layers(&self) -> usize;

    /// Logits `[batch, 1, vocab]` of the last of `input_ids` (the new tokens), attending to the
    /// cached positions too; `attention_mask` covers the cached and the new positions. Extends
    /// `cache` with the new positions.
    fn forward_next(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3>;
}
