//! [`GeluTanh`]: GELU with the tanh approximation as a module, so that it is a site (Gemma's
//! `mlp.act_fn`, transformers' `gelu_pytorch_tanh`).

use std::marker::PhantomData;

use burn::prelude::*;
use nnsight::prelude::*;

/// `√(2/π)`, as PyTorch's `kBeta` (`M_SQRT2 · M_2_SQRTPI · 0.5`).
const BETA: f64 = 0.797_884_560_802_865_4;
/// The cubic term's coefficient.
const KAPPA: f64 = 0.044_715;

/// GELU with the tanh approximation, `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`, as
/// PyTorch's `gelu(x, approximate="tanh")` (transformers' `gelu_pytorch_tanh`).
#[derive(Module, Debug, Inspectable)]
pub struct GeluTanh<B: Backend> {
    _backend: PhantomData<B>,
}

#[inspect]
impl<B: Backend> GeluTanh<B> {
    /// The activation, element-wise.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let inner = x.clone().powi_scalar(3).mul_scalar(KAPPA).add(x.clone()).mul_scalar(BETA);
        x.mul_scalar(0.5).mul(inner.tanh().add_scalar(1.0))
    }
}

impl<B: Backend> GeluTanh<B> {
    /// The activation.
    pub fn new() -> Self {
        GeluTanh { _backend: PhantomData }
    }
}

impl<B: Backend> Default for GeluTanh<B> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;

    #[test]
    fn matches_the_formula_and_is_near_the_exact_gelu() {
        let device = Default::default();
        let x = Tensor::<Flex, 3>::from_data([[[-3.0, -1.0, 0.0, 0.5, 2.0]]], &device);
        let values = GeluTanh::new().forward(x.clone()).into_data().to_vec::<f32>().unwrap();
        let expected = [-0.003_637_392_8f32, -0.158_808, 0.0, 0.345_714, 1.954_598];
        for (v, e) in values.iter().zip(expected) {
            assert!((v - e).abs() < 1e-5, "{v} vs {e}");
        }
    }
}
