//! Fused attention when nothing watches the probabilities: GPT-2 and Llama give the same logits
//! (within float rounding) whether their attention runs fused (no body, cache or edit touches
//! the probabilities) or explicit (a cache records every layer's probabilities), for one prompt
//! and for a left-padded batch, at every real position. The fixture fidelity tests check both
//! paths against transformers as well: most read block outputs only (fused), the Llama readout
//! reads every layer's probabilities (explicit).

use crate::support;

use burn::prelude::*;
use support::B;
use support::fixture::{assert_close, tiny_gpt2};
use support::llama_fixture::tiny_llama;

/// Rounding between the fused kernel and the explicit softmax (measured up to 1.2e-5 on the
/// tiny Llama's logits on the CPU backend, whose kernel has its own `exp`); the fixtures'
/// tolerance against transformers.
const TOL: f32 = 1e-4;

const PROMPTS: [&str; 2] = ["The quick brown fox jumps", "Hi"];

/// The logits of the real positions of each prompt, `[tokens, vocab]`, from a left-padded batch.
fn real_rows(logits: Tensor<B, 3>, mask: Tensor<B, 2, Int>) -> Vec<Tensor<B, 2>> {
    let [batch, tokens, vocab] = logits.dims();
    let mask: Vec<i64> = mask.into_data().iter::<i64>().collect();
    (0..batch)
        .map(|row| {
            let pad = mask[row * tokens..(row + 1) * tokens].iter().filter(|&&m| m == 0).count();
            logits.clone().slice([row..row + 1, pad..tokens, 0..vocab]).reshape([tokens - pad, vocab])
        })
        .collect()
}

/// Both paths agree at every real position of `prompts`; `cached` values were recorded.
fn assert_same(
    family: &str,
    (fused, explicit, cached): (Tensor<B, 3>, Tensor<B, 3>, usize),
    layers: usize,
    mask: Tensor<B, 2, Int>,
) {
    assert_eq!(cached, layers, "every layer's probabilities were made");
    let rows = |l| real_rows(l, mask.clone());
    for (i, (f, e)) in rows(fused).iter().zip(rows(explicit)).enumerate() {
        assert_close(&format!("{family} logits of prompt {i}"), f, &e, TOL);
    }
}

#[test]
fn gpt2_logits_are_the_same_fused_and_explicit() {
    let lm = tiny_gpt2();
    let layers = lm.model().transformer.h.len();
    for prompts in [vec![PROMPTS[0]], PROMPTS.to_vec()] {
        let runs = support::fused_and_explicit!(lm, prompts, |m| m
            .transformer
            .h
            .iter()
            .map(|b| b.attn.attn_dropout.path())
            .collect());
        assert_same("GPT-2", runs, layers, lm.batch(prompts).unwrap().attention_mask);
    }
}

#[test]
fn llama_logits_are_the_same_fused_and_explicit() {
    let lm = tiny_llama();
    let layers = lm.model().model.layers.len();
    for prompts in [vec![PROMPTS[0]], PROMPTS.to_vec()] {
        let runs = support::fused_and_explicit!(lm, prompts, |m| m
            .model
            .layers
            .iter()
            .map(|l| l.self_attn.attn_probs.path())
            .collect());
        assert_same("Llama", runs, layers, lm.batch(prompts).unwrap().attention_mask);
    }
}
