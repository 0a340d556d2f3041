//! Gemma's gated MLP (GeGLU): `down_proj(gelu_tanh(gate_proj(x)) · up_proj(x))`.

use burn::prelude::*;
use nnsight::prelude::*;

use crate::gelu_tanh::GeluTanh;
use crate::projection::Projection;

/// The MLP (`mlp`), as Hugging Face's `Gemma3MLP`.
#[derive(Module, Debug, Inspectable)]
pub struct Gemma3Mlp<B: Backend> {
    /// Gate projection, `hidden → intermediate`.
    pub gate_proj: Projection<B>,
    /// Up projection, `hidden → intermediate`.
    pub up_proj: Projection<B>,
    /// Down projection, `intermediate → hidden`.
    pub down_proj: Projection<B>,
    /// GELU (tanh approximation) on the gate; its output is the gate's activation, before the
    /// product with `up_proj`.
    pub act_fn: GeluTanh<B>,
}

#[inspect]
impl<B: Backend> Gemma3Mlp<B> {
    /// Runs the MLP on the normalised residual stream `[batch, tokens, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = self.act_fn.forward(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}
