//! Gemma's RMSNorm: `x / rms(x) · (1 + weight)`, computed in `f32`.

use burn::module::Param;
use burn::prelude::*;
use nnsight::prelude::*;

/// An RMSNorm as Hugging Face's `Gemma3RMSNorm`: the scale is `1 + weight` (the checkpoint stores
/// the offset from one, and initialises it to zero), applied over the last dimension of a
/// rank-`D` input — 3 for the layers' norms (`[batch, tokens, hidden]`), 4 for the attention's
/// query and key norms (`[batch, heads, tokens, head_dim]`).
#[derive(Module, Debug, Inspectable)]
pub struct Gemma3RmsNorm<B: Backend, const D: usize> {
    /// `[width]`, as `*.weight` in the checkpoint (the scale minus one).
    pub weight: Param<Tensor<B, 1>>,
    /// Added to the mean square before the square root.
    pub epsilon: f64,
}

#[inspect]
impl<B: Backend, const D: usize> Gemma3RmsNorm<B, D> {
    /// `x · rsqrt(mean(x²) + ε) · (1 + weight)` over the last dimension, in `f32` whatever the
    /// input's element type, then back to it (as transformers computes it).
    pub fn forward(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let x = x.cast(burn::tensor::FloatDType::F32);
        let mean_square = x.clone().square().mean_dim(D - 1);
        let normed = x * mean_square.add_scalar(self.epsilon).sqrt().recip();
        let scale = self.weight.val().cast(burn::tensor::FloatDType::F32).add_scalar(1.0);
        let mut shape = [1; D];
        shape[D - 1] = scale.dims()[0];
        (normed * scale.reshape(shape)).cast(dtype)
    }
}

impl<B: Backend, const D: usize> Gemma3RmsNorm<B, D> {
    /// A norm holding `weight` (`[width]`, the scale minus one).
    pub fn new(weight: Tensor<B, 1>, epsilon: f64) -> Self {
        Gemma3RmsNorm { weight: Param::from_tensor(weight), epsilon }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;

    #[test]
    fn the_scale_is_one_plus_the_weight() {
        let device = Default::default();
        let norm = Gemma3RmsNorm::<Flex, 3>::new(Tensor::from_data([0.0, 1.0], &device), 0.0);
        // rms([3, 4]) = sqrt(12.5); the second column is scaled by 2.
        let out = norm.forward(Tensor::from_data([[[3.0, 4.0]]], &device));
        let rms = 12.5f32.sqrt();
        out.into_data()
            .assert_approx_eq::<f32>(&TensorData::from([[[3.0 / rms, 8.0 / rms]]]), Default::default());
    }
}
