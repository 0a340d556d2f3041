//! The ViT embeddings: image patches projected to the residual stream, a CLS token in front,
//! learned position embeddings added.

use burn::module::Param;
use burn::prelude::*;
use nnsight::prelude::*;

/// `embeddings`, as Hugging Face's `ViTEmbeddings`: `[CLS, patch_1, …, patch_N] + position`.
/// `cls_token` `[1, 1, hidden]` and `position_embeddings` `[1, 1 + N, hidden]` are parameters.
#[derive(Module, Debug, Inspectable)]
pub struct ViTEmbeddings<B: Backend> {
    /// The learned CLS token `[1, 1, hidden]`.
    pub cls_token: Param<Tensor<B, 3>>,
    /// The patches and their projection.
    pub patch_embeddings: ViTPatchEmbeddings<B>,
    /// Learned position embeddings `[1, 1 + patches, hidden]` (CLS first).
    pub position_embeddings: Param<Tensor<B, 3>>,
}

#[inspect]
impl<B: Backend> ViTEmbeddings<B> {
    /// The token sequence `[batch, 1 + patches, hidden]` of `pixel_values` `[batch, channels,
    /// height, width]`.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 3> {
        let patches = self.patch_embeddings.forward(pixel_values);
        let [batch, _, hidden] = patches.dims();
        let cls = self.cls_token.val().expand([batch, 1, hidden]);
        Tensor::cat(vec![cls, patches], 1) + self.position_embeddings.val()
    }
}

/// `embeddings.patch_embeddings`, as Hugging Face's `ViTPatchEmbeddings`: the patch projection,
/// its `[batch, hidden, rows, columns]` output flattened to `[batch, patches, hidden]` (row-major).
#[derive(Module, Debug, Inspectable)]
pub struct ViTPatchEmbeddings<B: Backend> {
    /// The strided convolution that projects each patch.
    pub projection: PatchProjection<B>,
}

#[inspect]
impl<B: Backend> ViTPatchEmbeddings<B> {
    /// `[batch, patches, hidden]`.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 3> {
        let projected = self.projection.forward(pixel_values);
        let [batch, hidden, rows, columns] = projected.dims();
        projected.reshape([batch, hidden, rows * columns]).swap_dims(1, 2)
    }
}

/// `patch_embeddings.projection`: PyTorch's `nn.Conv2d(channels, hidden, kernel=patch,
/// stride=patch)`, computed as one product of each patch's pixels with the flattened kernel.
#[derive(Module, Debug, Inspectable)]
pub struct PatchProjection<B: Backend> {
    /// The kernel flattened to `[channels · patch_h · patch_w, hidden]` (PyTorch's `[hidden,
    /// channels, patch_h, patch_w]`, reshaped and transposed).
    pub weight: Param<Tensor<B, 2>>,
    /// `[hidden]`, when the convolution has one (CLIP's has none).
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// `(patch_h, patch_w)`.
    #[inspect(skip)]
    pub patch: (usize, usize),
}

#[inspect]
impl<B: Backend> PatchProjection<B> {
    /// `[batch, channels, height, width]` → `[batch, hidden, height / patch_h, width / patch_w]`.
    pub fn forward(&self, pixel_values: Tensor<B, 4>) -> Tensor<B, 4> {
        let [batch, channels, height, width] = pixel_values.dims();
        let (ph, pw) = self.patch;
        let (rows, columns) = (height / ph, width / pw);
        let hidden = self.weight.dims()[1];
        let patches = pixel_values
            .reshape([batch, channels, rows, ph, columns, pw])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([batch, rows * columns, channels * ph * pw]);
        let projected = patches.matmul(self.weight.val().unsqueeze());
        let projected = match &self.bias {
            Some(bias) => projected + bias.val().reshape([1, 1, hidden]),
            None => projected,
        };
        projected.reshape([batch, rows, columns, hidden]).permute([0, 3, 1, 2])
    }
}
