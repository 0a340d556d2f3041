//! The CLIP model: both towers, their projections into one space, and the similarity logits.

use burn::module::Param;
use burn::prelude::*;
use nnsight::prelude::*;

use super::{ClipTextModel, ClipVisionModel};
use crate::projection::Projection;

/// A CLIP model, module for module as Hugging Face's `CLIPModel`: `text_model`, `vision_model`,
/// `text_projection`, `visual_projection`, `logit_scale`.
///
/// `forward(input_ids, attention_mask, pixel_values)` returns `logits_per_image` `[images,
/// texts]`: the cosine similarity of every image's and text's projected summaries, times
/// `exp(logit_scale)` (its transpose is `logits_per_text`). Both towers run in the one forward
/// pass, so one trace reaches into both: `text_model.encoder.layers[i]`,
/// `vision_model.encoder.layers[i].self_attn.attn_probs`, `text_projection` (output: the texts'
/// embeddings before normalisation), …
///
/// Its input is two batches (the tower fields declare their parts): [`tracer`](Self::tracer)
/// takes texts and images as invokes of their own tower.
#[derive(Module, Debug, Inspectable)]
pub struct ClipModel<B: Backend> {
    /// The text tower.
    #[inspect(part = 0)]
    pub text_model: ClipTextModel<B>,
    /// The vision tower.
    #[inspect(part = 1)]
    pub vision_model: ClipVisionModel<B>,
    /// `vision hidden → projection_dim`, no bias.
    #[inspect(part = 1)]
    pub visual_projection: Projection<B>,
    /// `text hidden → projection_dim`, no bias.
    #[inspect(part = 0)]
    pub text_projection: Projection<B>,
    /// The logits' temperature, as its logarithm (a scalar `[1]`).
    pub logit_scale: Param<Tensor<B, 1>>,
}

#[inspect]
impl<B: Backend> ClipModel<B> {
    /// `logits_per_image` `[images, texts]` of the texts `input_ids` (`[texts, tokens]`, with
    /// their `attention_mask`) and the images `pixel_values` (`[images, channels, h, w]`).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        pixel_values: Tensor<B, 4>,
    ) -> Tensor<B, 2> {
        let (_, image) = self.vision_model.forward(pixel_values);
        let image_embeds = self.visual_projection.forward(image);
        let (_, text) = self.text_model.forward(input_ids, attention_mask);
        let text_embeds = self.text_projection.forward(text);
        let (image_embeds, text_embeds) = (unit(image_embeds), unit(text_embeds));
        let scale = self.logit_scale.val().exp().reshape([1, 1]);
        image_embeds.matmul(text_embeds.transpose()) * scale
    }
}

/// Each row divided by its Euclidean norm (transformers' `_get_vector_norm`).
fn unit<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().square().sum_dim(1).sqrt();
    x / norm
}
