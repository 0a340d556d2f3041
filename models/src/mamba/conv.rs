//! The mixer's depthwise convolution, as PyTorch's `nn.Conv1d(c, c, k, groups=c, padding=k-1)`.

use burn::module::Param;
use burn::prelude::*;
use nnsight::prelude::*;

/// A depthwise 1-D convolution over `[batch, channels, length]` with `kernel - 1` zeros of padding
/// on both sides (`mixer.conv1d`), as the `nn.Conv1d` of transformers' `MambaMixer`: the output has
/// `length + kernel - 1` positions, of which the first `length` are the causal convolution.
#[derive(Module, Debug, Inspectable)]
pub struct MambaConv1d<B: Backend> {
    /// One filter per channel, `[channels, 1, kernel]` (PyTorch's layout).
    pub weight: Param<Tensor<B, 3>>,
    /// `[channels]`, when the convolution has one (`use_conv_bias`).
    pub bias: Option<Param<Tensor<B, 1>>>,
}

#[inspect]
impl<B: Backend> MambaConv1d<B> {
    /// `out[c, t] = bias[c] + Σ_j weight[c, 0, j] · x[c, t + j - (kernel - 1)]` (zero outside `x`)
    /// for `t` in `0..length + kernel - 1`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, channels, length] = x.dims();
        let kernel = self.kernel();
        let padded =
            x.pad([(0, 0), (0, 0), (kernel - 1, kernel - 1)], burn::tensor::ops::PadMode::Constant(0.0));
        let out_len = length + kernel - 1;
        let weight = self.weight.val().reshape([1, channels, kernel]);
        let mut out = Tensor::zeros([batch, channels, out_len], &padded.device());
        for j in 0..kernel {
            let tap = weight.clone().narrow(2, j, 1);
            out = out + padded.clone().narrow(2, j, out_len) * tap;
        }
        match &self.bias {
            Some(bias) => out + bias.val().reshape([1, channels, 1]),
            None => out,
        }
    }
}

impl<B: Backend> MambaConv1d<B> {
    /// A convolution with `weight` `[channels, 1, kernel]` and an optional `bias` `[channels]`.
    pub fn new(weight: Tensor<B, 3>, bias: Option<Tensor<B, 1>>) -> Self {
        MambaConv1d { weight: Param::from_tensor(weight), bias: bias.map(Param::from_tensor) }
    }

    /// The kernel width.
    pub fn kernel(&self) -> usize {
        self.weight.dims()[2]
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;

    #[test]
    fn the_first_positions_are_the_causal_convolution() {
        let device = Default::default();
        // Two channels, kernel 3: channel 0 sums its last three inputs, channel 1 takes the newest.
        let weight = Tensor::<Flex, 3>::from_data([[[1.0, 1.0, 1.0]], [[0.0, 0.0, 1.0]]], &device);
        let conv = MambaConv1d::new(weight, Some(Tensor::from_data([10.0, 0.0], &device)));
        let x = Tensor::<Flex, 3>::from_data([[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]], &device);
        let out = conv.forward(x).into_data().to_vec::<f32>().unwrap();
        assert_eq!(
            out,
            [11.0, 13.0, 16.0, 19.0, 17.0, 14.0, 5.0, 6.0, 7.0, 8.0, 0.0, 0.0],
            "length + kernel - 1 = 6 positions per channel"
        );
    }
}
