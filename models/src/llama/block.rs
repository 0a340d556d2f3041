//! One Llama decoder layer: `input_layernorm → self_attn → + → post_attention_layernorm → mlp → +`.

use burn::nn::RmsNorm;
use burn::prelude::*;
use nnsight::prelude::*;

use super::{LlamaAttention, LlamaMlp};
use crate::kv_cache::LayerCache;

/// A decoder layer (`model.layers[i]`), as Hugging Face's `LlamaDecoderLayer`. Its output is the
/// residual stream after the layer.
#[derive(Module, Debug, Inspectable)]
pub struct LlamaDecoderLayer<B: Backend> {
    /// RMSNorm before attention.
    pub input_layernorm: RmsNorm<B>,
    /// Grouped-query self-attention.
    pub self_attn: LlamaAttention<B>,
    /// RMSNorm before the MLP.
    pub post_attention_layernorm: RmsNorm<B>,
    /// The gated MLP.
    pub mlp: LlamaMlp<B>,
}

#[inspect]
impl<B: Backend> LlamaDecoderLayer<B> {
    /// Runs the layer on the residual stream `x` (`[batch, tokens, hidden]`).
    ///
    /// `position_embeddings` is the `(cos, sin)` of [`LlamaRotaryEmbedding`](super::LlamaRotaryEmbedding),
    /// `masked` the keys each query may not attend to; `cache` receives this layer's keys and
    /// values (and supplies earlier ones).
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        position_embeddings: &(Tensor<B, 3>, Tensor<B, 3>),
        masked: &Tensor<B, 4, Bool>,
        cache: &mut LayerCache<B>,
    ) -> Tensor<B, 3> {
        let attended = self.self_attn.forward(
            self.input_layernorm.forward(x.clone()),
            position_embeddings,
            masked,
            cache,
        );
        let x = x + attended;
        let transformed = self.mlp.forward(self.post_attention_layernorm.forward(x.clone()));
        x + transformed
    }
}
