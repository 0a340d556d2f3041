//! The figures the GPU check records (`tools/gpu-check.sh`), on the backend of this build
//! (`nnsight_support::backend`: `Flex`, or LibTorch / CUDA with the crate's `tch` / `cuda`
//! feature), one line per figure: the median of several timed runs after a warm-up, each ending
//! when its result has reached the host (so a GPU's queue is drained). Random weights of the
//! reference shapes:
//!
//! - GPT-2 small (12 layers, width 768, vocabulary 50257): forward 1×10 tokens, untraced and in a
//!   trace whose body reads a block output; the 120-entry (layer, position) residual patching
//!   sweep of a 10-token prompt pair differing at positions 1–2 (the reference measurement's
//!   pair), by `residual_patching_sweep`;
//! - Llama-3.2-1B-shaped (16 layers, width 2048, 32 query / 8 key-value heads, vocabulary 128256,
//!   tied embeddings): prefill 8×512, forward 1×16, greedy generation of 32 tokens (ms/token).
//!
//! `NNSIGHT_BENCH_DTYPE=bf16` (or `f16`) runs the same in that element type on LibTorch and CUDA
//! (one element type per process: burn fixes it per device). Reference figures (H200, PyTorch
//! 2.11 eager, nnsight 0.8.1) are in BENCHMARKS.md. Under
//! `cargo test --benches` (no `--bench` flag) tiny shapes run once, so CI only checks that it runs.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use burn::prelude::*;
use nnsight::prelude::*;
use nnsight_models::LanguageModel;
use nnsight_models::generation::GenerateOptions;
use nnsight_models::gpt2::{Gpt2Config, Gpt2LMHeadModel};
use nnsight_models::llama::{LlamaConfig, LlamaForCausalLM};
use nnsight_models::patching::LogitDiff;
use nnsight_support::backend::{Backend as B, NAME};
use nnsight_support::sweep::{prompt, seeded};
use tokenizers::Tokenizer;
use tokenizers::models::wordlevel::WordLevel;

/// Times `run` (which returns once its result is on the host): the median of `samples` runs
/// after `warmup` untimed ones.
fn median(warmup: usize, samples: usize, mut run: impl FnMut()) -> Duration {
    for _ in 0..warmup {
        run();
    }
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn report(figure: &str, time: Duration, per: Option<(usize, &str)>) {
    let ms = time.as_secs_f64() * 1e3;
    let dtype = dtype();
    match per {
        Some((count, unit)) => {
            println!("{NAME} {dtype} {figure}: {ms:.2} ms ({:.3} ms/{unit})", ms / count as f64)
        }
        None => println!("{NAME} {dtype} {figure}: {ms:.2} ms"),
    }
}

/// The element type asked for (`NNSIGHT_BENCH_DTYPE`), `f32` by default.
fn dtype() -> String {
    std::env::var("NNSIGHT_BENCH_DTYPE").unwrap_or_else(|_| "f32".into())
}

/// Brings a tensor to the host: the end of a timed run.
fn sync<E: Backend, const D: usize>(x: Tensor<E, D>) {
    black_box(x.into_data());
}

/// A word-level tokenizer with `vocab` tokens (`t0`, `t1`, ...), so every id a random model
/// generates decodes.
fn tokenizer(vocab: usize) -> Tokenizer {
    let words: HashMap<String, u32> = (0..vocab as u32).map(|i| (format!("t{i}"), i)).collect();
    let model =
        WordLevel::builder().vocab(words.into_iter().collect()).unk_token("t0".into()).build().unwrap();
    Tokenizer::new(model)
}

fn gpt2<E: Backend>(measuring: bool, samples: usize) {
    let config = if measuring {
        Gpt2Config::gpt2_small()
    } else {
        Gpt2Config { n_layer: 2, n_embd: 64, n_head: 4, vocab_size: 500, ..Gpt2Config::gpt2_small() }
    };
    let model: Gpt2LMHeadModel<E> = seeded::<E, _>(1, |device| config.init(device));
    let vocab = config.vocab_size as u32;
    let clean: Vec<u32> =
        [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13].map(|t| t % vocab).to_vec();
    let mut corrupted = clean.clone();
    for p in [1, 2] {
        corrupted[p] = (corrupted[p] + 1) % vocab;
    }
    let (ids, mask) = prompt::<E>(&clean);
    let time = median(3, samples, || sync(model.forward(ids.clone(), mask.clone())));
    report("gpt2-small forward 1x10", time, None);
    let time = median(3, samples, || {
        let out = model
            .trace((ids.clone(), mask.clone()))
            .run(async |m| {
                let _h = m.transformer.h[config.n_layer / 2].output().await?;
                m.output().await
            })
            .unwrap();
        sync(out)
    });
    report("gpt2-small trace 1x10 (reads a block output)", time, None);
    let metric = LogitDiff { answer: 11, distractor: 42 };
    let entries = config.n_layer * clean.len();
    let time = median(1, samples.min(5), || {
        black_box(model.residual_patching_sweep(&clean, &corrupted, metric).unwrap());
    });
    report(&format!("gpt2-small residual patching sweep, {entries} entries"), time, None);
}

fn llama<E: Backend>(measuring: bool, samples: usize) {
    let (layers, hidden, intermediate, heads, kv_heads, vocab) =
        if measuring { (16, 2048, 8192, 32, 8, 128_256) } else { (2, 64, 128, 4, 2, 512) };
    let config = LlamaConfig::from_json(&format!(
        r#"{{"model_type": "llama", "vocab_size": {vocab}, "hidden_size": {hidden},
            "intermediate_size": {intermediate}, "num_hidden_layers": {layers},
            "num_attention_heads": {heads}, "num_key_value_heads": {kv_heads},
            "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "rope_scaling": {{"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}},
            "tie_word_embeddings": true, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}}"#
    ))
    .unwrap();
    let model: LlamaForCausalLM<E> = seeded::<E, _>(2, |device| config.init(device));
    let lm = LanguageModel::new(model, tokenizer(vocab), 0, Default::default());
    let ids = |batch: usize, tokens: usize| -> Vec<Vec<u32>> {
        (0..batch).map(|b| (0..tokens).map(|t| ((b * 7919 + t * 104_729) % vocab) as u32).collect()).collect()
    };
    let (prefill_batch, prefill_tokens) = if measuring { (8, 512) } else { (2, 16) };
    let prefill = ids(prefill_batch, prefill_tokens);
    let time = median(2, samples, || sync(lm.forward(prefill.clone()).unwrap()));
    report(&format!("llama-1b-shape prefill {prefill_batch}x{prefill_tokens}"), time, None);
    let short = ids(1, 16);
    let time = median(3, samples, || sync(lm.forward(short.clone()).unwrap()));
    report("llama-1b-shape forward 1x16", time, None);
    let new_tokens = if measuring { 32 } else { 2 };
    let options = GenerateOptions::greedy(new_tokens).ignore_eos();
    let time = median(1, samples.min(5), || {
        black_box(lm.generate(short.clone(), options.clone()).unwrap());
    });
    report(
        &format!("llama-1b-shape greedy generation of {new_tokens} tokens"),
        time,
        Some((new_tokens, "token")),
    );
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let samples = if measuring { 11 } else { 1 };
    match dtype().as_str() {
        "f32" => {
            gpt2::<B>(measuring, samples);
            llama::<B>(measuring, samples);
        }
        #[cfg(any(feature = "tch", feature = "cuda"))]
        "bf16" => {
            type H = nnsight_support::backend::WithFloat<burn::tensor::bf16>;
            gpt2::<H>(measuring, samples);
            llama::<H>(measuring, samples);
        }
        #[cfg(any(feature = "tch", feature = "cuda"))]
        "f16" => {
            type H = nnsight_support::backend::WithFloat<burn::tensor::f16>;
            gpt2::<H>(measuring, samples);
            llama::<H>(measuring, samples);
        }
        other => eprintln!(
            "NNSIGHT_BENCH_DTYPE={other}: not an element type this backend runs (f32; f16 and bf16 on LibTorch and CUDA)"
        ),
    }
}
