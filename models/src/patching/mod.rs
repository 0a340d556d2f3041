//! Activation patching over the residual stream: the metric, the result matrix, and what the
//! models' sweeps share (input checks, position groups, the layer-by-layer driver, the groups'
//! attention on the CPU backend) —
//! [`Gpt2LMHeadModel::residual_patching_sweep`], [`LlamaForCausalLM::residual_patching_sweep`].
//!
//! Each model computes its sweep from the causal structure of the computation instead of one
//! forward pass per patch: a patch at (L, p) leaves every layer ≤ L and every position < p as in
//! the corrupted run.

mod attention;
mod gpt2;
mod llama;

use std::fmt;

use burn::prelude::*;
use nnsight::{Error, Result};

use crate::lm_head::LmHead;
use crate::prompts::check_prompts;

pub(crate) use attention::{Heads, groups_attention_flex};

#[cfg(doc)]
use crate::{gpt2::Gpt2LMHeadModel, llama::LlamaForCausalLM};

/// The metric of a patching experiment: `logit(answer) − logit(distractor)` at the last position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogitDiff {
    /// The token the clean prompt should lead to.
    pub answer: u32,
    /// The token the corrupted prompt leads to.
    pub distractor: u32,
}

/// The result of a residual patching sweep ([`Gpt2LMHeadModel::residual_patching_sweep`],
/// [`LlamaForCausalLM::residual_patching_sweep`]).
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
    pub(crate) values: Vec<f32>,
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

/// Checks the prompts and the metric of a sweep against the model's vocabulary and context.
pub(crate) fn check_sweep_input(
    clean: &[u32],
    corrupted: &[u32],
    metric: LogitDiff,
    vocab: usize,
    context: usize,
) -> Result<()> {
    let input = |problem: String| Error::Input { problem };
    if clean.len() != corrupted.len() {
        return Err(input(format!(
            "clean and corrupted prompts must have the same number of tokens, they have {} and {}",
            clean.len(),
            corrupted.len()
        )));
    }
    check_prompts(&[clean, corrupted], vocab, context)?;
    if let Some(id) = [metric.answer, metric.distractor].into_iter().find(|&id| id as usize >= vocab) {
        return Err(input(format!("the metric's token id {id} is outside the vocabulary (size {vocab})")));
    }
    Ok(())
}

/// The two prompts as one batch of ids `[2, tokens]` (clean first), and its positions
/// `[2, tokens]` (`0..tokens` in each row).
pub(crate) fn prompt_pair<B: Backend>(
    clean: &[u32],
    corrupted: &[u32],
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let tokens = clean.len();
    let ids: Vec<i64> = clean.iter().chain(corrupted).map(|&t| i64::from(t)).collect();
    let ids = Tensor::from_data(TensorData::new(ids, [2, tokens]), device);
    let positions = Tensor::<B, 1, Int>::arange(0..tokens as i64, device).unsqueeze::<2>().repeat_dim(0, 2);
    (ids, positions)
}

/// Patches sharing a position `p`: their residual rows for positions `p..` at the current layer.
///
/// The reference runs are a group too: position 0, two "patches" (the clean and the corrupted
/// prompt) that attend to nothing before them.
pub(crate) struct PositionGroup<B: Backend> {
    /// The patched position.
    pub(crate) position: usize,
    /// The patched layer of each patch, in row order.
    pub(crate) layers: Vec<usize>,
    /// `[patches, tokens - position, hidden]`, or `None` before the first patch joins.
    pub(crate) rows: Option<Tensor<B, 3>>,
}

/// Adds the patches of layer `layer` (whose output is patched, `[1, tokens, width]` in each run)
/// to their position groups: the corrupted layer output from the patched position on, with that
/// position's row from the clean run. Patches that change nothing are left out.
fn join_patches<B: Backend>(
    groups: &mut [PositionGroup<B>],
    clean_output: &Tensor<B, 3>,
    corrupted_output: &Tensor<B, 3>,
    layer: usize,
) {
    let tokens = groups.len();
    let clean: Vec<f32> = clean_output.to_data().iter::<f32>().collect();
    let corrupted: Vec<f32> = corrupted_output.to_data().iter::<f32>().collect();
    let width = clean.len() / tokens;
    for group in groups.iter_mut() {
        let p = group.position;
        let row = p * width..(p + 1) * width;
        if clean[row.clone()].iter().zip(&corrupted[row]).all(|(a, b)| a.to_bits() == b.to_bits()) {
            continue;
        }
        let source = corrupted_output.clone().slice([0..1, p..tokens]);
        let patched = source.slice_assign([0..1, 0..1], clean_output.clone().slice([0..1, p..p + 1]));
        group.rows = Some(match group.rows.take() {
            Some(rows) => Tensor::cat(vec![rows, patched], 0),
            None => patched,
        });
        group.layers.push(layer);
    }
}

/// `[1, 1, tokens - p, tokens]`: `true` where query `p + i` would attend to a later key.
pub(crate) fn future_mask<B: Backend>(p: usize, tokens: usize, device: &B::Device) -> Tensor<B, 4, Bool> {
    let queries = tokens - p;
    let values: Vec<bool> = (0..queries).flat_map(|i| (0..tokens).map(move |j| j > p + i)).collect();
    Tensor::from_data(TensorData::new(values, [1, 1, queries, tokens]), device)
}

/// The part of a sweep every model shares: layer by layer, the patches of the previous layer
/// joined to their position groups and all active groups `advance`d through the layer, then the
/// metric of both prompts and of every patch from their last residual rows.
///
/// `embedded` is the input of the first layer for both prompts (`[2, tokens, width]`, clean
/// first): the reference runs go through each layer with the patches, in the same matrix
/// products, so each weight is read once per layer. `advance(active, layer, is_last_layer)`
/// replaces each active group's rows by the layer's output on them (all rows, or in the last
/// layer only each patch's last position); `active[0]` is the reference group, whose corrupted
/// keys and values at this layer are the past of the other groups. `final_norm` is the model's
/// norm before its head.
pub(crate) fn sweep<B: Backend>(
    embedded: Tensor<B, 3>,
    layers: usize,
    metric: LogitDiff,
    head: &LmHead<B>,
    final_norm: impl Fn(Tensor<B, 2>) -> Tensor<B, 2>,
    mut advance: impl FnMut(Vec<&mut PositionGroup<B>>, usize, bool),
) -> PatchingSweep {
    let tokens = embedded.dims()[1];
    let mut reference = PositionGroup { position: 0, layers: Vec::new(), rows: Some(embedded) };
    let mut groups: Vec<PositionGroup<B>> =
        (0..tokens).map(|position| PositionGroup { position, layers: Vec::new(), rows: None }).collect();
    for layer in 0..layers {
        if layer > 0 {
            let outputs = reference.rows.as_ref().expect("the reference runs go through every layer");
            let run = |i: usize| outputs.clone().narrow(0, i, 1);
            join_patches(&mut groups, &run(0), &run(1), layer - 1);
        }
        let active =
            std::iter::once(&mut reference).chain(groups.iter_mut().filter(|g| g.rows.is_some())).collect();
        advance(active, layer, layer == layers - 1);
    }

    // `head[answer] − head[distractor]` as a column: the metric is the normalised residual times it.
    let weight = head.weight.val();
    let row = |id: u32| weight.clone().narrow(0, id as usize, 1);
    let direction = (row(metric.answer) - row(metric.distractor)).transpose();
    let finished: Vec<&PositionGroup<B>> =
        std::iter::once(&reference).chain(groups.iter().filter(|g| g.rows.is_some())).collect();
    let rows: Vec<Tensor<B, 2>> =
        finished.iter().map(|g| g.rows.clone().expect("finished").squeeze_dim(1)).collect();
    let results: Vec<f32> =
        final_norm(Tensor::cat(rows, 0)).matmul(direction).into_data().iter::<f32>().collect();
    let (clean, corrupted) = (results[0], results[1]);

    let mut values = vec![corrupted; layers * tokens];
    // Patching the last layer's output only matters at the last position, where it is the clean
    // run's final residual.
    values[(layers - 1) * tokens + tokens - 1] = clean;
    let patches = finished[1..].iter().flat_map(|g| g.layers.iter().map(|&l| (l, g.position)));
    for ((layer, position), &value) in patches.zip(&results[2..]) {
        values[layer * tokens + position] = value;
    }
    PatchingSweep { layers, positions: tokens, clean, corrupted, values }
}

/// `[patches, rows, width]` → `[1, patches · rows, width]`: the rows of a group, flat.
pub(crate) fn flat<B: Backend>(t: Tensor<B, 3>) -> Tensor<B, 3> {
    let [patches, rows, width] = t.dims();
    t.reshape([1, patches * rows, width])
}

/// Keys or values `new` (`[patches, heads, rows, head_dim]`) of positions `p..` behind those of
/// positions `..p` from the corrupted run (`past`: `[1, heads, tokens, head_dim]`; `None` for the
/// reference group, which comes first), for every patch.
pub(crate) fn with_past<B: Backend>(
    new: Tensor<B, 4>,
    past: Option<&Tensor<B, 4>>,
    p: usize,
) -> Tensor<B, 4> {
    if p == 0 {
        return new;
    }
    let past = past.expect("the reference group, first, gives the past of later positions");
    let patches = new.dims()[0];
    let [_, heads, _, head_dim] = past.dims();
    let past = past.clone().slice([0..1, 0..heads, 0..p]).expand([patches, heads, p, head_dim]);
    Tensor::cat(vec![past, new], 2)
}

/// The rows of a group (`[patches, rows, width]`) that go on past attention, flat: all of them,
/// or in the last layer only each patch's last position.
pub(crate) fn kept_rows<B: Backend>(t: Tensor<B, 3>, last_layer: bool) -> Tensor<B, 3> {
    let [patches, rows, _] = t.dims();
    flat(if last_layer { t.slice([0..patches, rows - 1..rows]) } else { t })
}

/// The residual rows that go on past attention (`residual`: `[1, rows, width]`, the groups' rows
/// in order, `shapes` their shapes): all of them, or in the last layer each patch's last one.
pub(crate) fn kept_residual<B: Backend>(
    residual: Tensor<B, 3>,
    shapes: &[[usize; 3]],
    last_layer: bool,
) -> Tensor<B, 3> {
    if !last_layer {
        return residual;
    }
    let mut offset = 0;
    let mut parts = Vec::with_capacity(shapes.len());
    for &[patches, rows, width] in shapes {
        let part = residual.clone().slice([0..1, offset..offset + patches * rows]);
        parts.push(kept_rows(part.reshape([patches, rows, width]), true));
        offset += patches * rows;
    }
    Tensor::cat(parts, 1)
}

/// Hands a layer's output `x` (`[1, rows, width]`, the active groups' kept rows in order) back
/// to the groups (`shapes`: their rows before the layer).
pub(crate) fn store_rows<B: Backend>(
    active: Vec<&mut PositionGroup<B>>,
    shapes: &[[usize; 3]],
    x: Tensor<B, 3>,
    last_layer: bool,
) {
    let mut offset = 0;
    for (group, &[patches, rows, width]) in active.into_iter().zip(shapes) {
        let rows = if last_layer { 1 } else { rows };
        group.rows =
            Some(x.clone().slice([0..1, offset..offset + patches * rows]).reshape([patches, rows, width]));
        offset += patches * rows;
    }
}
