//! Fused attention when nothing watches the probabilities: GPT-2 and Llama give the same logits
//! (within float rounding) whether their attention runs fused (no body, cache or edit touches
//! the probabilities) or explicit (a cache records every layer's probabilities), for one prompt
//! and for a left-padded batch, at every real position. The fixture fidelity tests check both
//! paths against transformers as well: most read block outputs only (fused), the Llama readout
//! reads every layer's probabilities (explicit).

use crate::support;

use burn::prelude::*;
use nnsight::prelude::*;
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

#[test]
fn gpt2_logits_are_the_same_fused_and_explicit() {
    let lm = tiny_gpt2();
    for prompts in [vec![PROMPTS[0]], PROMPTS.to_vec()] {
        let batch = lm.batch(prompts.clone()).unwrap();
        let fused = lm.trace(prompts.clone()).run(async |m| m.output().await).unwrap();
        let (explicit, cache) = lm
            .trace(prompts.clone())
            .run(async |m| {
                let paths: Vec<String> = m.transformer.h.iter().map(|b| b.attn.attn_dropout.path()).collect();
                let cache = m.cache(CacheOptions::only(paths).with_inputs())?;
                Ok((m.output().await?, cache))
            })
            .unwrap();
        assert_eq!(cache.len(), 2 * lm.model().transformer.h.len(), "every layer's probabilities were made");
        let rows = |l| real_rows(l, batch.attention_mask.clone());
        for (i, (f, e)) in rows(fused).iter().zip(rows(explicit)).enumerate() {
            assert_close(&format!("GPT-2 logits of prompt {i}"), f, &e, TOL);
        }
    }
}

#[test]
fn llama_logits_are_the_same_fused_and_explicit() {
    let lm = tiny_llama();
    for prompts in [vec![PROMPTS[0]], PROMPTS.to_vec()] {
        let batch = lm.batch(prompts.clone()).unwrap();
        let fused = lm.trace(prompts.clone()).run(async |m| m.output().await).unwrap();
        let (explicit, cache) = lm
            .trace(prompts.clone())
            .run(async |m| {
                let paths: Vec<String> =
                    m.model.layers.iter().map(|l| l.self_attn.attn_probs.path()).collect();
                let cache = m.cache(CacheOptions::only(paths))?;
                Ok((m.output().await?, cache))
            })
            .unwrap();
        assert_eq!(cache.len(), lm.model().model.layers.len(), "every layer's probabilities were made");
        let rows = |l| real_rows(l, batch.attention_mask.clone());
        for (i, (f, e)) in rows(fused).iter().zip(rows(explicit)).enumerate() {
            assert_close(&format!("Llama logits of prompt {i}"), f, &e, TOL);
        }
    }
}
