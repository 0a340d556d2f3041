//! Residual-stream activation patching over every (layer, position) for Llama models, computed
//! with the causal structure of the model rather than one forward pass per patch.

use burn::prelude::*;
use nnsight::Result;

use super::{
    Heads, LogitDiff, PatchingSweep, PositionGroup, check_sweep_input, flat, future_mask,
    groups_attention_flex, kept_residual, kept_rows, prompt_pair, store_rows, sweep, with_past,
};
use crate::llama::{LlamaForCausalLM, rotate_half, rotate_rows};

/// The rotary `(cos, sin)` of positions `0..tokens`, `[1, tokens, head_dim]` each.
type Rotation<B> = (Tensor<B, 3>, Tensor<B, 3>);

impl<B: Backend> LlamaForCausalLM<B> {
    /// Residual-stream activation patching over every (layer, position): entry (L, p) is `metric`
    /// on the `corrupted` prompt when layer `L`'s output (`model.layers[L]`) at position `p` is
    /// replaced by the `clean` run's — the matrix nnsight users build with one trace (or one
    /// invoke) per entry.
    ///
    /// The result equals that naive sweep (within float tolerance) but is computed from the
    /// causal structure: a patch at (L, p) leaves every layer ≤ L and every position < p as in
    /// the corrupted run, so only layers after L run, only on positions ≥ p, attending to the
    /// corrupted run's (rotated) keys and values for earlier positions; all patches of a layer
    /// and the two reference runs go through each projection as one matrix product (each weight
    /// is read once per layer); only the last position goes past
    /// the last attention, and only the two logits of the metric are computed. A patch whose
    /// clean and corrupted values are bit-identical (before the first differing token) is the
    /// corrupted run itself.
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
        let context = self.model.rotary_emb.max_position_embeddings;
        check_sweep_input(clean, corrupted, metric, self.lm_head.vocab_size(), context)?;
        let (ids, positions) = prompt_pair(clean, corrupted, &self.lm_head.weight.val().device());
        let (cos, sin) = self.model.rotary_emb.forward(positions);
        let rotation = (cos.narrow(0, 0, 1), sin.narrow(0, 0, 1));
        Ok(sweep(
            self.model.embed_tokens.forward(ids),
            self.model.layers.len(),
            metric,
            &self.lm_head,
            |residual| self.model.norm.forward(residual),
            |active, layer, last_layer| self.advance(active, &rotation, layer, last_layer),
        ))
    }

    /// Runs layer `layer` on the rows of the `active` groups (the reference runs first). In the
    /// last layer only each patch's last position goes on after attention.
    fn advance(
        &self,
        active: Vec<&mut PositionGroup<B>>,
        rotation: &Rotation<B>,
        layer: usize,
        last_layer: bool,
    ) {
        let decoder = &self.model.layers[layer];
        let attn = &decoder.self_attn;
        let tokens = active[0].rows.as_ref().expect("active").dims()[1];
        let shapes: Vec<[usize; 3]> =
            active.iter().map(|g| g.rows.as_ref().expect("active").dims()).collect();
        let residual = Tensor::cat(active.iter().map(|g| flat(g.rows.clone().expect("active"))).collect(), 1);
        let normed = decoder.input_layernorm.forward(residual.clone());
        let q = attn.q_proj.forward(normed.clone());
        let k = attn.k_proj.forward(normed.clone());
        let v = attn.v_proj.forward(normed);

        // Rotary embedding of every row at once: the angles of each row's position.
        let positions: Vec<usize> = active
            .iter()
            .zip(&shapes)
            .flat_map(|(g, &[patches, _, _])| (0..patches).flat_map(move |_| g.position..tokens))
            .collect();
        let head_dim = attn.head_dim;
        let rotate = |t: Tensor<B, 3>, heads: usize| {
            rotate_rows(&t, (&rotation.0, &rotation.1), &positions, head_dim)
                .unwrap_or_else(|| rotate_with_tensors(t, heads, head_dim, rotation, &positions))
        };
        let (q, k) = (rotate(q, attn.num_heads), rotate(k, attn.num_key_value_heads));

        // Attention, per position group: queries from position p on, keys and values of earlier
        // positions from the corrupted run (the reference group's second row).
        let groups: Vec<(usize, usize)> =
            active.iter().zip(&shapes).map(|(g, s)| (g.position, s[0])).collect();
        let heads = Heads {
            heads: attn.num_heads,
            kv_heads: attn.num_key_value_heads,
            head_dim,
            scale: attn.scaling as f32,
            window: self.model.sliding_window,
        };
        let mixed = groups_attention_flex((&q, 0), (&k, 0), (&v, 0), &groups, tokens, heads, last_layer)
            .unwrap_or_else(|| self.groups_attention(layer, (q, k, v), &groups, tokens, last_layer));
        let x = kept_residual(residual, &shapes, last_layer) + attn.o_proj.forward(mixed);
        let x = x.clone() + decoder.mlp.forward(decoder.post_attention_layernorm.forward(x));
        store_rows(active, &shapes, x, last_layer);
    }

    /// The attention of every group (`(position, patches)`, the reference runs first) with burn's
    /// tensor operations, on backends other than `Flex`: `[1, rows kept, hidden]` (see
    /// `patching::attention`). `q`, `k`, `v` are layer `layer`'s rotated projections of all rows.
    fn groups_attention(
        &self,
        layer: usize,
        (q, k, v): (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>),
        groups: &[(usize, usize)],
        tokens: usize,
        last_layer: bool,
    ) -> Tensor<B, 3> {
        let attn = &self.model.layers[layer].self_attn;
        let head_dim = attn.head_dim;
        let mut corrupted_kv: Option<(Tensor<B, 4>, Tensor<B, 4>)> = None;
        let mut offset = 0;
        let mut mixed_parts = Vec::with_capacity(groups.len());
        for &(p, patches) in groups {
            let rows = tokens - p;
            let part = |t: &Tensor<B, 3>, heads: usize| {
                let t = t.clone().slice([0..1, offset..offset + patches * rows]);
                attn.split_heads(t.reshape([patches, rows, heads * head_dim]), heads)
            };
            let q = part(&q, attn.num_heads);
            let k = part(&k, attn.num_key_value_heads);
            let v = part(&v, attn.num_key_value_heads);
            let past = corrupted_kv.as_ref();
            let (k, v) = (with_past(k, past.map(|kv| &kv.0), p), with_past(v, past.map(|kv| &kv.1), p));
            if corrupted_kv.is_none() {
                corrupted_kv = Some((k.clone().narrow(0, 1, 1), v.clone().narrow(0, 1, 1)));
            }
            let masked = self.model.windowed(future_mask::<B>(p, tokens, &q.device()));
            let probs = attn.probabilities(q, k, &masked);
            let mixed =
                attn.mix(probs, v).swap_dims(1, 2).reshape([patches, rows, attn.num_heads * head_dim]);
            mixed_parts.push(kept_rows(mixed, last_layer));
            offset += patches * rows;
        }
        Tensor::cat(mixed_parts, 1)
    }
}

/// [`rotate_rows`] with burn's tensor operations, for backends other than `Flex`.
fn rotate_with_tensors<B: Backend>(
    t: Tensor<B, 3>,
    heads: usize,
    head_dim: usize,
    (cos, sin): &Rotation<B>,
    positions: &[usize],
) -> Tensor<B, 3> {
    let total = positions.len();
    let tokens = cos.dims()[1];
    let ids: Vec<i64> = positions.iter().map(|&p| p as i64).collect();
    let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [total]), &t.device());
    let angle = |a: &Tensor<B, 3>| {
        a.clone().reshape([tokens, head_dim]).select(0, ids.clone()).reshape([1, total, 1, head_dim])
    };
    let t = t.reshape([1, total, heads, head_dim]);
    (t.clone() * angle(cos) + rotate_half(t) * angle(sin)).reshape([1, total, heads * head_dim])
}
