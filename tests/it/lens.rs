//! The toolkit's logit lens and tuned lens (`nnsight_toolkit::lens`) on every causal-LM family:
//! the top tokens and tracked probabilities equal transformers' layer outputs (the fixtures)
//! decoded by hand through each model's own final norm and head and sorted on the CPU; a tuned
//! lens equals its translators applied by hand; its last layer is the model's own prediction;
//! misuse is a typed error.

use crate::support;

use burn::prelude::*;
use nnsight::Error;
use nnsight_models::vocabulary::Standardized;
use nnsight_models::{CausalLm, LanguageModel};
use nnsight_toolkit::lens::{Lens, LogitLens, Translator};
use support::B;
use support::causal_lms::{Decoder, tiny_gemma3, tiny_mamba};
use support::fixture::{Expected, tiny_gpt2};
use support::llama_fixture::tiny_llama;

const PROMPT: &str = "The Eiffel Tower is in the city of";
const K: usize = 5;

/// Softmax probabilities `[positions][vocab]` of logits `[1, positions, vocab]`, on the CPU.
fn probabilities(logits: Tensor<B, 3>) -> Vec<Vec<f32>> {
    let [_, positions, vocab] = logits.dims();
    let values = logits.into_data().to_vec::<f32>().unwrap();
    (0..positions)
        .map(|p| {
            let row = &values[p * vocab..(p + 1) * vocab];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f64> = row.iter().map(|&v| f64::from(v - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            exps.iter().map(|e| (e / sum) as f32).collect()
        })
        .collect()
}

/// The lens at `layer` against probabilities computed by hand: each top token has its
/// probability, they are in order, and none is below the k-th largest by hand (ties within
/// rounding may swap).
fn check_layer(name: &str, lens: &Lens, layer: usize, by_hand: &[Vec<f32>], tracked: &[u32]) {
    for (position, probs) in by_hand.iter().enumerate() {
        let top = lens.top(layer, position);
        assert_eq!(top.len(), K);
        let mut sorted = probs.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        for (rank, &(id, p)) in top.iter().enumerate() {
            let at = format!("{name} layer {layer} position {position} rank {rank}");
            assert!((p - probs[id as usize]).abs() <= 1e-5, "{at}: {p} vs {} by hand", probs[id as usize]);
            assert!(p >= sorted[K - 1] - 1e-5, "{at}: {p} is below the k-th largest {}", sorted[K - 1]);
            if rank > 0 {
                assert!(p <= top[rank - 1].1, "{at}: not in order");
            }
        }
        for &id in tracked {
            let p = lens.probability(layer, position, id).unwrap();
            assert!((p - probs[id as usize]).abs() <= 1e-5, "{name} layer {layer}: p({id}) = {p}");
        }
    }
}

fn check_family<M: Standardized<B>>(lm: &LanguageModel<B, M>, decoder: Decoder, fixture: &str) {
    let tracked = [3, 17];
    let lens = LogitLens::new(K).track(&tracked).run(lm, PROMPT).unwrap();
    assert_eq!(lens.layers(), lm.model().vocabulary().num_layers);
    assert_eq!(lens.tokens(), lm.encode(PROMPT).unwrap().as_slice());
    let expected = Expected::load_from(fixture);
    for layer in 0..lens.layers() {
        let h = expected.tensor(&format!("single.hidden.{layer}"));
        check_layer(fixture, &lens, layer, &probabilities(decoder.decode(h)), &tracked);
    }
    // The last layer is the model's own prediction.
    let own = probabilities(lm.forward(PROMPT).unwrap());
    check_layer(&format!("{fixture} (own logits)"), &lens, lens.layers() - 1, &own, &tracked);
}

#[test]
fn the_lens_equals_transformers_layers_decoded_by_hand_on_every_family() {
    check_family(&tiny_gpt2(), Decoder::Gpt2, "tiny-gpt2");
    check_family(&tiny_llama(), Decoder::Llama, "tiny-llama");
    check_family(&tiny_mamba(), Decoder::Mamba, "tiny-mamba");
    check_family(&tiny_gemma3(), Decoder::Gemma3, "tiny-gemma3");
}

/// `h + h·Wᵀ + b` with loops on the CPU.
fn translate_by_hand(h: &Tensor<B, 3>, w: &[f32], b: &[f32]) -> Tensor<B, 3> {
    let [batch, positions, hidden] = h.dims();
    let x = h.to_data().to_vec::<f32>().unwrap();
    let mut out = x.clone();
    for row in 0..batch * positions {
        for i in 0..hidden {
            let dot: f32 = (0..hidden).map(|j| x[row * hidden + j] * w[i * hidden + j]).sum();
            out[row * hidden + i] += dot + b[i];
        }
    }
    Tensor::from_data(TensorData::new(out, [batch, positions, hidden]), &Default::default())
}

#[test]
fn a_tuned_lens_applies_its_translators_and_zero_translators_are_the_logit_lens() {
    let lm = tiny_llama();
    let words = lm.model().vocabulary();
    let residuals = nnsight_models::vocabulary::residual_stream(&lm, PROMPT).unwrap();
    let hidden = residuals[0].dims()[2];
    let device = Default::default();
    let zero = |_| Translator::<B> {
        weight: Tensor::zeros([hidden, hidden], &device),
        bias: Tensor::zeros([hidden], &device),
    };
    let plain = LogitLens::new(K).track(&[5]).run(&lm, PROMPT).unwrap();
    let zeroed = LogitLens::new(K)
        .track(&[5])
        .tuned((0..words.num_layers).map(zero).collect())
        .run(&lm, PROMPT)
        .unwrap();
    assert_eq!(plain, zeroed, "zero translators leave the lens as it was");

    let translators: Vec<Translator<B>> = (0..words.num_layers)
        .map(|i| Translator {
            weight: support::input([hidden, hidden], 10 + i as u64) * 0.1,
            bias: support::input([hidden], 20 + i as u64) * 0.1,
        })
        .collect();
    let tuned = LogitLens::new(K).track(&[5]).tuned(translators.clone()).run(&lm, PROMPT).unwrap();
    for (layer, (h, t)) in residuals.iter().zip(&translators).enumerate() {
        let w = t.weight.to_data().to_vec::<f32>().unwrap();
        let b = t.bias.to_data().to_vec::<f32>().unwrap();
        let by_hand = probabilities(Decoder::Llama.decode(translate_by_hand(h, &w, &b)));
        check_layer("tuned", &tuned, layer, &by_hand, &[5]);
    }
    assert_ne!(tuned, plain);
}

#[test]
fn lens_misuse_is_a_typed_error() {
    let lm = tiny_gpt2();
    let vocab = lm.model().vocab_size();
    let hidden = nnsight_models::vocabulary::residual_stream(&lm, PROMPT).unwrap()[0].dims()[2];
    let device = Default::default();
    let layers = lm.model().vocabulary().num_layers;
    let translator = |w: usize, b: usize| Translator::<B> {
        weight: Tensor::zeros([w, w], &device),
        bias: Tensor::zeros([b], &device),
    };
    let cases: Vec<(&str, nnsight::Result<Lens>, &str)> = vec![
        ("k = 0", LogitLens::new(0).run(&lm, PROMPT), "k = 0"),
        ("k past the vocabulary", LogitLens::new(vocab + 1).run(&lm, PROMPT), "top k tokens"),
        (
            "tracked id past the vocabulary",
            LogitLens::new(K).track(&[vocab as u32]).run(&lm, PROMPT),
            "outside the vocabulary",
        ),
        ("two prompts", LogitLens::new(K).run(&lm, ["a", "b"]), "is 2 prompts; one is read"),
        (
            "an id past the vocabulary",
            LogitLens::new(K).run(&lm, vec![1, vocab as u32]),
            "outside the vocabulary",
        ),
        (
            "one translator too few",
            LogitLens::new(K)
                .tuned((1..layers).map(|_| translator(hidden, hidden)).collect())
                .run(&lm, PROMPT),
            "translators for",
        ),
        (
            "a translator of the wrong width",
            LogitLens::new(K)
                .tuned((0..layers).map(|_| translator(hidden + 1, hidden)).collect())
                .run(&lm, PROMPT),
            "the residual stream is",
        ),
    ];
    for (case, result, message) in cases {
        let error = result.unwrap_err();
        assert!(matches!(error, Error::Input { .. }), "{case}: {error}");
        assert!(error.to_string().contains(message), "{case}: {error}");
    }
    let lens = LogitLens::new(K).track(&[3]).run(&lm, PROMPT).unwrap();
    assert!(lens.probability(0, 0, 4).unwrap_err().to_string().contains("not tracked"));
    assert!(lens.probability(layers, 0, 3).unwrap_err().to_string().contains("layers ×"));
}
