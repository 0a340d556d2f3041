//! [`Projection`]: a linear layer whose weight may also be kept as GGUF blocks.
//!
//! The same parameters and layout as burn's `Linear` (`weight` `[in, out]`, optional `bias`), so a
//! checkpoint loads into it as into a `Linear` and `q_proj.weight` reads the same tensor. A model
//! loaded from a GGUF file gives each Q4_0 / Q4_1 / Q8_0 projection its own blocks
//! ([`WeightBlocks`]); products with few rows (decoding steps, short prompts) read those instead of
//! the `f32` weight, while the weight is the one the blocks were made for. The blocks go with the
//! module: dropping the model frees them, and nothing outside it knows of them.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use nnsight::inspect::{NodeId, TraceState};
use nnsight::{DynEnvoy, Inspectable};

use nnsight_kernels::matmul::{WeightBlocks, matmul_last_with};

/// A linear projection `x · weight + bias`, computed as one 2-D product over all rows (see
/// [`nnsight_kernels::matmul`]), from the weight's GGUF blocks where the projection has them.
///
/// A site like burn's `Linear`: its envoy is rank-generic (`q_proj.output::<Tensor<B, 3>>()`).
#[derive(Module, Debug)]
pub struct Projection<B: Backend> {
    /// `[d_input, d_output]`, as burn's `Linear` stores it (the transpose of `nn.Linear`'s).
    pub weight: Param<Tensor<B, 2>>,
    /// `[d_output]`, when the projection has one.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// The weight's GGUF blocks, when the model came from a GGUF file of a type the kernel reads.
    #[module(skip)]
    blocks: Option<WeightBlocks>,
}

impl<B: Backend> Projection<B> {
    /// A projection with `weight` `[d_input, d_output]` and an optional `bias`.
    pub fn new(weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Self {
        Projection { weight: Param::from_tensor(weight), bias: bias.map(Param::from_tensor), blocks: None }
    }

    /// `x · weight + bias` over the last dimension of `x` (`[.., d_input]` → `[.., d_output]`).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let y = matmul_last_with(x, self.weight.val(), self.blocks.as_ref());
        match &self.bias {
            Some(bias) => y + bias.val().unsqueeze(),
            None => y,
        }
    }

    /// Gives the projection its weight's GGUF blocks.
    pub fn keep_blocks(&mut self, blocks: WeightBlocks) {
        self.blocks = Some(blocks);
    }

    /// Whether the projection has GGUF blocks (they are read only while the weight is unchanged).
    pub fn has_blocks(&self) -> bool {
        self.blocks.is_some()
    }
}

impl<B: Backend> From<Linear<B>> for Projection<B> {
    fn from(linear: Linear<B>) -> Self {
        Projection { weight: linear.weight, bias: linear.bias, blocks: None }
    }
}

impl<B: Backend> Inspectable for Projection<B> {
    type Envoy<'t> = DynEnvoy<'t>;

    fn envoy(state: &TraceState, node: NodeId) -> DynEnvoy<'_> {
        DynEnvoy::new(state, node)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::nn::LinearConfig;

    use super::*;

    #[test]
    fn a_projection_computes_what_burns_linear_computes() {
        let device = Default::default();
        let linear: Linear<Flex> = LinearConfig::new(6, 4).init(&device);
        let x = Tensor::<Flex, 3>::random([2, 3, 6], burn::tensor::Distribution::Default, &device);
        let expected = linear.forward(x.clone()).into_data();
        let got = Projection::from(linear).forward(x).into_data();
        got.assert_approx_eq::<f32>(&expected, burn::tensor::Tolerance::absolute(1e-6));
    }
}
