//! Half precision: the tiny GPT-2 and Llama load their f32 checkpoints converted to the
//! backend's element type (LibTorch `f16` and `bf16` here; `Cuda<bf16>` in the GPU check) and
//! give logits within a stated tolerance of the f32 model's, at every real position of one prompt
//! and of a left-padded batch, on the fused attention and on the explicit one (which must stay
//! finite at padding: masked scores get the element type's lowest finite value).
//!
//! burn keeps one element type per device and process (the first backend type to touch a device
//! fixes it), so each half-precision run is a child process of this test binary running
//! [`one_element_type`] alone; this process computes the f32 side.

use std::process::Command;

use burn::backend::LibTorch;
use burn::prelude::*;
use burn::tensor::{DType, Element};
use burn::tensor::{bf16, f16};
use nnsight_models::LanguageModel;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use nnsight_models::llama::LlamaForCausalLM;

use crate::support::fixture::fixture_dir;

const PROMPTS: [&str; 2] = ["The quick brown fox jumps", "Hi"];

/// The largest difference allowed from the f32 logits, as a fraction of their largest magnitude:
/// `f16` keeps 11 significant bits, `bf16` 8. Measured on LibTorch CPU: f16 0.018 (GPT-2) and
/// 0.036–0.041 (Llama) of logits up to 24.7 and 16.9, i.e. ≤ 0.25 %; bf16 0.13–0.16 and
/// 0.30–0.34, ≤ 2 %.
const F16_TOL: f32 = 0.01;
const BF16_TOL: f32 = 0.05;

/// The logits of the real positions of each prompt, flattened, and the largest magnitude.
fn real_logits<E: Backend>(logits: Tensor<E, 3>, mask: &[i64]) -> Vec<f32> {
    assert_eq!(
        logits.dtype(),
        <E::FloatElem as Element>::dtype(),
        "the model runs in its backend's element type"
    );
    let [batch, tokens, vocab] = logits.dims();
    let values = logits.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    let mut real = Vec::new();
    for row in 0..batch {
        for t in 0..tokens {
            if mask[row * tokens + t] == 1 {
                let start = (row * tokens + t) * vocab;
                real.extend_from_slice(&values[start..start + vocab]);
            }
        }
    }
    real
}

/// The logits of `prompts` fused (nothing watches) and explicit (every layer's probabilities
/// cached), real positions only.
fn gpt2<E: Backend>(prompts: &[&str]) -> (Vec<f32>, Vec<f32>) {
    let dir = fixture_dir("tiny-gpt2");
    let lm =
        LanguageModel::<E, Gpt2LMHeadModel<E>>::from_pretrained(dir.to_str().unwrap(), &Default::default())
            .unwrap();
    let prompts = prompts.to_vec();
    let (fused, explicit, _) = crate::support::fused_and_explicit!(lm, prompts, |m| m
        .transformer
        .h
        .iter()
        .map(|b| b.attn.attn_dropout.path())
        .collect());
    real_pair(&lm.batch(prompts).unwrap().attention_mask, fused, explicit)
}

fn llama<E: Backend>(prompts: &[&str]) -> (Vec<f32>, Vec<f32>) {
    let dir = fixture_dir("tiny-llama");
    let lm =
        LanguageModel::<E, LlamaForCausalLM<E>>::from_pretrained(dir.to_str().unwrap(), &Default::default())
            .unwrap();
    let prompts = prompts.to_vec();
    let (fused, explicit, _) = crate::support::fused_and_explicit!(lm, prompts, |m| m
        .model
        .layers
        .iter()
        .map(|l| l.self_attn.attn_probs.path())
        .collect());
    real_pair(&lm.batch(prompts).unwrap().attention_mask, fused, explicit)
}

/// Both runs' real logits.
fn real_pair<E: Backend>(
    mask: &Tensor<E, 2, Int>,
    fused: Tensor<E, 3>,
    explicit: Tensor<E, 3>,
) -> (Vec<f32>, Vec<f32>) {
    let mask: Vec<i64> = mask.to_data().iter::<i64>().collect();
    (real_logits(fused, &mask), real_logits(explicit, &mask))
}

fn assert_follows(what: &str, half: &[f32], full: &[f32], tol: f32) {
    assert_eq!(half.len(), full.len(), "{what}: lengths");
    let scale = full.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let worst = half.iter().zip(full).map(|(h, f)| (h - f).abs()).fold(0.0f32, f32::max);
    assert!(half.iter().all(|v| v.is_finite()), "{what}: not finite");
    assert!(
        worst <= tol * scale,
        "{what}: differs from f32 by {worst} (logits up to {scale}; allowed {tol} of it)"
    );
    eprintln!("{what}: largest difference from f32 {worst:.4} of logits up to {scale:.2}");
}

/// Every run of one element type: (family, prompts) → (fused, explicit).
type Runs = Vec<(String, Vec<f32>, Vec<f32>)>;

fn runs<E: Backend>() -> Runs {
    let mut runs = Vec::new();
    for prompts in [&PROMPTS[..1], &PROMPTS[..]] {
        let n = prompts.len();
        let (fused, explicit) = gpt2::<E>(prompts);
        runs.push((format!("GPT-2, {n} prompt(s)"), fused, explicit));
        let (fused, explicit) = llama::<E>(prompts);
        runs.push((format!("Llama, {n} prompt(s)"), fused, explicit));
    }
    runs
}

/// The child's side: with `NNSIGHT_DTYPE_RUN=<f16|bf16>:<file>`, computes [`runs`] on
/// `LibTorch<f16>` or `LibTorch<bf16>` and writes them to the file as JSON; without it, nothing.
#[test]
fn one_element_type() {
    let Some(request) = std::env::var_os("NNSIGHT_DTYPE_RUN") else { return };
    let request = request.into_string().unwrap();
    let (dtype, file) = request.split_once(':').unwrap();
    let runs = match dtype {
        "f16" => runs::<LibTorch<f16>>(),
        "bf16" => runs::<LibTorch<bf16>>(),
        other => panic!("unknown element type {other}"),
    };
    std::fs::write(file, serde_json::to_vec(&runs).unwrap()).unwrap();
}

/// Runs [`one_element_type`] in a child process for `dtype`.
fn child(dtype: &str) -> Runs {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{dtype}.json"));
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "dtypes::one_element_type", "--test-threads", "1"])
        .env("NNSIGHT_DTYPE_RUN", format!("{dtype}:{}", file.display()))
        .status()
        .unwrap();
    assert!(status.success(), "the {dtype} run failed");
    serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap()
}

#[test]
fn half_precision_models_follow_the_f32_model() {
    assert_eq!(<f32 as Element>::dtype(), DType::F32);
    let full = runs::<LibTorch<f32>>();
    for (dtype, tol) in [("f16", F16_TOL), ("bf16", BF16_TOL)] {
        let half = child(dtype);
        assert_eq!(half.len(), full.len());
        for ((what, fused, explicit), (_, full_fused, full_explicit)) in half.iter().zip(&full) {
            assert_follows(&format!("{what} {dtype}, fused"), fused, full_fused, tol);
            assert_follows(&format!("{what} {dtype}, explicit"), explicit, full_explicit, tol);
        }
    }
}
