//! [`Silu`]: the SiLU activation `x · sigmoid(x)` as a module, so that it is a site
//! (Llama's `mlp.act_fn`, Mamba's `mixer.act`).

use std::marker::PhantomData;

use burn::prelude::*;
use nnsight::prelude::*;

use nnsight_kernels::activation::silu;

/// The SiLU activation `x · sigmoid(x)` as a module, so that it is a site (`mlp.act_fn`).
#[derive(Module, Debug, Inspectable)]
pub struct Silu<B: Backend> {
    _backend: PhantomData<B>,
}

#[inspect]
impl<B: Backend> Silu<B> {
    /// `x · sigmoid(x)`, element-wise (one vectorized pass on the CPU backend).
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        silu(x)
    }
}

impl<B: Backend> Silu<B> {
    /// The activation.
    pub fn new() -> Self {
        Silu { _backend: PhantomData }
    }
}

impl<B: Backend> Default for Silu<B> {
    fn default() -> Self {
        Self::new()
    }
}
