//! CLIP's vision tower: patches and a class embedding, a LayerNorm before the encoder (sic:
//! `pre_layrnorm`), and the class token's normalised state as the image's summary.

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm};
use burn::prelude::*;
use nnsight::prelude::*;

use super::ClipEncoder;
use crate::vit::PatchProjection;

/// `vision_model.embeddings`, as Hugging Face's `CLIPVisionEmbeddings`:
/// `[class, patch_1, …, patch_N] + position`.
#[derive(Module, Debug, Inspectable)]
pub struct ClipVisionEmbeddings<B: Backend> {
    /// The learned class embedding `[hidden]`.
    pub class_embedding: Param<Tensor<B, 1>>,
    /// The patch projection (a strided convolution without bias).
    pub patch_embedding: PatchProjection<B>,
    /// `[1 + patches, hidden]`.
    pub position_embedding: Embedding<B>,
}

#[inspect]
impl<B: Backend> ClipVisionEmbeddings<B> {
    /// `[batch, 1 + patches, hidden]` of `pixel_values` `[batch, channels, height, width]`.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 3> {
        let projected = self.patch_embedding.forward(pixel_values);
        let [batch, hidden, rows, columns] = projected.dims();
        let patches = projected.reshape([batch, hidden, rows * columns]).swap_dims(1, 2);
        let class = self.class_embedding.val().reshape([1, 1, hidden]).expand([batch, 1, hidden]);
        let tokens = 1 + rows * columns;
        let positions = Tensor::<B, 1, Int>::arange(0..tokens as i64, &patches.device()).reshape([1, tokens]);
        Tensor::cat(vec![class, patches], 1) + self.position_embedding.forward(positions)
    }
}

/// The vision tower (`vision_model`), as Hugging Face's `CLIPVisionModel`. Its output is the
/// encoder's last states `[batch, 1 + patches, hidden]` and the pooled `[batch, hidden]`: the
/// class token's state through `post_layernorm`.
#[derive(Module, Debug, Inspectable)]
pub struct ClipVisionModel<B: Backend> {
    /// Patches, class embedding, positions.
    pub embeddings: ClipVisionEmbeddings<B>,
    /// The LayerNorm before the encoder (transformers' spelling).
    pub pre_layrnorm: LayerNorm<B>,
    /// Self-attention over all tokens.
    pub encoder: ClipEncoder<B>,
    /// The LayerNorm of the pooled class token.
    pub post_layernorm: LayerNorm<B>,
}

#[inspect]
impl<B: Backend> ClipVisionModel<B> {
    /// `(last_hidden_state, pooled)` of `pixel_values`.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> (Tensor<B, 3>, Tensor<B, 2>) {
        let x = self.pre_layrnorm.forward(self.embeddings.forward(pixel_values));
        let [batch, tokens, hidden] = x.dims();
        // Every token attends to every token.
        let nothing = TensorData::new(vec![false; tokens * tokens], [1, 1, tokens, tokens]);
        let nothing = Tensor::<B, 4, Bool>::from_data(nothing, &x.device());
        let x = self.encoder.forward(x, &nothing);
        let class = x.clone().narrow(1, 0, 1);
        let pooled = self.post_layernorm.forward(class).reshape([batch, hidden]);
        (x, pooled)
    }
}
