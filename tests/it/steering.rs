//! Steering vectors (`nnsight_toolkit::steering`): a difference of means equals the last-token
//! layer outputs averaged by hand; a steered generation equals the same standing edit written by
//! hand (tokens and every step's logits); a scale sweep's rows equal one steered generation per
//! scale; vectors survive safetensors, and llama.cpp control vectors (written by llama.cpp's
//! `gguf` package, `tools/fixtures/make_control_vector_fixture.py`) read to the values written;
//! bad files and misuse are typed errors.

use crate::support;

use std::collections::BTreeMap;

use burn::prelude::*;
use nnsight::Error;
use nnsight_models::generation::GenerateOptions;
use nnsight_toolkit::steering::{Apply, SteeringVector};
use support::B;
use support::fixture::{Expected, assert_close, fixture_dir, tiny_gpt2};
use support::llama_fixture::tiny_llama;

const PROMPT: &str = "The Eiffel Tower is in";
const PAIRS: [(&str, &str); 2] = [("I love this city", "I hate this city"), ("What a joy", "What a pain")];

#[test]
fn a_difference_of_means_is_the_last_tokens_averaged_by_hand() {
    let lm = tiny_gpt2();
    let vector = SteeringVector::from_pairs(&lm, &PAIRS, [0, 1]).unwrap();
    assert_eq!(vector.layers(), [0, 1]);
    for layer in [0, 1] {
        let last = |prompt: &str| -> Tensor<B, 1> {
            let h: Tensor<B, 3> =
                lm.trace(prompt).run(async |m| m.transformer.h[layer].output().await).unwrap();
            let [_, t, d] = h.dims();
            h.narrow(1, t - 1, 1).reshape([d])
        };
        let by_hand = PAIRS.iter().map(|(p, n)| last(p) - last(n)).reduce(|a, b| a + b).unwrap() / 2.0;
        assert_close(&format!("layer {layer}"), vector.direction(layer).unwrap(), &by_hand, 1e-6);
    }
}

#[test]
fn a_steered_generation_equals_the_standing_edit_by_hand() {
    let lm = tiny_gpt2();
    let vector = SteeringVector::from_pairs(&lm, &PAIRS, [1]).unwrap();
    let options = GenerateOptions::greedy(6).ignore_eos().with_logits();
    for apply in [Apply::scaled(3.0), Apply::scaled(-2.0).last_token(), Apply::scaled(5.0).at_steps(1..3)] {
        let steered = vector.generate(&lm, PROMPT, options.clone(), &apply).unwrap();
        let delta = vector.direction(1).unwrap().clone() * apply.scale;
        let ((), by_hand) = lm
            .generator(PROMPT, options.clone())
            .run(async |m| {
                let (delta, last_only) = (delta.clone(), apply.last_token_only);
                m.transformer.h[1].output().steps(
                    apply.steps.clone().unwrap_or(0..u32::MAX),
                    move |h: Tensor<B, 3>| {
                        let [b, t, d] = h.dims();
                        let from = if last_only { t - 1 } else { 0 };
                        let shifted =
                            h.clone().slice([0..b, from..t, 0..d]) + delta.clone().reshape([1, 1, d]);
                        h.slice_assign([0..b, from..t, 0..d], shifted)
                    },
                )
            })
            .unwrap();
        assert_eq!(steered.tokens, by_hand.tokens, "{apply:?}");
        assert_eq!(steered.logits, by_hand.logits, "{apply:?}");
    }
    let plain = lm.generate(PROMPT, options.clone()).unwrap();
    let steered = vector.generate(&lm, PROMPT, options, &Apply::scaled(20.0)).unwrap();
    assert_ne!(plain.tokens, steered.tokens, "a strong vector changes the text");
}

#[test]
fn a_scale_sweep_is_one_steered_generation_per_scale() {
    let lm = tiny_llama();
    let vector = SteeringVector::from_pairs(&lm, &PAIRS, [0, 1]).unwrap();
    let options = GenerateOptions::greedy(5).ignore_eos().with_logits();
    let scales = [-4.0, 0.0, 4.0];
    let sweep = vector.scale_sweep(&lm, PROMPT, options.clone(), &scales, &Apply::scaled(1.0)).unwrap();
    assert_eq!(sweep.len(), 3);
    for (generation, &scale) in sweep.iter().zip(&scales) {
        let alone = vector.generate(&lm, PROMPT, options.clone(), &Apply::scaled(scale)).unwrap();
        assert_eq!(generation.tokens, alone.tokens, "scale {scale}");
        for (a, b) in generation.logits[0].iter().flatten().zip(alone.logits[0].iter().flatten()) {
            assert!((a - b).abs() < 1e-4, "scale {scale}: {a} vs {b}");
        }
    }
    let plain = lm.generate(PROMPT, options).unwrap();
    assert_eq!(sweep[1].tokens, plain.tokens, "scale 0 is plain generation");
}

#[test]
fn vectors_survive_safetensors_and_llama_cpp_control_vectors_read() {
    let lm = tiny_llama();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("love.safetensors");
    let vector = SteeringVector::from_pairs(&lm, &PAIRS, [0, 1]).unwrap().with_model_hint("llama");
    vector.save(&path).unwrap();
    let back = SteeringVector::<B>::load(&path, &Default::default()).unwrap();
    assert_eq!((back.layers(), back.model_hint()), (vec![0, 1], Some("llama")));
    for layer in [0, 1] {
        support::assert_identical(back.direction(layer).unwrap(), vector.direction(layer).unwrap());
    }

    let control =
        SteeringVector::<B>::load(fixture_dir("control-vector").join("tiny-llama.gguf"), &Default::default())
            .unwrap();
    let expected = Expected::load_from("control-vector");
    assert_eq!((control.layers(), control.model_hint()), (vec![1], Some("llama")));
    support::assert_identical(control.direction(1).unwrap(), &expected.tensor("direction.1"));
    // It steers as llama.cpp does: added to layer 1's output.
    let options = GenerateOptions::greedy(4).ignore_eos();
    let steered = control.generate(&lm, PROMPT, options.clone(), &Apply::scaled(8.0)).unwrap();
    let by_hand = SteeringVector::new(BTreeMap::from([(1, expected.tensor::<1>("direction.1"))]))
        .unwrap()
        .generate(&lm, PROMPT, options, &Apply::scaled(8.0))
        .unwrap();
    assert_eq!(steered.tokens, by_hand.tokens);
}

#[test]
fn bad_vector_files_and_misuse_are_typed_errors() {
    let (lm, gpt2) = (tiny_llama(), tiny_gpt2());
    let dir = tempfile::tempdir().unwrap();
    let device = Default::default();
    let load = |path: &std::path::Path| SteeringVector::<B>::load(path, &device).unwrap_err();
    // A truncated control vector, a GGUF that is not one, a file that is neither.
    let bytes = std::fs::read(fixture_dir("control-vector").join("tiny-llama.gguf")).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..bytes.len() - 40]).unwrap();
    assert!(matches!(load(&truncated), Error::Load { .. }));
    let error = load(&fixture_dir("gguf").join("tiny-llama.gguf"));
    assert!(error.to_string().contains("general.architecture is `controlvector`"), "{error}");
    let text = dir.path().join("vector.safetensors");
    std::fs::write(&text, b"not a safetensors file").unwrap();
    assert!(matches!(load(&text), Error::Load { .. }));
    // A vector for another width, a layer past the model's, no pair, another number of prompts.
    let wide = SteeringVector::new(BTreeMap::from([(1, Tensor::<B, 1>::zeros([65], &device))])).unwrap();
    let error = wide.generate(&lm, PROMPT, GenerateOptions::greedy(2), &Apply::scaled(1.0)).unwrap_err();
    assert!(error.to_string().contains("65 wide; the Llama residual stream is 64"), "{error}");
    let deep = SteeringVector::new(BTreeMap::from([(7, Tensor::<B, 1>::zeros([64], &device))])).unwrap();
    let error = deep.generate(&lm, PROMPT, GenerateOptions::greedy(2), &Apply::scaled(1.0)).unwrap_err();
    assert!(error.to_string().contains("layer 7 of a 2-layer"), "{error}");
    assert!(SteeringVector::from_pairs(&gpt2, &[], [0]).is_err());
    assert!(SteeringVector::from_pairs(&gpt2, &PAIRS, [5]).unwrap_err().to_string().contains("layer 5"));
    assert!(SteeringVector::<B>::new(BTreeMap::new()).is_err());
    let vector = SteeringVector::from_pairs(&gpt2, &PAIRS, [0]).unwrap();
    let error =
        vector.generate(&gpt2, ["a", "b"], GenerateOptions::greedy(2), &Apply::scaled(1.0)).unwrap_err();
    assert!(error.to_string().contains("is 2 prompts; one is read"), "{error}");
    assert_eq!(gpt2.generate(PROMPT, GenerateOptions::greedy(2)).unwrap().tokens[0].len(), 2);
}
