//! The Mamba mixer: gated projection, causal convolution, and the selective scan
//! (`h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t`, `y_t = C_t h_t + D x_t`), written plainly as
//! transformers' `MambaMixer.slow_forward` computes it.

use burn::module::Param;
use burn::prelude::*;
use nnsight::HookPoint;
use nnsight::prelude::*;

use super::cache::{MambaLayerCache, MixerState};
use super::conv::MambaConv1d;
use crate::projection::Projection;
use crate::silu::Silu;

/// The selective-state-space mixer of a Mamba block (`backbone.layers[i].mixer`), as Hugging
/// Face's `MambaMixer`. Its parameters `A_log` and `D` of the checkpoint are the fields `a_log`
/// and `d`.
///
/// Sites besides the projections: `conv1d` (input `[batch, intermediate, tokens]`, channels first
/// as in transformers), `act` (visited twice per forward, as in transformers: on the convolution's
/// output, then on the gate), and two hook points:
/// - `ssm_states`: the SSM state after every token, `[batch, tokens, intermediate, state_size]`.
///   The scan outputs `y_t = C_t·h_t` are read from it, and its last token is the state the
///   cache carries into the next decoding step: a replacement changes both (not the recurrence
///   within this call, which has run).
/// - `gated_output`: `(y + D·x) · act(gate)`, `[batch, tokens, intermediate]`, what `out_proj`
///   projects back to the residual stream.
#[derive(Module, Debug, Inspectable)]
pub struct MambaMixer<B: Backend> {
    /// `hidden → 2 · intermediate`: the SSM's input `x` and the gate `z`.
    pub in_proj: Projection<B>,
    /// Depthwise causal convolution of `x`.
    pub conv1d: MambaConv1d<B>,
    /// SiLU, on the convolution's output and on the gate.
    pub act: Silu<B>,
    /// `intermediate → dt_rank + 2 · state_size`: the input-dependent `Δ` (low rank), `B`, `C`.
    pub x_proj: Projection<B>,
    /// `dt_rank → intermediate`: `Δ` before its softplus.
    pub dt_proj: Projection<B>,
    /// `A_log` `[intermediate, state_size]`: `A = -exp(A_log)`.
    pub a_log: Param<Tensor<B, 2>>,
    /// `D` `[intermediate]`: the skip connection `D · x`.
    pub d: Param<Tensor<B, 1>>,
    /// `intermediate → hidden`.
    pub out_proj: Projection<B>,
    /// The SSM state after every token (see the type's docs).
    pub ssm_states: HookPoint,
    /// The gated scan output, `out_proj`'s input (see the type's docs).
    pub gated_output: HookPoint,
}

#[inspect]
impl<B: Backend> MambaMixer<B> {
    /// Mixes the normalised residual stream `x` (`[batch, tokens, hidden]`) along the tokens,
    /// continuing from `cache`'s state (if any) and leaving the new state there. `mask`
    /// (`[batch, tokens]`, 1 for tokens, 0 for padding) zeroes the padding positions of
    /// `in_proj`'s input and of the convolution's output, as transformers does.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        mask: &Tensor<B, 2>,
        cache: &mut MambaLayerCache<B>,
    ) -> Tensor<B, 3> {
        let [batch, tokens, _] = x.dims();
        let [inner, state_size] = self.a_log.dims();
        let projected = self.in_proj.forward(x * mask.clone().unsqueeze_dim::<3>(2)).swap_dims(1, 2);
        let hidden = projected.clone().narrow(1, 0, inner);
        let gate = projected.narrow(1, inner, inner);

        // The convolution continues from the inputs the cache kept.
        let past = cache.get().map(|state| state.conv.clone());
        let offset = past.as_ref().map_or(0, |conv| conv.dims()[2]);
        let conv_input = match past {
            Some(conv) => Tensor::cat(vec![conv, hidden], 2),
            None => hidden,
        };
        let kept = cache.stores().then(|| self.last_conv_inputs(conv_input.clone()));
        let convolved = self.conv1d.forward(conv_input).narrow(2, offset, tokens);
        let hidden = self.act.forward(convolved) * mask.clone().unsqueeze_dim::<3>(1);

        // Selection: Δ, B, C from the input.
        let rank = self.dt_proj.weight.dims()[0];
        let parameters = self.x_proj.forward(hidden.clone().swap_dims(1, 2));
        let time_step = parameters.clone().narrow(2, 0, rank);
        let b = parameters.clone().narrow(2, rank, state_size);
        let c = parameters.narrow(2, rank + state_size, state_size);
        let delta = softplus(self.dt_proj.forward(time_step)).swap_dims(1, 2);

        // Discretisation, `[batch, intermediate, tokens, state_size]`.
        let a = self.a_log.val().exp().neg().reshape([1, inner, 1, state_size]);
        let delta4 = delta.unsqueeze_dim::<4>(3);
        let discrete_a = (a * delta4.clone()).exp();
        let delta_b_u = delta4 * b.unsqueeze_dim::<4>(1) * hidden.clone().unsqueeze_dim::<4>(3);

        // The recurrence, one token at a time.
        let mut state = match cache.get() {
            Some(previous) => previous.ssm.clone(),
            None => Tensor::zeros([batch, inner, state_size], &delta_b_u.device()),
        };
        let mut states = Vec::with_capacity(tokens);
        for t in 0..tokens {
            let step = |v: &Tensor<B, 4>| v.clone().narrow(2, t, 1).squeeze_dim::<3>(2);
            state = step(&discrete_a) * state + step(&delta_b_u);
            states.push(state.clone());
        }
        let states: Tensor<B, 4> = self.ssm_states.forward(Tensor::stack(states, 1));
        if let Some(conv) = kept {
            let ssm = states.clone().narrow(1, tokens - 1, 1).squeeze_dim::<3>(1);
            cache.set(MixerState { conv, ssm });
        }

        // Output: y_t = C_t·h_t + D·x_t, gated.
        let scanned = (states * c.unsqueeze_dim::<4>(2)).sum_dim(3).squeeze_dim::<3>(3).swap_dims(1, 2);
        let skipped = scanned + hidden * self.d.val().reshape([1, inner, 1]);
        let gated = (skipped * self.act.forward(gate)).swap_dims(1, 2);
        let gated = self.gated_output.forward(gated);
        self.out_proj.forward(gated)
    }
}

impl<B: Backend> MambaMixer<B> {
    /// The last `kernel - 1` columns of the convolution's input `[batch, intermediate, length]`,
    /// zeros in front when it is shorter: what the next token's convolution needs.
    fn last_conv_inputs(&self, input: Tensor<B, 3>) -> Tensor<B, 3> {
        let keep = self.conv1d.kernel() - 1;
        let length = input.dims()[2];
        if length >= keep {
            input.narrow(2, length - keep, keep)
        } else {
            input.pad([(0, 0), (0, 0), (keep - length, 0)], burn::tensor::ops::PadMode::Constant(0.0))
        }
    }
}

/// PyTorch's `softplus` (β = 1, threshold 20): `ln(1 + eˣ)`, and `x` itself above 20.
fn softplus<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let above = x.clone().greater_elem(20.0);
    x.clone().exp().log1p().mask_where(above, x)
}
