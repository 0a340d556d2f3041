//! Activation patching on GPT-2 (the workflow of `examples/activation_patching.rs`), on the tiny
//! GPT-2 fixture, checked twice: against PyTorch (`patch.*` in `expected.json`, computed with
//! forward hooks, one forward pass per patch) and against a hooks-free recomputation that runs the
//! burn modules by hand (embeddings, `Gpt2Block::forward`, `ln_f`, `lm_head`) on the patched
//! residual stream.
//!
//! The experiment: a clean prompt ("… John gave a drink to") and a corrupted one ("… Mary gave a
//! drink to") of equal length; the metric is `logit(" Mary") − logit(" John")` at the last token.
//! A patch runs the corrupted prompt with block `h[L]`'s output (all positions, or one position
//! `p`) taken from the clean run:
//!
//! 1. read the clean `h[L]` output in one trace;
//! 2. in a trace of the corrupted prompt, `replace` (whole layer) or `edit` (one position, with
//!    `slice_assign`) `h[L]`'s output, and read the logits;
//! 3. the sweep over every `(L, p)`: naively one trace per entry, or with
//!    `Gpt2LMHeadModel::residual_patching_sweep`.

use crate::support;

use std::ops::Range;

use burn::prelude::*;
use nnsight::Error;
use nnsight_models::causal::CausalMask;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use nnsight_models::kv_cache::LayerCache;
use support::B;
use support::fixture::{Expected, TinyGpt2, assert_close, tiny_gpt2};

/// Agreement with PyTorch.
const TOL: f32 = 1e-4;
/// Agreement between a trace and the same computation by hand (same burn ops, same order).
const EXACT: f32 = 1e-5;

/// The fixture, the two prompts and the answer / distractor token ids.
struct Experiment {
    lm: TinyGpt2,
    expected: Expected,
    clean: Vec<u32>,
    corrupted: Vec<u32>,
    answer: u32,
    distractor: u32,
}

impl Experiment {
    fn new() -> Self {
        let (lm, expected) = (tiny_gpt2(), Expected::load());
        let clean = lm.encode(&expected.text("patch", "clean_prompt")).unwrap();
        let corrupted = lm.encode(&expected.text("patch", "corrupt_prompt")).unwrap();
        assert_eq!(vec![clean.clone()], expected.rows("patch.clean_ids"));
        assert_eq!(vec![corrupted.clone()], expected.rows("patch.corrupt_ids"));
        let answer = lm.encode(" Mary").unwrap()[0];
        let distractor = lm.encode(" John").unwrap()[0];
        assert_eq!(vec![vec![answer, distractor]], expected.rows("patch.answer_ids"));
        Experiment { lm, expected, clean, corrupted, answer, distractor }
    }

    fn model(&self) -> &Gpt2LMHeadModel<B> {
        self.lm.model()
    }

    fn layers(&self) -> usize {
        self.model().transformer.h.len()
    }

    /// `logit(answer) − logit(distractor)` at the last token of `logits` (`[1, T, vocab]`).
    fn metric(&self, logits: &Tensor<B, 3>) -> f32 {
        let [_, tokens, vocab] = logits.dims();
        let last = logits.clone().slice([0..1, tokens - 1..tokens]).reshape([vocab]);
        let last = last.to_data().to_vec::<f32>().unwrap();
        last[self.answer as usize] - last[self.distractor as usize]
    }

    /// The reference sweep `[layers, positions]` computed in PyTorch.
    fn reference_sweep(&self, layer: usize, position: usize) -> f32 {
        let sweep = self.expected.tensor::<2>("patch.sweep");
        let [_, positions] = sweep.dims();
        sweep.to_data().to_vec::<f32>().unwrap()[layer * positions + position]
    }

    // ---- with traces ----

    /// The clean run's block outputs (one trace) and its metric.
    fn clean_run(&self) -> (Vec<Tensor<B, 3>>, f32) {
        let (hidden, logits) = self
            .lm
            .trace(self.clean.clone())
            .run(async |m| {
                let mut hidden = Vec::new();
                for block in &m.transformer.h {
                    hidden.push(block.output().await?);
                }
                Ok((hidden, m.output().await?))
            })
            .unwrap();
        (hidden, self.metric(&logits))
    }

    /// The corrupted run with `h[layer]`'s whole output replaced by `clean`.
    fn patch_layer(&self, layer: usize, clean: &Tensor<B, 3>) -> f32 {
        let logits = self
            .lm
            .trace(self.corrupted.clone())
            .run(async |m| {
                m.transformer.h[layer].output().replace(clean.clone()).await?;
                m.output().await
            })
            .unwrap();
        self.metric(&logits)
    }

    /// The corrupted run with `h[layer]`'s output at `position` taken from `clean`.
    fn patch_position(&self, layer: usize, position: usize, clean: &Tensor<B, 3>) -> f32 {
        let at = [0..1, position..position + 1];
        let logits = self
            .lm
            .trace(self.corrupted.clone())
            .run(async |m| {
                let patch = clean.clone().slice(at.clone());
                m.transformer.h[layer].output().edit(|h| h.slice_assign(at, patch)).await?;
                m.output().await
            })
            .unwrap();
        self.metric(&logits)
    }

    // ---- by hand, no trace ----

    /// The corrupted run recomputed by hand, block `layer`'s output at `positions` taken from the
    /// clean run (also recomputed by hand).
    fn patch_by_hand(&self, layer: usize, positions: Range<usize>) -> f32 {
        let model = self.model();
        let (clean, _) = blocks_by_hand(model, embed(model, &self.clean), 0..layer + 1);
        let (corrupted, masked) = blocks_by_hand(model, embed(model, &self.corrupted), 0..layer + 1);
        let at = [0..1, positions];
        let patched = corrupted.slice_assign(at.clone(), clean.slice(at));
        let (last, _) = blocks_by_hand(model, (patched, masked), layer + 1..self.layers());
        self.metric(&model.lm_head.forward(model.transformer.ln_f.forward(last)))
    }
}

/// The embedded prompt (`wte + wpe`, dropout) and its causal mask, by hand.
fn embed(model: &Gpt2LMHeadModel<B>, ids: &[u32]) -> (Tensor<B, 3>, Tensor<B, 4, Bool>) {
    let device = Default::default();
    let ids: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
    let tokens = ids.len();
    let input_ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, tokens]), &device);
    let mask = CausalMask::new(&Tensor::ones([1, tokens], &device), tokens);
    let t = &model.transformer;
    let embedded = t.wte.forward(input_ids) + t.wpe.forward(mask.position_ids);
    (t.drop.forward(embedded), mask.masked)
}

/// Runs blocks `layers` on the residual stream `x`, by hand; returns it and the mask.
fn blocks_by_hand(
    model: &Gpt2LMHeadModel<B>,
    (mut x, masked): (Tensor<B, 3>, Tensor<B, 4, Bool>),
    layers: Range<usize>,
) -> (Tensor<B, 3>, Tensor<B, 4, Bool>) {
    for block in &model.transformer.h[layers] {
        x = block.forward(x, &masked, &mut LayerCache::disabled());
    }
    (x, masked)
}

fn assert_near(what: &str, actual: f32, expected: f32, tol: f32) {
    assert!((actual - expected).abs() <= tol, "{what}: {actual} vs {expected} (tolerance {tol})");
}

#[test]
fn clean_and_corrupted_runs_match_transformers() {
    let x = Experiment::new();
    let (hidden, clean_metric) = x.clean_run();
    for (layer, h) in hidden.iter().enumerate() {
        let reference = x.expected.tensor(&format!("patch.clean_hidden.{layer}"));
        assert_close(&format!("clean h[{layer}]"), h, &reference, TOL);
    }
    let corrupted_metric = x.metric(&x.lm.forward(x.corrupted.clone()).unwrap());
    assert_near("clean metric", clean_metric, x.expected.scalar("patch.clean_metric"), TOL);
    assert_near("corrupted metric", corrupted_metric, x.expected.scalar("patch.corrupt_metric"), TOL);
    assert!((clean_metric - corrupted_metric).abs() > 1e-2, "the corruption must change the metric");
}

#[test]
fn whole_layer_patch_matches_transformers_and_the_hand_computation() {
    let x = Experiment::new();
    let (hidden, _) = x.clean_run();
    let tokens = x.corrupted.len();
    for (layer, clean) in hidden.iter().enumerate() {
        let traced = x.patch_layer(layer, clean);
        let reference = x.expected.scalar(&format!("patch.layer_whole.{layer}"));
        assert_near(&format!("layer {layer}, vs PyTorch"), traced, reference, TOL);
        assert_near(&format!("layer {layer}, vs by hand"), traced, x.patch_by_hand(layer, 0..tokens), EXACT);
    }
}

#[test]
fn one_position_patch_matches_transformers_and_the_hand_computation() {
    let x = Experiment::new();
    let (hidden, _) = x.clean_run();
    // The position where the prompts differ (the second name), where patching matters most.
    let position = x.clean.iter().zip(&x.corrupted).position(|(a, b)| a != b).unwrap();
    assert_eq!(position, 9);
    for (layer, clean) in hidden.iter().enumerate() {
        let traced = x.patch_position(layer, position, clean);
        let what = format!("h[{layer}] at {position}");
        assert_near(&format!("{what}, vs PyTorch"), traced, x.reference_sweep(layer, position), TOL);
        let by_hand = x.patch_by_hand(layer, position..position + 1);
        assert_near(&format!("{what}, vs by hand"), traced, by_hand, EXACT);
    }
}

/// The naive sweep: one trace of the corrupted prompt per (layer, position).
fn naive_sweep(x: &Experiment) -> Vec<Vec<f32>> {
    let (hidden, _) = x.clean_run();
    let tokens = x.corrupted.len();
    hidden
        .iter()
        .enumerate()
        .map(|(l, clean)| (0..tokens).map(|p| x.patch_position(l, p, clean)).collect())
        .collect()
}

#[test]
fn naive_sweep_by_traces_matches_transformers_and_the_hand_computation() {
    let x = Experiment::new();
    let sweep = naive_sweep(&x);
    assert_eq!((sweep.len(), sweep[0].len()), (x.layers(), x.corrupted.len()));
    for (layer, row) in sweep.iter().enumerate() {
        for (position, &value) in row.iter().enumerate() {
            let what = format!("sweep[{layer}, {position}]");
            assert_near(&format!("{what}, vs PyTorch"), value, x.reference_sweep(layer, position), TOL);
            let by_hand = x.patch_by_hand(layer, position..position + 1);
            assert_near(&format!("{what}, vs by hand"), value, by_hand, EXACT);
        }
    }
}

// ---- the fast sweep: `Gpt2LMHeadModel::residual_patching_sweep` ----

#[test]
fn residual_patching_sweep_matches_the_naive_sweep() {
    use nnsight_models::patching::LogitDiff;

    let x = Experiment::new();
    let metric = LogitDiff { answer: x.answer, distractor: x.distractor };
    let fast = x.model().residual_patching_sweep(&x.clean, &x.corrupted, metric).unwrap();
    assert_eq!((fast.layers, fast.positions), (x.layers(), x.corrupted.len()));
    assert_eq!(fast.values().len(), fast.layers * fast.positions);
    assert_near("clean", fast.clean, x.expected.scalar("patch.clean_metric"), TOL);
    assert_near("corrupted", fast.corrupted, x.expected.scalar("patch.corrupt_metric"), TOL);
    for (layer, row) in naive_sweep(&x).iter().enumerate() {
        assert_eq!(fast.row(layer).len(), row.len());
        for (position, &naive) in row.iter().enumerate() {
            let what = format!("sweep[{layer}, {position}]");
            assert_near(&what, fast.get(layer, position), naive, TOL);
            assert_near(
                &format!("{what}, vs PyTorch"),
                fast.get(layer, position),
                x.reference_sweep(layer, position),
                TOL,
            );
        }
    }
    // The last layer at the last position carries everything the logits see: fully restored.
    let (last_layer, last_position) = (fast.layers - 1, fast.positions - 1);
    assert_near("recovered at the end", fast.recovered(last_layer, last_position), 1.0, 1e-3);
}

/// On backends other than `Flex` the sweep runs on burn's tensor operations (its attention and
/// matrix products): the same matrix.
#[test]
fn residual_patching_sweep_on_another_backend_gives_the_same_matrix() {
    use burn::backend::Autodiff;
    use nnsight_models::LanguageModel;
    use nnsight_models::patching::LogitDiff;

    let x = Experiment::new();
    let metric = LogitDiff { answer: x.answer, distractor: x.distractor };
    let dir = support::fixture::fixture_dir("tiny-gpt2");
    let other = LanguageModel::<Autodiff<B>, Gpt2LMHeadModel<Autodiff<B>>>::from_pretrained(
        dir.to_str().unwrap(),
        &Default::default(),
    )
    .unwrap();
    let fast = x.model().residual_patching_sweep(&x.clean, &x.corrupted, metric).unwrap();
    let generic = other.model().residual_patching_sweep(&x.clean, &x.corrupted, metric).unwrap();
    for (i, (a, b)) in fast.values().iter().zip(generic.values()).enumerate() {
        assert_near(&format!("entry {i}"), *a, *b, EXACT);
    }
}

#[test]
fn residual_patching_sweep_rejects_prompts_of_different_lengths() {
    use nnsight_models::patching::LogitDiff;

    let x = Experiment::new();
    let metric = LogitDiff { answer: x.answer, distractor: x.distractor };
    let shorter = &x.corrupted[..x.corrupted.len() - 1];
    let result = x.model().residual_patching_sweep(&x.clean, shorter, metric);
    assert!(matches!(result, Err(Error::Input { .. })), "expected Error::Input, got {result:?}");
}
