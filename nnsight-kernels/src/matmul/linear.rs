//! [`FastLinear`]: `Linear::forward` as one 2-D product (see the [module docs](super)).

use burn::nn::Linear;
use burn::prelude::*;

use super::matmul_last;

/// A linear layer's forward pass through [`matmul_last`]: the same result as `Linear::forward`
/// (up to the order of floating-point sums), faster on the CPU backend.
pub trait FastLinear<B: Backend> {
    /// `x · weight + bias` over the last dimension of `x` (`[.., d_input]` → `[.., d_output]`).
    fn forward_fast<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D>;
}

impl<B: Backend> FastLinear<B> for Linear<B> {
    fn forward_fast<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let y = matmul_last(x, self.weight.val());
        match &self.bias {
            Some(bias) => y + bias.val().unsqueeze(),
            None => y,
        }
    }
}
