//! The gated MLP of a Llama layer: `down_proj(act_fn(gate_proj(x)) · up_proj(x))`.

use burn::prelude::*;
use nnsight::prelude::*;

use crate::projection::Projection;
use crate::silu::Silu;

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
