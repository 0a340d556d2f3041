//! Residual-stream activation patching over every (layer, position), computed with the causal
//! structure of the model rather than one forward pass per patch.

use burn::prelude::*;

use nnsight::Result;

use nnsight_kernels::matmul::FastLinear;

use super::{
    Heads, LogitDiff, PatchingSweep, PositionGroup, check_sweep_input, flat, future_mask,
    groups_attention_flex, kept_residual, kept_rows, prompt_pair, store_rows, sweep, with_past,
};
use crate::gpt2::{Gpt2Attention, Gpt2LMHeadModel};

impl<B: Backend> Gpt2LMHeadModel<B> {
    /// Residual-stream activation patching over every (layer, position): entry (L, p) is `metric`
    /// on the `corrupted` prompt when block `L`'s output at position `p` is replaced by the
    /// `clean` run's — the matrix nnsight users build with one trace (or one invoke) per entry.
    ///
    /// The result equals that naive sweep (within float tolerance) but is computed from the
    /// causal structure: a patch at (L, p) leaves every layer ≤ L and every position < p as in
    /// the corrupted run, so only blocks after L run, only on positions ≥ p, attending to the
    /// corrupted run's keys and values for earlier positions; all patches of a layer and the two
    /// reference runs go through each block as one batch (each weight is read once per block);
    /// only the last position goes past the last attention, and only the two
    /// logits of the metric are computed. A patch whose clean and corrupted values are
    /// bit-identical (before the first differing token) is the corrupted run itself.
    ///
    /// # Errors
    /// [`nnsight::Error::Input`] when the prompts are empty, differ in length, are longer than
    /// the model's context, or a token id is outside the vocabulary.
    pub fn residual_patching_sweep(
        &self,
        clean: &[u32],
        corrupted: &[u32],
        metric: LogitDiff,
    ) -> Result<PatchingSweep> {
        let context = self.transformer.wpe.weight.val().dims()[0];
        check_sweep_input(clean, corrupted, metric, self.lm_head.vocab_size(), context)?;
        let (ids, positions) = prompt_pair(clean, corrupted, &self.lm_head.weight.val().device());
        let embedded = self.transformer.wte.forward(ids) + self.transformer.wpe.forward(positions);
        Ok(sweep(
            embedded,
            self.transformer.h.len(),
            metric,
            &self.lm_head,
            |residual| self.transformer.ln_f.forward(residual),
            |active, layer, last_layer| self.advance(active, layer, last_layer),
        ))
    }

    /// Runs block `layer` on the rows of the `active` groups (the reference runs first). In the
    /// last block only each patch's last position goes on after attention.
    fn advance(&self, active: Vec<&mut PositionGroup<B>>, layer: usize, last_layer: bool) {
        let block = &self.transformer.h[layer];
        let attn = &block.attn;
        let tokens = active[0].rows.as_ref().expect("active").dims()[1];
        let shapes: Vec<[usize; 3]> =
            active.iter().map(|g| g.rows.as_ref().expect("active").dims()).collect();
        let residual = Tensor::cat(active.iter().map(|g| flat(g.rows.clone().expect("active"))).collect(), 1);
        let qkv = attn.c_attn.forward_fast(block.ln_1.forward(residual.clone()));
        let width = shapes[0][2];
        let groups: Vec<(usize, usize)> =
            active.iter().zip(&shapes).map(|(g, s)| (g.position, s[0])).collect();
        let heads = Heads {
            heads: attn.n_head,
            kv_heads: attn.n_head,
            head_dim: width / attn.n_head,
            scale: attn.scale as f32,
            window: None,
        };
        let mixed = groups_attention_flex(
            (&qkv, 0),
            (&qkv, width),
            (&qkv, 2 * width),
            &groups,
            tokens,
            heads,
            last_layer,
        )
        .unwrap_or_else(|| groups_attention(attn, &qkv, &groups, tokens, last_layer));
        let x = kept_residual(residual, &shapes, last_layer) + attn.c_proj.forward_fast(mixed);
        let x = x.clone() + block.mlp.forward(block.ln_2.forward(x));
        store_rows(active, &shapes, x, last_layer);
    }
}

/// The attention of every group (`(position, patches)`, the reference runs first) with burn's
/// tensor operations, on backends other than `Flex`: `[1, rows kept, width]` (see
/// `patching::attention`).
fn groups_attention<B: Backend>(
    attn: &Gpt2Attention<B>,
    qkv: &Tensor<B, 3>,
    groups: &[(usize, usize)],
    tokens: usize,
    last_layer: bool,
) -> Tensor<B, 3> {
    let width = qkv.dims()[2] / 3;
    let mut corrupted_kv: Option<(Tensor<B, 4>, Tensor<B, 4>)> = None;
    let mut offset = 0;
    let mut mixed_parts = Vec::with_capacity(groups.len());
    for &(p, patches) in groups {
        let rows = tokens - p;
        let part =
            qkv.clone().slice([0..1, offset..offset + patches * rows]).reshape([patches, rows, 3 * width]);
        let (q, k, v) = attn.split_heads(part);
        let past = corrupted_kv.as_ref();
        let (k, v) = (with_past(k, past.map(|kv| &kv.0), p), with_past(v, past.map(|kv| &kv.1), p));
        if corrupted_kv.is_none() {
            corrupted_kv = Some((k.clone().narrow(0, 1, 1), v.clone().narrow(0, 1, 1)));
        }
        let masked = future_mask::<B>(p, tokens, &qkv.device());
        let mixed =
            attn.probabilities(q, k, &masked).matmul(v).swap_dims(1, 2).reshape([patches, rows, width]);
        mixed_parts.push(kept_rows(mixed, last_layer));
        offset += patches * rows;
    }
    Tensor::cat(mixed_parts, 1)
}
