//! Gemma 3's rotary position embedding: one rotation per attention type (the sliding layers'
//! and the full-attention layers' bases differ).

use burn::prelude::*;
use nnsight::prelude::*;

use super::{Gemma3Config, LayerType};

/// The rotation of each position (`model.rotary_emb`, as Hugging Face's `Gemma3RotaryEmbedding`):
/// called once per attention type and forward pass — sliding layers first, then full attention —
/// its output is the `(cos, sin)` pair `[batch, tokens, head_dim]` the layers of that type apply
/// to their queries and keys.
#[derive(Module, Debug, Inspectable)]
pub struct Gemma3RotaryEmbedding<B: Backend> {
    /// Inverse frequencies `[head_dim / 2]` of the sliding layers (base `rope_local_base_freq`).
    pub sliding_inv_freq: Tensor<B, 1>,
    /// Inverse frequencies `[head_dim / 2]` of the full-attention layers (base `rope_theta`,
    /// scaled as the config asks).
    pub full_inv_freq: Tensor<B, 1>,
    /// Longest sequence the model is meant for (`max_position_embeddings`).
    pub max_position_embeddings: usize,
}

#[inspect]
impl<B: Backend> Gemma3RotaryEmbedding<B> {
    /// `(cos, sin)`, each `[batch, tokens, head_dim]`, of the angles `position · inv_freq` of the
    /// layers of `layer_type` at `position_ids` (`[batch, tokens]`).
    pub fn forward(
        &self,
        position_ids: Tensor<B, 2, Int>,
        layer_type: &LayerType,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let inv_freq = match layer_type {
            LayerType::SlidingAttention => self.sliding_inv_freq.clone(),
            LayerType::FullAttention => self.full_inv_freq.clone(),
        };
        let half = inv_freq.dims()[0];
        let positions: Tensor<B, 3> = position_ids.float().unsqueeze_dim(2);
        let freqs = positions * inv_freq.reshape([1, 1, half]);
        let angles = Tensor::cat(vec![freqs.clone(), freqs], 2);
        (angles.clone().cos(), angles.sin())
    }
}

impl<B: Backend> Gemma3RotaryEmbedding<B> {
    /// The rotary embedding of `config` on `device`.
    ///
    /// # Errors
    /// [`Error::Config`](nnsight::Error::Config) when a rotary scaling is not supported.
    pub fn new(config: &Gemma3Config, device: &B::Device) -> nnsight::Result<Self> {
        let inv_freq = |layer_type| -> nnsight::Result<Tensor<B, 1>> {
            let (theta, scaling) = config.rope(layer_type)?;
            let values = crate::llama::inv_freq(config.head_dim, theta, scaling);
            let len = values.len();
            Ok(Tensor::from_data(TensorData::new(values, [len]), device))
        };
        Ok(Gemma3RotaryEmbedding {
            sliding_inv_freq: inv_freq(LayerType::SlidingAttention)?,
            full_inv_freq: inv_freq(LayerType::FullAttention)?,
            max_position_embeddings: config.max_position_embeddings,
        })
    }
}
