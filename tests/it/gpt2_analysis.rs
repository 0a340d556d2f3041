//! Activation analysis on GPT-2 (the workflow of `examples/activation_analysis.rs`), on the tiny
//! GPT-2 fixture: in ONE trace, read every block's output (the residual stream), the attention
//! probabilities of the middle layer (the input of `attn.attn_dropout`) and the logits; then derive
//! what the example prints — residual norms at the last token, the last token's attention over the
//! prompt (averaged over heads) and the top-5 next tokens.
//!
//! Each readout is checked against PyTorch (`expected.safetensors`, within 1e-4) and against a
//! hooks-free recomputation that runs the burn modules by hand (embeddings, `Gpt2Block::forward`,
//! `ln_f`, `lm_head`, and the attention's own `split_heads` / `probabilities`); each derived
//! number is checked against the same number computed in plain Rust from the PyTorch tensors.

use crate::support;

use burn::prelude::*;
use burn::tensor::activation::softmax;
use nnsight_models::causal::CausalMask;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use nnsight_models::kv_cache::LayerCache;
use support::B;
use support::fixture::{Expected, TinyGpt2, assert_close, tiny_gpt2};

/// Agreement with PyTorch.
const TOL: f32 = 1e-4;
/// Agreement between a trace and the same computation by hand (same burn ops, same order).
const EXACT: f32 = 1e-5;

/// What the example reads.
struct Readout {
    /// Every block's output `[1, T, n_embd]`.
    hidden: Vec<Tensor<B, 3>>,
    /// The attention probabilities `[1, heads, T, T]` of the middle block.
    attention: Tensor<B, 4>,
    /// `[1, T, vocab]`.
    logits: Tensor<B, 3>,
}

/// The middle layer, whose attention pattern is read.
fn middle(lm: &TinyGpt2) -> usize {
    lm.model().transformer.h.len() / 2
}

/// The whole readout in one trace.
fn read_in_one_trace(lm: &TinyGpt2, prompt: &str, layer: usize) -> Readout {
    lm.trace(prompt)
        .run(async |m| {
            let (mut hidden, mut attention) = (Vec::new(), None);
            for (i, block) in m.transformer.h.iter().enumerate() {
                if i == layer {
                    attention = Some(block.attn.attn_dropout.input::<Tensor<B, 4>>().await?);
                }
                hidden.push(block.output().await?);
            }
            let logits = m.output().await?;
            Ok(Readout { hidden, attention: attention.expect("the layer exists"), logits })
        })
        .unwrap()
}

/// The same readout without a trace: the modules run by hand.
fn read_by_hand(model: &Gpt2LMHeadModel<B>, ids: &[u32], layer: usize) -> Readout {
    let device = Default::default();
    let tokens = ids.len();
    let ids: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
    let input_ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, tokens]), &device);
    let mask = CausalMask::new(&Tensor::ones([1, tokens], &device), tokens);
    let t = &model.transformer;
    let mut x = t.drop.forward(t.wte.forward(input_ids) + t.wpe.forward(mask.position_ids));
    let (mut hidden, mut attention) = (Vec::new(), None);
    for (i, block) in t.h.iter().enumerate() {
        if i == layer {
            let qkv = block.attn.c_attn.forward(block.ln_1.forward(x.clone()));
            let (q, k, _) = block.attn.split_heads(qkv);
            attention = Some(block.attn.probabilities(q, k, &mask.masked));
        }
        x = block.forward(x, &mask.masked, &mut LayerCache::disabled());
        hidden.push(x.clone());
    }
    let logits = model.lm_head.forward(t.ln_f.forward(x));
    Readout { hidden, attention: attention.expect("the layer exists"), logits }
}

// ---- what the example derives, with burn ----

/// The L2 norm of each block's output at the last token.
fn last_token_norms(hidden: &[Tensor<B, 3>]) -> Vec<f32> {
    hidden
        .iter()
        .map(|h| {
            let [_, tokens, _] = h.dims();
            h.clone().slice([0..1, tokens - 1..tokens]).powf_scalar(2.0).sum().sqrt().into_scalar()
        })
        .collect()
}

/// The last token's attention over every token, averaged over heads.
fn last_token_attention(probs: &Tensor<B, 4>) -> Vec<f32> {
    let [_, heads, queries, keys] = probs.dims();
    let last = probs.clone().slice([0..1, 0..heads, queries - 1..queries]);
    last.mean_dim(1).reshape([keys]).to_data().to_vec().unwrap()
}

/// The `k` most likely next tokens and their probabilities.
fn top_k(logits: &Tensor<B, 3>, k: usize) -> Vec<(u32, f32)> {
    let [_, tokens, vocab] = logits.dims();
    let probs = softmax(logits.clone().slice([0..1, tokens - 1..tokens]).reshape([vocab]), 0);
    let (values, ids) = probs.topk_with_indices(k, 0);
    let values: Vec<f32> = values.to_data().to_vec().unwrap();
    let ids = ids.to_data().iter::<i64>().map(|id| id as u32).collect::<Vec<_>>();
    ids.into_iter().zip(values).collect()
}

// ---- the same, in plain Rust on the PyTorch tensors ----

fn values<const D: usize>(t: &Tensor<B, D>) -> Vec<f32> {
    t.to_data().to_vec().unwrap()
}

fn reference_norm(hidden: &Tensor<B, 3>) -> f32 {
    let width = hidden.dims()[2];
    let v = values(hidden);
    v[v.len() - width..].iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn reference_attention(probs: &Tensor<B, 4>) -> Vec<f32> {
    let [_, heads, queries, keys] = probs.dims();
    let v = values(probs);
    let row = |h: usize, k: usize| v[(h * queries + queries - 1) * keys + k];
    (0..keys).map(|k| (0..heads).map(|h| row(h, k)).sum::<f32>() / heads as f32).collect()
}

fn reference_top_k(logits: &Tensor<B, 3>, k: usize) -> Vec<(u32, f32)> {
    let vocab = logits.dims()[2];
    let v = values(logits);
    let last = &v[v.len() - vocab..];
    let max = last.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f32 = last.iter().map(|x| (x - max).exp()).sum();
    let mut ranked: Vec<(u32, f32)> =
        last.iter().enumerate().map(|(id, x)| (id as u32, (x - max).exp() / total)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(k);
    ranked
}

fn assert_all_near(what: &str, actual: &[f32], expected: &[f32], tol: f32) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!((a - e).abs() <= tol * e.abs().max(1.0), "{what}[{i}]: {a} vs {e}");
    }
}

// ---- tests ----

#[test]
fn one_trace_reads_every_layer_the_attention_and_the_logits() {
    let (lm, expected) = (tiny_gpt2(), Expected::load());
    let prompt = expected.text("single", "prompt");
    let layer = middle(&lm);
    let traced = read_in_one_trace(&lm, &prompt, layer);
    let by_hand = read_by_hand(lm.model(), &lm.encode(&prompt).unwrap(), layer);

    assert_eq!(traced.hidden.len(), lm.model().transformer.h.len());
    for (i, h) in traced.hidden.iter().enumerate() {
        assert_close(&format!("h[{i}] vs PyTorch"), h, &expected.tensor(&format!("single.hidden.{i}")), TOL);
        assert_close(&format!("h[{i}] vs by hand"), h, &by_hand.hidden[i], EXACT);
    }
    let reference = expected.tensor(&format!("single.attn_probs.{layer}"));
    assert_close("attention vs PyTorch", &traced.attention, &reference, TOL);
    assert_close("attention vs by hand", &traced.attention, &by_hand.attention, EXACT);
    assert_close("logits vs PyTorch", &traced.logits, &expected.tensor("single.logits"), TOL);
    assert_close("logits vs by hand", &traced.logits, &by_hand.logits, EXACT);
}

#[test]
fn residual_norms_at_the_last_token_match_the_reference() {
    let (lm, expected) = (tiny_gpt2(), Expected::load());
    let readout = read_in_one_trace(&lm, &expected.text("single", "prompt"), middle(&lm));
    let reference: Vec<f32> = (0..readout.hidden.len())
        .map(|i| reference_norm(&expected.tensor(&format!("single.hidden.{i}"))))
        .collect();
    assert_all_near("norms", &last_token_norms(&readout.hidden), &reference, TOL);
}

#[test]
fn attention_of_the_last_token_matches_the_reference() {
    let (lm, expected) = (tiny_gpt2(), Expected::load());
    let layer = middle(&lm);
    let readout = read_in_one_trace(&lm, &expected.text("single", "prompt"), layer);
    let pattern = last_token_attention(&readout.attention);
    let reference = reference_attention(&expected.tensor(&format!("single.attn_probs.{layer}")));
    assert_all_near("attention", &pattern, &reference, TOL);
    assert!((pattern.iter().sum::<f32>() - 1.0).abs() < 1e-5, "a distribution over the prompt");
}

#[test]
fn top5_next_tokens_match_the_reference_logits() {
    let (lm, expected) = (tiny_gpt2(), Expected::load());
    let readout = read_in_one_trace(&lm, &expected.text("single", "prompt"), middle(&lm));
    let top = top_k(&readout.logits, 5);
    let reference = reference_top_k(&expected.tensor("single.logits"), 5);
    let ids = |t: &[(u32, f32)]| t.iter().map(|&(id, _)| id).collect::<Vec<_>>();
    let probs = |t: &[(u32, f32)]| t.iter().map(|&(_, p)| p).collect::<Vec<_>>();
    assert_eq!(ids(&top), ids(&reference));
    assert_all_near("probabilities", &probs(&top), &probs(&reference), TOL);
    for (id, _) in top {
        assert!(!lm.token_text(id).unwrap().is_empty(), "token {id} decodes to text");
    }
}

#[test]
fn token_labels_decode_as_in_transformers() {
    let (lm, expected) = (tiny_gpt2(), Expected::load());
    let ids = lm.encode(&expected.text("single", "prompt")).unwrap();
    let labels: Vec<String> = ids.iter().map(|&id| lm.token_text(id).unwrap()).collect();
    let reference: Vec<String> = expected.json["single"]["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().replace('Ġ', " "))
        .collect();
    assert_eq!(labels, reference);
}
