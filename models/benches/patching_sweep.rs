//! The systematic activation-patching sweep on a GPT-2-small-shaped model (random weights:
//! 12 layers, width 768, 12 heads, vocabulary 50257): a 10-token clean and corrupted prompt, every
//! (layer, position) = 120 patches of the residual stream, metric = logit difference of two
//! answer tokens at the last position.
//!
//! - `plain_forward_1x10`: one forward pass, for scale;
//! - `naive_121_traces`: the sweep as nnsight users write it, one trace per entry (+ the clean run);
//! - `one_trace_121_invokes`: the sweep as one trace of 121 invokes — the clean prompt and one
//!   invoke per patch, run as one batched forward pass (nnsight's fastest way);
//! - `fast/...`: `Gpt2LMHeadModel::residual_patching_sweep`, for prompts differing at one position
//!   (the usual case: IOI-style name swaps; at position 5, so positions 0–4 are skipped), at
//!   positions 1–2 (the prompt pair of the nnsight reference measurement: almost nothing can be
//!   skipped) and at every position (nothing to skip).
//!
//! Before measuring, the fast and the invokes sweeps are checked against the naive one (≤ 1e-4 at
//! every entry).
//! Under `cargo test --benches` (no `--bench` flag) a small model is used, so CI stays quick.
//! Figures are recorded in BENCHMARKS.md.
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use std::hint::black_box;

use burn::backend::Flex;
use burn::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};
use nnsight::Shared;
use nnsight::prelude::*;
use nnsight_models::gpt2::{Gpt2Config, Gpt2LMHeadModel, Gpt2LMHeadModelEnvoy};
use nnsight_models::patching::LogitDiff;
use nnsight_support::sweep::{logit_diff, naive_gpt2_sweep, prompt};

type B = Flex;

const METRIC: LogitDiff = LogitDiff { answer: 11, distractor: 42 };

fn config() -> Gpt2Config {
    let measuring = std::env::args().any(|a| a == "--bench");
    if measuring {
        Gpt2Config::gpt2_small()
    } else {
        Gpt2Config { n_layer: 3, n_embd: 64, n_head: 4, vocab_size: 500, ..Gpt2Config::gpt2_small() }
    }
}

fn input(tokens: &[u32]) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    prompt::<B>(tokens)
}

fn metric_of(logits: Tensor<B, 3>) -> f32 {
    logit_diff(logits, METRIC)
}

/// One trace reading the clean block outputs, then one trace per (layer, position).
fn naive_sweep(model: &Gpt2LMHeadModel<B>, clean: &[u32], corrupted: &[u32]) -> Vec<f32> {
    naive_gpt2_sweep(model, clean, corrupted, METRIC).concat()
}

/// One trace: invoke 0 reads the clean block outputs, then one invoke per (layer, position)
/// patches the corrupted prompt — one batched forward pass of 121 rows.
fn invokes_sweep(model: &Gpt2LMHeadModel<B>, clean: &[u32], corrupted: &[u32]) -> Vec<f32> {
    let layers = model.transformer.h.len();
    let hidden: Vec<Shared<Tensor<B, 3>>> =
        (0..layers).map(|_| Shared::new("a clean block output")).collect();
    let hidden = &hidden;
    let patches = (0..layers).flat_map(|layer| (0..clean.len()).map(move |p| (layer, p)));
    let ((), values) = model
        .tracer()
        .invoke(input(clean), async |m| {
            for (block, slot) in m.transformer.h.iter().zip(hidden) {
                slot.set(block.output().await?)?;
            }
            Ok(())
        })
        .invoke_each(patches.map(|(layer, p)| {
            let body = async move |m: &Gpt2LMHeadModelEnvoy<'_, B>| {
                m.transformer.h[layer]
                    .output()
                    .try_edit(|h| Ok(h.slice_assign([0..1, p..p + 1], hidden[layer].get()?.narrow(1, p, 1))))
                    .await?;
                Ok(metric_of(m.output().await?))
            };
            (input(corrupted), body)
        }))
        .run()
        .unwrap();
    values
}

fn bench(c: &mut Criterion) {
    let config = config();
    let model = config.init::<B>(&Default::default());
    let clean: Vec<u32> = vec![464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13];
    let clean: Vec<u32> = clean.into_iter().map(|t| t % config.vocab_size as u32).collect();
    let mut one_differs = clean.clone();
    one_differs[5] = (one_differs[5] + 1) % config.vocab_size as u32;
    let mut reference_pair = clean.clone();
    for p in [1, 2] {
        reference_pair[p] = (reference_pair[p] + 1) % config.vocab_size as u32;
    }
    let all_differ: Vec<u32> = clean.iter().map(|t| (t * 7 + 3) % config.vocab_size as u32).collect();

    for corrupted in [&one_differs, &reference_pair, &all_differ] {
        let fast = model.residual_patching_sweep(&clean, corrupted, METRIC).unwrap();
        let naive = naive_sweep(&model, &clean, corrupted);
        let worst = fast.values().iter().zip(&naive).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-4, "fast and naive sweeps differ by {worst}");
        println!("fast sweep = naive sweep (largest difference {worst:.2e})");
        let batched = invokes_sweep(&model, &clean, corrupted);
        let worst = batched.iter().zip(&naive).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-4, "invokes and naive sweeps differ by {worst}");
        println!("invokes sweep = naive sweep (largest difference {worst:.2e})");
    }

    let mut group = c.benchmark_group("patching_sweep");
    group.sample_size(10);
    group.bench_function("plain_forward_1x10", |b| {
        b.iter(|| black_box(model.forward(input(&clean).0, input(&clean).1)))
    });
    group.bench_function("fast/one_position_differs", |b| {
        b.iter(|| black_box(model.residual_patching_sweep(&clean, &one_differs, METRIC).unwrap()))
    });
    group.bench_function("fast/positions_1_2_differ", |b| {
        b.iter(|| black_box(model.residual_patching_sweep(&clean, &reference_pair, METRIC).unwrap()))
    });
    group.bench_function("fast/every_position_differs", |b| {
        b.iter(|| black_box(model.residual_patching_sweep(&clean, &all_differ, METRIC).unwrap()))
    });
    group.bench_function("one_trace_121_invokes", |b| {
        b.iter(|| black_box(invokes_sweep(&model, &clean, &all_differ)))
    });
    group.bench_function("naive_121_traces", |b| {
        b.iter(|| black_box(naive_sweep(&model, &clean, &all_differ)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
