//! Gemma 3 against the reference implementation: the tiny Gemma 3 fixtures, loaded through the
//! loader users use, must reproduce what Hugging Face transformers computed
//! (`tools/fixtures/make_gemma3_fixture.py`) within 1e-4 — every layer, the q/k norms, what
//! attention and the MLP add, the attention probabilities (with the sliding window biting), the
//! logits alone, in a left-padded batch and continued from the cache, greedy generation — and
//! interventions must act where they are written.

use crate::support;

use std::path::Path;

use burn::prelude::*;
use nnsight::Error;
use nnsight::prelude::*;
use nnsight_models::LanguageModel;
use nnsight_models::gemma3::{Gemma3ForCausalLM, LayerType};
use nnsight_models::generation::GenerateOptions;
use nnsight_models::kv_cache::KvCache;
use nnsight_models::vocabulary::{Standardized, logit_lens};
use support::B;
use support::checkpoint::{copy_of, edit_config, rewrite};
use support::fixture::{Expected, assert_close, fixture_dir};

const TOL: f32 = 1e-4;
const TINY: &str = "tiny-gemma3";
const SWITCHES: &str = "tiny-gemma3/switches";

type TinyGemma = LanguageModel<B, Gemma3ForCausalLM<B>>;

fn load(dir: &Path) -> Result<TinyGemma, Error> {
    LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default())
}

fn tiny() -> TinyGemma {
    load(&fixture_dir(TINY)).expect("the fixture loads")
}

fn expected() -> Expected {
    Expected::load_from(TINY)
}

#[test]
fn every_site_of_one_prompt_matches_transformers() {
    let (lm, expected) = (tiny(), expected());
    let types: Vec<LayerType> = lm.model().model.layers.iter().map(|l| l.self_attn.layer_type).collect();
    assert_eq!(types, [LayerType::SlidingAttention, LayerType::FullAttention, LayerType::SlidingAttention]);
    let (sites4, sites3, embed, norm, logits) = lm
        .trace(expected.text("single", "prompt").as_str())
        .run(async |m| {
            let embed = m.model.embed_tokens.output().await?;
            let (mut sites4, mut sites3) = (Vec::new(), Vec::new());
            for (i, layer) in m.model.layers.iter().enumerate() {
                let attn = &layer.self_attn;
                sites4.push((format!("q_norm.{i}"), attn.q_norm.output().await?));
                sites4.push((format!("k_norm.{i}"), attn.k_norm.output().await?));
                sites4.push((format!("attn_probs.{i}"), attn.attn_probs.output::<Tensor<B, 4>>().await?));
                sites3.push((
                    format!("post_attention_layernorm.{i}"),
                    layer.post_attention_layernorm.output().await?,
                ));
                sites3.push((format!("act_fn.{i}"), layer.mlp.act_fn.output().await?));
                sites3.push((
                    format!("post_feedforward_layernorm.{i}"),
                    layer.post_feedforward_layernorm.output().await?,
                ));
                sites3.push((format!("hidden.{i}"), layer.output().await?));
            }
            Ok((sites4, sites3, embed, m.model.norm.output().await?, m.output().await?))
        })
        .unwrap();
    for (name, value) in &sites4 {
        assert_close(name, value, &expected.tensor(&format!("single.{name}")), TOL);
    }
    for (name, value) in &sites3 {
        assert_close(name, value, &expected.tensor(&format!("single.{name}")), TOL);
    }
    assert_close("embed_tokens", &embed, &expected.tensor("single.embed_tokens"), TOL);
    assert_close("norm", &norm, &expected.tensor("single.norm"), TOL);
    assert_close("logits", &logits, &expected.tensor("single.logits"), TOL);
    // The window of 3 on the sliding layers: the last query gives the first keys nothing.
    let (_, probs) = &sites4[2];
    let n = probs.dims()[2];
    let far: f32 = probs.clone().slice([0..1, 0..4, n - 1..n, 0..n - 3]).abs().sum().into_scalar();
    assert_eq!(far, 0.0, "a sliding layer attends beyond its window");
}

/// The real (unpadded) columns of row `row` of a `[batch, tokens, ..]` value.
fn real_columns(t: Tensor<B, 3>, row: usize, start: usize) -> Tensor<B, 3> {
    let columns = t.dims()[1];
    t.slice([row..row + 1, start..columns])
}

fn assert_batch_matches(lm: &TinyGemma, expected: &Expected, prefix: &str) {
    let prompts = expected.batch_prompts();
    let (hidden, norm, logits) = lm
        .trace(prompts.clone())
        .run(async |m| {
            let mut hidden = Vec::new();
            for layer in &m.model.layers {
                hidden.push(layer.output().await?);
            }
            Ok((hidden, m.model.norm.output().await?, m.output().await?))
        })
        .unwrap();
    let batch = lm.batch(prompts).unwrap();
    for row in 0..batch.len() {
        let start = batch.column(row, 0);
        let pick = |t: Tensor<B, 3>| real_columns(t, row, start);
        for (i, h) in hidden.iter().enumerate() {
            let reference = pick(expected.tensor(&format!("{prefix}batch.hidden.{i}")));
            assert_close(&format!("{prefix}prompt {row}, layers[{i}]"), &pick(h.clone()), &reference, TOL);
        }
        let reference = pick(expected.tensor(&format!("{prefix}batch.norm")));
        assert_close(&format!("{prefix}prompt {row}, norm"), &pick(norm.clone()), &reference, TOL);
        let reference = pick(expected.tensor(&format!("{prefix}batch.logits")));
        assert_close(&format!("{prefix}prompt {row}, logits"), &pick(logits.clone()), &reference, TOL);
    }
}

#[test]
fn a_left_padded_batch_matches_transformers_and_each_prompt_alone() {
    let (lm, expected) = (tiny(), expected());
    let batch = lm.batch(expected.batch_prompts()).unwrap();
    let ids: Vec<i64> = batch.input_ids.to_data().iter::<i64>().collect();
    let flat = expected.rows("batch.input_ids").concat().into_iter().map(i64::from).collect::<Vec<_>>();
    assert_eq!(ids, flat, "left padding with the pad id");
    assert_batch_matches(&lm, &expected, "");
    let short = "The Colosseum is in";
    let alone = lm.forward(short).unwrap();
    let batched = lm.forward(expected.batch_prompts()).unwrap();
    let (tokens, columns) = (alone.dims()[1], batched.dims()[1]);
    assert!(columns > tokens);
    assert_close("padded vs alone", &batched.slice([1..2, columns - tokens..columns]), &alone, 1e-5);
}

#[test]
fn the_other_switches_match_transformers() {
    // attention_bias, an untied head, final_logit_softcapping 3, the older config spelling.
    let lm = load(&fixture_dir(SWITCHES)).unwrap();
    let expected = expected();
    let model = lm.model();
    assert!(model.model.layers[0].self_attn.q_proj.bias.is_some());
    assert_eq!(model.final_logit_softcapping, Some(3.0));
    let (hidden, logits) = lm
        .trace(expected.text("single", "prompt").as_str())
        .run(async |m| {
            let mut hidden = Vec::new();
            for layer in &m.model.layers {
                hidden.push(layer.output().await?);
            }
            Ok((hidden, m.output().await?))
        })
        .unwrap();
    for (i, h) in hidden.iter().enumerate() {
        assert_close(
            &format!("layers[{i}]"),
            h,
            &expected.tensor(&format!("switches.single.hidden.{i}")),
            TOL,
        );
    }
    assert_close("soft-capped logits", &logits, &expected.tensor("switches.single.logits"), TOL);
    let most: f32 = logits.abs().max().into_scalar();
    assert!(most < 3.0, "soft-capped logits stay inside the cap: {most}");
    assert_batch_matches(&lm, &expected, "switches.");
}

#[test]
fn a_cached_continuation_matches_transformers_and_the_uncached_run() {
    let (lm, expected) = (tiny(), expected());
    let model = lm.model();
    let (ids, mask) = (expected.ids("batch.input_ids"), expected.ids("batch.attention_mask"));
    let next = expected.ids("cached.batch.next_ids");
    let mut cache = KvCache::new(model.model.layers.len());
    model.forward_cached(ids.clone(), mask.clone(), &mut cache);
    let full_mask = Tensor::cat(vec![mask, next.ones_like()], 1);
    let step = model.forward_cached(next.clone(), full_mask.clone(), &mut cache);
    assert_close("cached step", &step, &expected.tensor("cached.batch.logits"), TOL);
    let uncached = model.forward(Tensor::cat(vec![ids, next], 1), full_mask);
    let columns = uncached.dims()[1];
    assert_close("cached vs uncached", &step, &uncached.slice([0..2, columns - 1..columns]), 1e-5);
}

#[test]
fn greedy_generation_equals_transformers_alone_and_in_a_padded_batch() {
    let (lm, expected) = (tiny(), expected());
    let eos = lm.eos_ids()[0];
    let reference = |name: &str| expected.generated(name, eos);
    let single = lm.generate(expected.text("single", "prompt"), GenerateOptions::greedy(8)).unwrap();
    assert_eq!(single.tokens, reference("generate.single.new_ids"));
    let batch = lm.generate(expected.batch_prompts(), GenerateOptions::greedy(8)).unwrap();
    assert_eq!(batch.tokens, reference("generate.batch.new_ids"));
}

#[test]
fn an_identity_intervention_on_every_site_leaves_the_logits_bit_identical() {
    let lm = tiny();
    let prompt = "The Eiffel Tower is in the city of";
    let plain = lm.forward(prompt).unwrap();
    let traced = trace!(lm, prompt, |m| {
        for layer in &m.model.layers {
            let q = layer.self_attn.q_norm.output();
            layer.self_attn.q_norm.output() = q;
            let added = layer.post_feedforward_layernorm.output();
            layer.post_feedforward_layernorm.output() = added;
            let h = layer.output();
            layer.output() = h;
        }
        m.output()
    })
    .unwrap();
    support::assert_identical(&plain, &traced);

    // Watching the attention probabilities makes them (the explicit steps instead of the fused
    // kernel, equal within rounding); writing them back unchanged then changes no bit.
    let read = trace!(lm, prompt, |m| {
        for layer in &m.model.layers {
            let _probs: Tensor<B, 4> = layer.self_attn.attn_probs.output();
        }
        m.output()
    })
    .unwrap();
    let rewritten = trace!(lm, prompt, |m| {
        for layer in &m.model.layers {
            let probs: Tensor<B, 4> = layer.self_attn.attn_probs.output();
            layer.self_attn.attn_probs.output() = probs;
        }
        m.output()
    })
    .unwrap();
    support::assert_identical(&read, &rewritten);
    assert_close("logits, explicit vs fused attention", &read, &plain, TOL);
}

#[test]
fn interventions_act_where_they_are_written() {
    let lm = tiny();
    let prompt = "The Colosseum is in";
    // Zeroing what attention adds leaves the residual stream after attention equal to the
    // layer's input: the MLP's norm reads the input.
    let (input, mid) = lm
        .trace(prompt)
        .run(async |m| {
            let layer = &m.model.layers[1];
            let input: Tensor<B, 3> = layer.input().await?;
            layer.post_attention_layernorm.output().edit(|a| a.zeros_like()).await?;
            Ok((input, layer.pre_feedforward_layernorm.input().await?))
        })
        .unwrap();
    support::assert_identical(&input, &mid);

    // The vocabulary's places are Gemma's: attention's contribution is post_attention_layernorm's
    // output, the residual between attention and MLP the MLP norm's input.
    let words = lm.model().vocabulary();
    assert_eq!(words.attention(1).unwrap().path, "model.layers.1.post_attention_layernorm");
    assert_eq!(
        words.alias("blocks.2.hook_resid_mid").unwrap().path,
        "model.layers.2.pre_feedforward_layernorm"
    );
    assert_eq!(
        words.alias("blocks.0.attn.hook_pattern").unwrap().path,
        "model.layers.0.self_attn.attn_probs"
    );

    // The logit lens: the last layer's reading is the model's own logits.
    let lens = logit_lens(&lm, prompt).unwrap();
    assert_eq!(lens.len(), 3);
    assert_close("lens of the last layer", &lens[2], &lm.forward(prompt).unwrap(), 1e-5);

    // A token id outside the vocabulary written into the embedding is an error, and the model
    // stays usable.
    let error = lm
        .trace(prompt)
        .run(async |m| {
            let ids: Tensor<B, 2, Int> = m.model.embed_tokens.input().await?;
            m.model.embed_tokens.input().replace(ids.ones_like() * 600).await?;
            Ok(())
        })
        .unwrap_err();
    assert!(error.to_string().contains("outside the vocabulary"), "{error}");
    assert_close("after the error", &lm.forward(prompt).unwrap(), &lm.forward(prompt).unwrap(), 0.0);

    // Steering the residual stream at every decoding step changes the continuation.
    let options = GenerateOptions::greedy(4).ignore_eos();
    let plain = lm.generate(prompt, options.clone()).unwrap();
    let direction = support::input([1, 1, 64], 7) * 100.0;
    let ((), steered) = lm
        .generator(prompt, options)
        .run(async |m| m.model.layers[1].output().every(move |h: Tensor<B, 3>| h + direction.clone()))
        .unwrap();
    assert_ne!(steered.tokens, plain.tokens, "steering changes the continuation");
}

#[test]
fn loading_errors_name_the_tensor_the_field_and_the_architecture() {
    let dir = copy_of(TINY);
    rewrite(dir.path(), "model.layers.1.self_attn.k_norm.weight", ("", vec![]));
    let error = load(dir.path()).expect_err("a missing tensor");
    assert!(matches!(error, Error::MissingWeight { .. }), "{error}");
    assert!(error.to_string().contains("model.layers.1.self_attn.k_norm.weight"), "{error}");

    let dir = copy_of(TINY);
    rewrite(dir.path(), "", ("model.layers.0.self_attn.q_norm.weight", vec![16]));
    let error = load(dir.path()).expect_err("a misshapen tensor");
    let message = error.to_string();
    assert!(matches!(error, Error::BadWeight { .. }), "{message}");
    assert!(message.contains("q_norm.weight") && message.contains("[24]"), "{message}");

    let dir = copy_of(TINY);
    edit_config(dir.path(), "\"num_hidden_layers\": 3", "\"num_hidden_layers\": 2");
    let error = load(dir.path()).expect_err("the config and its layer types disagree");
    assert!(error.to_string().contains("layer_types lists 3 layers"), "{error}");
    let dir = copy_of(TINY);
    edit_config(dir.path(), "\"gelu_pytorch_tanh\"", "\"silu\"");
    let error = load(dir.path()).expect_err("an activation we do not compute");
    assert!(
        error.to_string().contains("hidden_activation") && error.to_string().contains("config.json"),
        "{error}"
    );

    // A GGUF of another architecture is refused by name, and a Llama GGUF's tokenizer is not
    // mistaken for Gemma's.
    let llama = fixture_dir("gguf").join("tiny-llama.gguf");
    let error = TinyGemma::from_gguf(&llama, &Default::default()).expect_err("a Llama GGUF");
    assert!(matches!(error, Error::Load { .. }) && error.to_string().contains("is not gemma3"), "{error}");
    // A truncated file is an error naming it, never a panic.
    let bytes = std::fs::read(&llama).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cut = tmp.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let error = TinyGemma::from_gguf(&cut, &Default::default()).expect_err("a truncated GGUF");
    assert!(error.to_string().contains("cut.gguf"), "{error}");
}
