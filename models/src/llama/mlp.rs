//! The gated MLP of a Llama layer: `down_proj(act_fn(gate_proj(x)) · up_proj(x))`.

use std::marker::PhantomData;

use burn::prelude::*;
use nnsight::prelude::*;

use crate::projection::Projection;
use nnsight_kernels::activation::silu;

/// The MLP (`mlp`), as Hugging Face's `LlamaMLP`.
#[derive(Module, Debug, Inspectable)]
pub struct LlamaMlp<B: Backend> {
    /// Gate projection, `hidden → intermediate`.
    pub gate_proj: Projection<B>,
    /// Up projection, `hidden → intermediate`.
    pub up_proj: Projection<B>,
    /// Down projection, `intermediate → hidden`.
    pub down_proj: Projection<B>,
    /// SiLU on the gate (its output is the gate's activation, before the product with `up_proj`).
    pub act_fn: Silu<B>,
}

#[inspect]
impl<B: Backend> LlamaMlp<B> {
    /// Runs the MLP on the normalised residual stream `[batch, tokens, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = self.act_fn.forward(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

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
