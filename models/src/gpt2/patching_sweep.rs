//! Residual-stream activation patching over every (layer, position), computed with the causal
//! structure of the model rather than one forward pass per patch.

use std::fmt;

use burn::prelude::*;

use nnsight::{Error, Result};

use super::Gpt2LMHeadModel;
use crate::causal::CausalMask;
use crate::kv_cache::KvCache;

/// The metric of a patching experiment: `logit(answer) − logit(distractor)` at the last position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogitDiff {
    /// The token the clean prompt should lead to.
    pub answer: u32,
    /// The token the corrupted prompt leads to.
    pub distractor: u32,
}

/// The result of [`Gpt2LMHeadModel::residual_patching_sweep`].
#[derive(Debug, Clone, PartialEq)]
pub struct PatchingSweep {
    /// Number of blocks (rows).
    pub layers: usize,
    /// Number of token positions (columns).
    pub positions: usize,
    /// The metric on the clean prompt.
    pub clean: f32,
    /// The metric on the corrupted prompt.
    pub corrupted: f32,
    /// Row-major `[layers, positions]`.
    values: Vec<f32>,
}

impl PatchingSweep {
    /// The metric of the corrupted run with block `layer`'s output at `position` taken from the
    /// clean run.
    pub fn get(&self, layer: usize, position: usize) -> f32 {
        self.values[layer * self.positions + position]
    }

    /// One layer's row.
    pub fn row(&self, layer: usize) -> &[f32] {
        &self.values[layer * self.positions..(layer + 1) * self.positions]
    }

    /// The values, row-major `[layers, positions]`.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// How much of the clean-vs-corrupted difference a patch restores:
    /// `(value − corrupted) / (clean − corrupted)` (1 = fully restored, 0 = no effect).
    pub fn recovered(&self, layer: usize, position: usize) -> f32 {
        (self.get(layer, position) - self.corrupted) / (self.clean - self.corrupted)
    }
}

impl fmt::Display for PatchingSweep {
    /// The matrix, one row per layer, one column per position.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "layer")?;
        for p in 0..self.positions {
            write!(f, " {:>8}", format!("pos {p}"))?;
        }
        for layer in 0..self.layers {
            write!(f, "\n{layer:>5}")?;
            for value in self.row(layer) {
                write!(f, " {value:>8.4}")?;
            }
        }
        Ok(())
    }
}

/// The two reference runs a sweep patches between, layer by layer.
struct Runs<B: Backend> {
    /// Block outputs of the clean run, `[1, tokens, width]` per layer.
    clean: Vec<Tensor<B, 3>>,
    /// Block outputs of the corrupted run.
    corrupted: Vec<Tensor<B, 3>>,
    /// Keys and values of the corrupted run, `[1, heads, tokens, head_dim]` per layer.
    corrupted_kv: Vec<(Tensor<B, 4>, Tensor<B, 4>)>,
}

/// Patches sharing a position `p`: their residual rows for positions `p..` at the current layer.
struct Group<B: Backend> {
    position: usize,
    /// The patched layer of each patch, in row order.
    layers: Vec<usize>,
    /// `[patches, tokens - position, width]`, or `None` before the first patch joins.
    rows: Option<Tensor<B, 3>>,
}

impl<B: Backend> Gpt2LMHeadModel<B> {
    /// Residual-stream activation patching over every (layer, position): entry (L, p) is `metric`
    /// on the `corrupted` prompt when block `L`'s output at position `p` is replaced by the
    /// `clean` run's — the matrix nnsight users build with one trace (or one invoke) per entry.
    ///
    /// The result equals that naive sweep (within float tolerance) but is computed from the
    /// causal structure: a patch at (L, p) leaves every layer ≤ L and every position < p as in
    /// the corrupted run, so only blocks after L run, only on positions ≥ p, attending to the
    /// corrupted run's cached keys and values for earlier positions; all patches of a layer run
    /// as one batch; only the last position goes past the last attention, and only the two
    /// logits of the metric are computed. A patch whose clean and corrupted values are
    /// bit-identical (before the first differing token) is the corrupted run itself.
    pub fn residual_patching_sweep(
        &self,
        clean: &[u32],
        corrupted: &[u32],
        metric: LogitDiff,
    ) -> Result<PatchingSweep> {
        self.check_sweep_input(clean, corrupted, metric)?;
        let device = self.lm_head.weight.val().device();
        let layers = self.transformer.h.len();
        let tokens = clean.len();
        let runs = self.reference_runs(clean, corrupted, &device);
        let direction = self.metric_direction(metric);
        let final_metric = |residual: Tensor<B, 2>| -> Vec<f32> {
            let normed = self.transformer.ln_f.forward(residual);
            normed.matmul(direction.clone()).into_data().iter::<f32>().collect()
        };
        let last = |t: &Tensor<B, 3>| t.clone().slice([0..1, tokens - 1..tokens]).reshape([1, -1]);
        let clean_metric = final_metric(last(&runs.clean[layers - 1]))[0];
        let corrupted_metric = final_metric(last(&runs.corrupted[layers - 1]))[0];

        let mut values = vec![corrupted_metric; layers * tokens];
        // Patching the last block's output only matters at the last position, where it is the
        // clean run's final residual.
        values[(layers - 1) * tokens + tokens - 1] = clean_metric;

        let mut groups: Vec<Group<B>> =
            (0..tokens).map(|position| Group { position, layers: Vec::new(), rows: None }).collect();
        for layer in 1..layers {
            self.join_patches(&mut groups, &runs, layer - 1);
            if groups.iter().all(|g| g.rows.is_none()) {
                continue;
            }
            let last_layer = layer == layers - 1;
            self.advance(&mut groups, &runs, layer, last_layer);
        }
        let finished: Vec<&Group<B>> = groups.iter().filter(|g| g.rows.is_some()).collect();
        if !finished.is_empty() {
            let rows: Vec<Tensor<B, 2>> =
                finished.iter().map(|g| g.rows.clone().expect("filtered").squeeze_dim(1)).collect();
            let results = final_metric(Tensor::cat(rows, 0));
            let patches = finished.iter().flat_map(|g| g.layers.iter().map(|&l| (l, g.position)));
            for ((layer, position), value) in patches.zip(results) {
                values[layer * tokens + position] = value;
            }
        }
        Ok(PatchingSweep {
            layers,
            positions: tokens,
            clean: clean_metric,
            corrupted: corrupted_metric,
            values,
        })
    }

    fn check_sweep_input(&self, clean: &[u32], corrupted: &[u32], metric: LogitDiff) -> Result<()> {
        let input = |problem: String| Error::Input { problem };
        if clean.is_empty() {
            return Err(input("the clean prompt is empty".to_owned()));
        }
        if clean.len() != corrupted.len() {
            return Err(input(format!(
                "clean and corrupted prompts must have the same number of tokens, they have {} and {}",
                clean.len(),
                corrupted.len()
            )));
        }
        let vocab = self.lm_head.vocab_size();
        let all = clean.iter().chain(corrupted).chain([&metric.answer, &metric.distractor]);
        if let Some(id) = all.into_iter().find(|&&id| id as usize >= vocab) {
            return Err(input(format!("token id {id} is outside the vocabulary (size {vocab})")));
        }
        let context = self.transformer.wpe.weight.val().dims()[0];
        if clean.len() > context {
            return Err(input(format!("the prompts have {} tokens, the context is {context}", clean.len())));
        }
        Ok(())
    }

    /// `wte[answer] − wte[distractor]` as a column `[width, 1]`: the metric is the final
    /// normalised residual times it (the tied head's two logits, subtracted).
    fn metric_direction(&self, metric: LogitDiff) -> Tensor<B, 2> {
        let weight = self.lm_head.weight.val();
        let row = |id: u32| weight.clone().narrow(0, id as usize, 1);
        (row(metric.answer) - row(metric.distractor)).transpose()
    }

    /// Runs both prompts as one batch, block by block, keeping every block output and the
    /// corrupted run's keys and values.
    fn reference_runs(&self, clean: &[u32], corrupted: &[u32], device: &B::Device) -> Runs<B> {
        let tokens = clean.len();
        let ids: Vec<i64> = clean.iter().chain(corrupted).map(|&t| i64::from(t)).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [2, tokens]), device);
        let mask = CausalMask::new(&Tensor::ones([2, tokens], device), tokens);
        let layers = self.transformer.h.len();
        let mut cache = KvCache::new(layers);
        let mut x = self.transformer.wte.forward(ids) + self.transformer.wpe.forward(mask.position_ids);
        let (mut clean_outputs, mut corrupted_outputs) = (Vec::new(), Vec::new());
        for (i, block) in self.transformer.h.iter().enumerate() {
            x = block.forward(x, &mask.masked, &mut cache[i]);
            clean_outputs.push(x.clone().narrow(0, 0, 1));
            corrupted_outputs.push(x.clone().narrow(0, 1, 1));
        }
        let corrupted_kv = (0..layers)
            .map(|i| {
                let (k, v) = cache[i].get().expect("the cache stores");
                (k.clone().narrow(0, 1, 1), v.clone().narrow(0, 1, 1))
            })
            .collect();
        Runs { clean: clean_outputs, corrupted: corrupted_outputs, corrupted_kv }
    }

    /// Adds the patches of layer `layer` (whose output is patched) to their position groups:
    /// the corrupted block output from the patched position on, with that position's row from
    /// the clean run. Patches that change nothing are left out.
    fn join_patches(&self, groups: &mut [Group<B>], runs: &Runs<B>, layer: usize) {
        let tokens = groups.len();
        let clean: Vec<f32> = runs.clean[layer].to_data().iter::<f32>().collect();
        let corrupted: Vec<f32> = runs.corrupted[layer].to_data().iter::<f32>().collect();
        let width = clean.len() / tokens;
        for group in groups.iter_mut() {
            let p = group.position;
            let row = p * width..(p + 1) * width;
            if clean[row.clone()].iter().zip(&corrupted[row]).all(|(a, b)| a.to_bits() == b.to_bits()) {
                continue;
            }
            let source = runs.corrupted[layer].clone().slice([0..1, p..tokens]);
            let patched =
                source.slice_assign([0..1, 0..1], runs.clean[layer].clone().slice([0..1, p..p + 1]));
            group.rows = Some(match group.rows.take() {
                Some(rows) => Tensor::cat(vec![rows, patched], 0),
                None => patched,
            });
            group.layers.push(layer);
        }
    }

    /// Runs block `layer` on every group's rows. In the last block only each patch's last
    /// position goes on after attention.
    fn advance(&self, groups: &mut [Group<B>], runs: &Runs<B>, layer: usize, last_layer: bool) {
        let block = &self.transformer.h[layer];
        let attn = &block.attn;
        let tokens = groups.len();
        let active: Vec<&mut Group<B>> = groups.iter_mut().filter(|g| g.rows.is_some()).collect();
        let shapes: Vec<[usize; 3]> =
            active.iter().map(|g| g.rows.as_ref().expect("active").dims()).collect();
        let flat = |t: Tensor<B, 3>| {
            let [patches, rows, width] = t.dims();
            t.reshape([1, patches * rows, width])
        };
        let residual = Tensor::cat(active.iter().map(|g| flat(g.rows.clone().expect("active"))).collect(), 1);
        let qkv = attn.c_attn.forward(block.ln_1.forward(residual.clone()));

        // Attention, per position group: queries from position p on, keys and values of earlier
        // positions from the corrupted run.
        let (corrupted_k, corrupted_v) = &runs.corrupted_kv[layer];
        let mut offset = 0;
        let mut mixed_parts = Vec::with_capacity(active.len());
        let mut residual_parts = Vec::with_capacity(active.len());
        for (group, &[patches, rows, width]) in active.iter().zip(&shapes) {
            let p = group.position;
            let part = qkv.clone().slice([0..1, offset..offset + patches * rows]).reshape([
                patches,
                rows,
                3 * width,
            ]);
            let (q, k, v) = attn.split_heads(part);
            let with_past = |new: Tensor<B, 4>, past: &Tensor<B, 4>| {
                if p == 0 {
                    return new;
                }
                let [_, heads, _, head_dim] = past.dims();
                let past = past.clone().slice([0..1, 0..heads, 0..p]).expand([patches, heads, p, head_dim]);
                Tensor::cat(vec![past, new], 2)
            };
            let (k, v) = (with_past(k, corrupted_k), with_past(v, corrupted_v));
            let masked = future_mask::<B>(p, tokens, &qkv.device());
            let mixed =
                attn.probabilities(q, k, &masked).matmul(v).swap_dims(1, 2).reshape([patches, rows, width]);
            let group_residual = residual
                .clone()
                .slice([0..1, offset..offset + patches * rows])
                .reshape([patches, rows, width]);
            if last_layer {
                mixed_parts.push(flat(mixed.slice([0..patches, rows - 1..rows])));
                residual_parts.push(flat(group_residual.slice([0..patches, rows - 1..rows])));
            } else {
                mixed_parts.push(flat(mixed));
                residual_parts.push(flat(group_residual));
            }
            offset += patches * rows;
        }
        let x = Tensor::cat(residual_parts, 1) + attn.c_proj.forward(Tensor::cat(mixed_parts, 1));
        let x = x.clone() + block.mlp.forward(block.ln_2.forward(x));

        let mut offset = 0;
        for (group, &[patches, rows, width]) in active.into_iter().zip(&shapes) {
            let rows = if last_layer { 1 } else { rows };
            group.rows = Some(
                x.clone().slice([0..1, offset..offset + patches * rows]).reshape([patches, rows, width]),
            );
            offset += patches * rows;
        }
    }
}

/// `[1, 1, tokens - p, tokens]`: `true` where query `p + i` would attend to a later key.
fn future_mask<B: Backend>(p: usize, tokens: usize, device: &B::Device) -> Tensor<B, 4, Bool> {
    let queries = tokens - p;
    let values: Vec<bool> = (0..queries).flat_map(|i| (0..tokens).map(move |j| j > p + i)).collect();
    Tensor::from_data(TensorData::new(values, [1, 1, queries, tokens]), device)
}
