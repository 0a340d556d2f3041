//! [`Decoder`]: what generation needs from a causal language model.

use burn::prelude::*;

use crate::language_model::CausalLm;

/// A causal language model that can continue from what earlier tokens left behind: a KV cache
/// for attention models, the convolution and SSM states for Mamba.
pub trait Decoder<B: Backend>: CausalLm<B> {
    /// What a decoding loop carries from one step to the next.
    type Cache;

    /// An empty cache that keeps what each forward pass computes.
    fn new_cache(&self) -> Self::Cache;

    /// Logits `[batch, 1, vocab]` of the last of `input_ids` (the new tokens), continuing from
    /// the cached positions; `attention_mask` covers the cached and the new positions. Extends
    /// `cache` with the new positions.
    fn forward_next(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        cache: &mut Self::Cache,
    ) -> Tensor<B, 3>;
}
