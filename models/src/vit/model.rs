//! The ViT models: the encoder (`ViTModel`, with an optional pooler) and the image classifier
//! (`ViTForImageClassification`: `vit` + `classifier` on the CLS token).

use burn::nn::LayerNorm;
use burn::prelude::*;
use burn::tensor::activation::tanh;
use nnsight::prelude::*;
use nnsight::{Error, Result};

use super::{ViTEmbeddings, ViTLayer};
use crate::projection::Projection;

/// The ViT encoder, as Hugging Face's `ViTModel` (transformers ≥ 5 names: `layers[i]`, not
/// `encoder.layer[i]`).
///
/// `forward(pixel_values)` returns `(last_hidden_state, pooler_output)`: the final normalised
/// tokens `[batch, 1 + patches, hidden]` (CLS first) and, with a pooler, `tanh(dense(CLS))`
/// `[batch, pooler_output_size]`.
#[derive(Module, Debug, Inspectable)]
pub struct ViTModel<B: Backend> {
    /// Patches, CLS token, positions.
    pub embeddings: ViTEmbeddings<B>,
    /// The encoder layers.
    pub layers: Vec<ViTLayer<B>>,
    /// Final LayerNorm.
    pub layernorm: LayerNorm<B>,
    /// The pooler, when the checkpoint has one.
    pub pooler: Option<ViTPooler<B>>,
    /// `(height, width)` the position embeddings were learned for.
    #[inspect(skip)]
    pub image_size: (usize, usize),
    /// Channels of the input image.
    #[inspect(skip)]
    pub num_channels: usize,
}

#[inspect]
impl<B: Backend> ViTModel<B> {
    /// `(last_hidden_state, pooler_output)` of `pixel_values` `[batch, channels, height, width]`
    /// (see [`check_pixel_values`](Self::check_pixel_values)).
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> (Tensor<B, 3>, Option<Tensor<B, 2>>) {
        let mut x = self.embeddings.forward(pixel_values);
        for layer in &self.layers {
            x = layer.forward(x);
        }
        let sequence = self.layernorm.forward(x);
        let pooled = self.pooler.as_ref().map(|pooler| pooler.forward(sequence.clone()));
        (sequence, pooled)
    }
}

impl<B: Backend> ViTModel<B> {
    /// Checks that `pixel_values` is `[batch ≥ 1, num_channels, height, width]` of the size the
    /// model was trained on (transformers raises the same way without `interpolate_pos_encoding`),
    /// with finite values: call it before a trace on pixels that did not come from the model's
    /// [`ImageProcessor`](crate::vision::ImageProcessor).
    ///
    /// # Errors
    /// [`Error::Input`] naming the expected and the given shape, or the first non-finite value.
    pub fn check_pixel_values(&self, pixel_values: &Tensor<B, 4>) -> Result<()> {
        let [batch, channels, height, width] = pixel_values.dims();
        let (h, w) = self.image_size;
        if batch == 0 || channels != self.num_channels || (height, width) != (h, w) {
            return Err(Error::Input {
                problem: format!(
                    "pixel_values are [{batch}, {channels}, {height}, {width}]; this ViT takes [batch ≥ 1, {}, {h}, {w}]",
                    self.num_channels
                ),
            });
        }
        let values = pixel_values.to_data().convert::<f32>();
        let values =
            values.as_slice::<f32>().map_err(|e| Error::Input { problem: format!("pixel_values: {e:?}") })?;
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::Input { problem: format!("pixel value {i} is {}", values[i]) });
        }
        Ok(())
    }
}

/// The pooler (`pooler`), as Hugging Face's `ViTPooler`: `tanh(dense(CLS token))`.
#[derive(Module, Debug, Inspectable)]
pub struct ViTPooler<B: Backend> {
    /// `hidden → pooler_output_size`.
    pub dense: Projection<B>,
}

#[inspect]
impl<B: Backend> ViTPooler<B> {
    /// `[batch, pooler_output_size]` from the CLS token of `hidden` `[batch, tokens, hidden]`.
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, _, width] = hidden.dims();
        tanh(self.dense.forward(hidden.narrow(1, 0, 1).reshape([batch, width])))
    }
}

/// A ViT image classifier, as Hugging Face's `ViTForImageClassification`: the encoder (without
/// pooler) and a linear `classifier` on the final CLS token. `forward(pixel_values)` returns the
/// class logits `[batch, num_labels]`.
///
/// Paths as in nnsight (transformers ≥ 5): `vit.embeddings`, `vit.layers[i]` (output = residual
/// stream `[batch, 1 + patches, hidden]`, CLS at token 0), `vit.layers[i].attention.{q_proj,
/// k_proj, v_proj, o_proj, attn_probs}`, `vit.layers[i].mlp.{fc1, activation_fn, fc2}`,
/// `vit.layernorm`, `classifier`.
#[derive(Module, Debug, Inspectable)]
pub struct ViTForImageClassification<B: Backend> {
    /// The encoder.
    pub vit: ViTModel<B>,
    /// `hidden → num_labels`.
    pub classifier: Projection<B>,
    /// Class names by index.
    #[inspect(skip)]
    pub labels: Vec<String>,
}

#[inspect]
impl<B: Backend> ViTForImageClassification<B> {
    /// Class logits `[batch, num_labels]` of `pixel_values` `[batch, channels, height, width]`.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 2> {
        let (sequence, _) = self.vit.forward(pixel_values);
        let [batch, _, width] = sequence.dims();
        self.classifier.forward(sequence.narrow(1, 0, 1).reshape([batch, width]))
    }
}

impl<B: Backend> ViTForImageClassification<B> {
    /// See [`ViTModel::check_pixel_values`].
    ///
    /// # Errors
    /// As [`ViTModel::check_pixel_values`].
    pub fn check_pixel_values(&self, pixel_values: &Tensor<B, 4>) -> Result<()> {
        self.vit.check_pixel_values(pixel_values)
    }
}
