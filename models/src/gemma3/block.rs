//! One Gemma 3 decoder layer: norms before and after both attention and MLP (a "sandwich").

use burn::prelude::*;
use nnsight::prelude::*;

use super::{Gemma3Attention, Gemma3Mlp, Gemma3RmsNorm};
use crate::kv_cache::LayerCache;

/// A decoder layer (`model.layers[i]`), as Hugging Face's `Gemma3DecoderLayer`:
/// `x + post_attention_layernorm(self_attn(input_layernorm(x)))`, then
/// `x + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(x)))`. Its output is the
/// residual stream after the layer.
#[derive(Module, Debug, Inspectable)]
pub struct Gemma3DecoderLayer<B: Backend> {
    /// RMSNorm before attention.
    pub input_layernorm: Gemma3RmsNorm<B, 3>,
    /// Self-attention (sliding or full, as the layer's type says).
    pub self_attn: Gemma3Attention<B>,
    /// RMSNorm of the attention's output, before it is added to the residual stream.
    pub post_attention_layernorm: Gemma3RmsNorm<B, 3>,
    /// RMSNorm before the MLP.
    pub pre_feedforward_layernorm: Gemma3RmsNorm<B, 3>,
    /// The GeGLU MLP.
    pub mlp: Gemma3Mlp<B>,
    /// RMSNorm of the MLP's output, before it is added to the residual stream.
    pub post_feedforward_layernorm: Gemma3RmsNorm<B, 3>,
}

#[inspect]
impl<B: Backend> Gemma3DecoderLayer<B> {
    /// Runs the layer on the residual stream `x` (`[batch, tokens, hidden]`); see
    /// [`Gemma3Attention::forward`] for the other arguments.
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
        let x = x + self.post_attention_layernorm.forward(attended);
        let transformed = self.mlp.forward(self.pre_feedforward_layernorm.forward(x.clone()));
        x + self.post_feedforward_layernorm.forward(transformed)
    }
}
