//! Llama against the reference implementation: the tiny Llama fixture (grouped-query attention,
//! Llama-3 rotary scaling, untied head), loaded through the loader users use, must reproduce what
//! Hugging Face transformers computed (`tools/fixtures/make_llama_fixture.py`) within 1e-4 —
//! every layer output, every layer's attention probabilities, the final norm and the logits, for
//! one prompt, for a left-padded batch, and for a KV-cached continuation — and loading errors
//! must name the tensor.

use crate::support;

use std::fs;

use burn::prelude::*;
use nnsight::Error;
use nnsight::prelude::*;
use nnsight_models::generation::GenerateOptions;
use nnsight_models::kv_cache::KvCache;
use nnsight_models::llama::{LlamaConfig, LlamaForCausalLM};
use nnsight_models::weights::Weights;
use support::B;
use support::fixture::{assert_close, fixture_dir};
use support::llama_fixture::{
    TINY_LLAMA, TinyLlama, copy_of_tiny_llama, llama_expected, load_llama, rename_llama_weights,
    rewrite_llama_weights, tiny_llama,
};

const TOL: f32 = 1e-4;
const HEADS: usize = 4;

/// Everything the fixture records, read in one trace.
struct Readout {
    hidden: Vec<Tensor<B, 3>>,
    probs: Vec<Tensor<B, 4>>,
    norm: Tensor<B, 3>,
    logits: Tensor<B, 3>,
}

fn read_everything(lm: &TinyLlama, prompts: impl Into<nnsight_models::Prompts>) -> Readout {
    lm.trace(prompts)
        .run(async |m| {
            let (mut hidden, mut probs) = (Vec::new(), Vec::new());
            for layer in &m.model.layers {
                probs.push(layer.self_attn.attn_probs.output::<Tensor<B, 4>>().await?);
                hidden.push(layer.output().await?);
            }
            let norm = m.model.norm.output::<Tensor<B, 3>>().await?;
            Ok(Readout { hidden, probs, norm, logits: m.output().await? })
        })
        .unwrap()
}

#[test]
fn tokenizer_and_padding_match_transformers() {
    let (lm, expected) = (tiny_llama(), llama_expected());
    let prompt = expected.text("single", "prompt");
    assert_eq!(vec![lm.encode(&prompt).unwrap()], expected.rows("single.input_ids"));

    let batch = lm.batch(expected.batch_prompts()).unwrap();
    let ids: Vec<i64> = batch.input_ids.to_data().iter::<i64>().collect();
    let mask: Vec<i64> = batch.attention_mask.to_data().iter::<i64>().collect();
    let flat = |name: &str| expected.rows(name).concat().into_iter().map(i64::from).collect::<Vec<_>>();
    assert_eq!(ids, flat("batch.input_ids"), "left padding with the first end-of-text id");
    assert_eq!(mask, flat("batch.attention_mask"));
}

#[test]
fn rotary_frequencies_match_transformers() {
    let expected = llama_expected();
    let config = LlamaConfig::from_file(&fixture_dir(TINY_LLAMA).join("config.json")).unwrap();
    let reference = expected.values("rope.inv_freq");
    let ours = config.inv_freq().unwrap();
    assert_eq!(ours.len(), reference.len());
    for (i, (a, e)) in ours.iter().zip(reference).enumerate() {
        assert!(((a - e) / e).abs() <= 1e-6, "inv_freq[{i}]: {a} vs transformers' {e}");
    }
    let lm = tiny_llama();
    let loaded = lm.model().model.rotary_emb.inv_freq.to_data().to_vec::<f32>().unwrap();
    assert_eq!(loaded, ours);
}

#[test]
fn single_prompt_matches_transformers() {
    let (lm, expected) = (tiny_llama(), llama_expected());
    let out = read_everything(&lm, expected.text("single", "prompt").as_str());
    assert_eq!(out.hidden.len(), 2);
    for (i, (hidden, probs)) in out.hidden.iter().zip(&out.probs).enumerate() {
        assert_close(
            &format!("layers[{i}] output"),
            hidden,
            &expected.tensor(&format!("single.hidden.{i}")),
            TOL,
        );
        assert_eq!(probs.dims()[1], HEADS, "one pattern per query head");
        assert_close(
            &format!("layers[{i}] attention"),
            probs,
            &expected.tensor(&format!("single.attn_probs.{i}")),
            TOL,
        );
    }
    assert_close("norm output", &out.norm, &expected.tensor("single.norm"), TOL);
    assert_close("logits", &out.logits, &expected.tensor("single.logits"), TOL);
}

#[test]
fn padded_batch_matches_transformers_at_every_token() {
    let (lm, expected) = (tiny_llama(), llama_expected());
    let prompts = expected.batch_prompts();
    let out = read_everything(&lm, prompts.clone());
    let batch = lm.batch(prompts).unwrap();
    // Padding positions hold whatever each implementation computes there; compare the tokens.
    for row in 0..batch.len() {
        let real = batch.column(row, 0)..batch.columns();
        let rows3 = |t: Tensor<B, 3>| t.slice([row..row + 1, real.clone()]);
        let rows4 = |t: Tensor<B, 4>| t.slice([row..row + 1, 0..HEADS, real.clone(), real.clone()]);
        for i in 0..out.hidden.len() {
            let expected_hidden = rows3(expected.tensor(&format!("batch.hidden.{i}")));
            assert_close(
                &format!("prompt {row}, layers[{i}]"),
                &rows3(out.hidden[i].clone()),
                &expected_hidden,
                TOL,
            );
            let expected_probs = rows4(expected.tensor(&format!("batch.attn_probs.{i}")));
            assert_close(
                &format!("prompt {row}, attention {i}"),
                &rows4(out.probs[i].clone()),
                &expected_probs,
                TOL,
            );
            // Real queries give padding exactly zero weight.
            let on_padding =
                out.probs[i].clone().slice([row..row + 1, 0..HEADS, real.clone(), 0..real.start]);
            assert!(on_padding.to_data().iter::<f32>().all(|p| p == 0.0), "prompt {row} attends to padding");
        }
        let expected_norm = rows3(expected.tensor("batch.norm"));
        assert_close(&format!("prompt {row}, norm"), &rows3(out.norm.clone()), &expected_norm, TOL);
        let expected_logits = rows3(expected.tensor("batch.logits"));
        assert_close(&format!("prompt {row}, logits"), &rows3(out.logits.clone()), &expected_logits, TOL);
    }
}

#[test]
fn a_prompt_gives_the_same_logits_alone_and_left_padded_in_a_batch() {
    let lm = tiny_llama();
    let short = "The Colosseum is in";
    let alone = lm.forward(short).unwrap();
    let batched = lm.forward(["The Eiffel Tower is in the city of", short]).unwrap();
    let (tokens, columns) = (alone.dims()[1], batched.dims()[1]);
    assert!(columns > tokens, "the short prompt is padded");
    assert_close("padded vs alone", &batched.slice([1..2, columns - tokens..columns]), &alone, 1e-5);
}

/// Prefills `ids` (with `mask`), then runs `next` against the cache: the step's logits.
fn cached_step(
    model: &LlamaForCausalLM<B>,
    ids: Tensor<B, 2, Int>,
    mask: Tensor<B, 2, Int>,
    next: Tensor<B, 2, Int>,
) -> Tensor<B, 3> {
    let mut cache = KvCache::new(model.model.layers.len());
    let columns = ids.dims()[1];
    model.forward_cached(ids, mask.clone(), &mut cache);
    assert_eq!(cache.len(), columns);
    let full_mask = Tensor::cat(vec![mask, next.ones_like()], 1);
    let step = model.forward_cached(next, full_mask, &mut cache);
    assert_eq!(cache.len(), columns + 1);
    step
}

#[test]
fn a_cached_continuation_matches_the_uncached_logits_and_transformers() {
    let (lm, expected) = (tiny_llama(), llama_expected());
    let model = lm.model();
    for case in ["single", "batch"] {
        let ids = expected.ids(&format!("{case}.input_ids"));
        let mask = if case == "single" { ids.ones_like() } else { expected.ids("batch.attention_mask") };
        let next = expected.ids(&format!("cached.{case}.next_ids"));
        let step = cached_step(model, ids.clone(), mask.clone(), next.clone());
        assert_close(
            &format!("{case}: cached step"),
            &step,
            &expected.tensor(&format!("cached.{case}.logits")),
            TOL,
        );

        let full_mask = Tensor::cat(vec![mask, next.ones_like()], 1);
        let uncached = model.forward(Tensor::cat(vec![ids, next], 1), full_mask);
        let columns = uncached.dims()[1];
        let last = uncached.slice([0..step.dims()[0], columns - 1..columns]);
        // The same computation with different products: a one-row step runs on the few-rows
        // kernel, the uncached batch on gemm, so sums differ in order (≈ 2e-6 relative).
        assert_close(&format!("{case}: cached vs uncached"), &step, &last, 5e-5);
    }
}

#[test]
fn greedy_generation_equals_transformers_alone_and_in_a_padded_batch() {
    let (lm, expected) = (tiny_llama(), llama_expected());
    let eos = lm.eos_ids()[0];
    let reference = |name: &str| expected.generated(name, eos);
    let single = lm.generate(expected.text("single", "prompt"), GenerateOptions::greedy(8)).unwrap();
    assert_eq!(single.tokens, reference("generate.single.new_ids"));
    let batch = lm.generate(expected.batch_prompts(), GenerateOptions::greedy(8)).unwrap();
    assert_eq!(batch.tokens, reference("generate.batch.new_ids"));
}

#[test]
fn an_identity_intervention_on_every_site_leaves_the_logits_bit_identical() {
    let lm = tiny_llama();
    let prompt = "The Eiffel Tower is in the city of";
    let plain = lm.forward(prompt).unwrap();
    let traced = trace!(lm, prompt, |m| {
        for layer in &m.model.layers {
            let act: Tensor<B, 3> = layer.mlp.act_fn.output();
            layer.mlp.act_fn.output() = act;
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
fn the_activation_and_the_attention_pattern_are_sites_that_change_the_output() {
    let lm = tiny_llama();
    let prompt = "The Colosseum is in";
    let (gate, act) = lm
        .trace(prompt)
        .run(async |m| {
            let mlp = &m.model.layers[1].mlp;
            Ok((mlp.gate_proj.output::<Tensor<B, 3>>().await?, mlp.act_fn.output().await?))
        })
        .unwrap();
    let silu = gate.clone() * burn::tensor::activation::sigmoid(gate);
    assert_close("act_fn output = silu(gate_proj output)", &act, &silu, 1e-6);

    // Uniform attention over the visible keys of layer 0: a different model, still finite.
    let plain = lm.forward(prompt).unwrap();
    let uniform = lm
        .trace(prompt)
        .run(async |m| {
            m.model.layers[0]
                .self_attn
                .attn_probs
                .output::<Tensor<B, 4>>()
                .edit(|p| {
                    let visible = p.clone().greater_elem(0.0).float();
                    visible.clone() / visible.sum_dim(3)
                })
                .await?;
            m.output().await
        })
        .unwrap();
    support::assert_differs(&plain, &uniform);
    assert!(uniform.to_data().iter::<f32>().all(f32::is_finite));
}

#[test]
fn tensors_by_name_build_the_same_model_as_the_checkpoint() {
    let lm = tiny_llama();
    let dir = fixture_dir(TINY_LLAMA);
    let config = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    let weights = Weights::open(&[dir.join("model.safetensors")]).unwrap();
    let model = LlamaForCausalLM::<B>::from_tensors(
        &config,
        |name, shape| Ok(weights.read(name, shape)?.to_vec::<f32>().unwrap()),
        &Default::default(),
    )
    .unwrap();
    let batch = lm.batch("The Eiffel Tower is in the city of").unwrap();
    let ours = model.forward(batch.input_ids.clone(), batch.attention_mask.clone());
    support::assert_identical(&lm.model().forward(batch.input_ids, batch.attention_mask), &ours);

    let missing = LlamaForCausalLM::<B>::from_tensors(
        &config,
        |name, shape| match name {
            "model.layers.1.mlp.up_proj.weight" => {
                Err(Error::MissingWeight { name: name.to_owned(), file: "a GGUF file".to_owned() })
            }
            _ => Ok(weights.read(name, shape)?.to_vec::<f32>().unwrap()),
        },
        &Default::default(),
    );
    let named = |name: &str| name == "model.layers.1.mlp.up_proj.weight";
    assert!(matches!(missing, Err(Error::MissingWeight { ref name, .. }) if named(name)));
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = copy_of_tiny_llama();
    rewrite_llama_weights(dir.path(), |name| name != "model.layers.1.self_attn.k_proj.weight", |_, s| s);
    let error = load_llama(dir.path()).expect_err("loading must fail");
    let message = error.to_string();
    assert!(matches!(error, Error::MissingWeight { .. }), "{message}");
    for part in ["`model.layers.1.self_attn.k_proj.weight`", "missing", "model.safetensors"] {
        assert!(message.contains(part), "`{message}` does not mention `{part}`");
    }
}

#[test]
fn a_misshapen_tensor_is_named_with_both_shapes() {
    let dir = copy_of_tiny_llama();
    rewrite_llama_weights(
        dir.path(),
        |_| true,
        |name, shape| if name == "model.layers.0.self_attn.v_proj.weight" { vec![64, 64] } else { shape },
    );
    let error = load_llama(dir.path()).expect_err("loading must fail");
    let message = error.to_string();
    assert!(matches!(error, Error::BadWeight { .. }), "{message}");
    for part in ["`model.layers.0.self_attn.v_proj.weight`", "[64, 64]", "[32, 64]"] {
        assert!(message.contains(part), "`{message}` does not mention `{part}`");
    }
}

#[test]
fn names_without_the_model_prefix_load_too() {
    let dir = copy_of_tiny_llama();
    rename_llama_weights(dir.path(), |name| name.trim_start_matches("model.").to_owned());
    let prompt = "The Eiffel Tower is in the city of";
    let renamed = load_llama(dir.path()).unwrap();
    support::assert_identical(&renamed.forward(prompt).unwrap(), &tiny_llama().forward(prompt).unwrap());
}

#[test]
fn a_bad_config_is_reported_with_its_path() {
    let dir = copy_of_tiny_llama();
    let config = fs::read_to_string(dir.path().join("config.json")).unwrap();
    fs::write(
        dir.path().join("config.json"),
        config.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"),
    )
    .unwrap();
    let error = load_llama(dir.path()).expect_err("loading must fail");
    assert!(matches!(error, Error::Load { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("config.json") && message.contains("num_key_value_heads 3"), "{message}");
}

#[test]
fn a_tied_head_needs_no_lm_head_weight_and_shares_the_embedding() {
    let dir = copy_of_tiny_llama();
    rewrite_llama_weights(dir.path(), |name| name != "lm_head.weight", |_, s| s);
    let config = fs::read_to_string(dir.path().join("config.json")).unwrap();
    let tied = config.replace("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true");
    assert_ne!(tied, config);
    fs::write(dir.path().join("config.json"), tied).unwrap();
    let lm = load_llama(dir.path()).unwrap();
    let model = lm.model();
    support::assert_identical(&model.lm_head.weight.val(), &model.model.embed_tokens.weight.val());
}

#[test]
fn the_same_weights_as_a_mistral_use_the_sliding_window() {
    let expected = llama_expected();
    let dir = copy_of_tiny_llama();
    fs::copy(fixture_dir(TINY_LLAMA).join("mistral/config.json"), dir.path().join("config.json")).unwrap();
    let mistral = load_llama(dir.path()).unwrap();
    assert_eq!(mistral.model().model.sliding_window, Some(3));

    let single = mistral.forward(expected.text("single", "prompt").as_str()).unwrap();
    assert_close("mistral logits", &single, &expected.tensor("mistral.single.logits"), TOL);
    let batch = mistral.batch(expected.batch_prompts()).unwrap();
    let logits = mistral.model().forward(batch.input_ids.clone(), batch.attention_mask.clone());
    for row in 0..batch.len() {
        let real = batch.column(row, 0)..batch.columns();
        let rows3 = |t: Tensor<B, 3>| t.slice([row..row + 1, real.clone()]);
        let reference = rows3(expected.tensor("mistral.batch.logits"));
        assert_close(&format!("mistral prompt {row}"), &rows3(logits.clone()), &reference, TOL);
    }

    // With a cache the window still slides: the step equals the uncached run's last position.
    let ids = expected.ids("single.input_ids");
    let next = expected.ids("cached.single.next_ids");
    let step = cached_step(mistral.model(), ids.clone(), ids.ones_like(), next.clone());
    let all = Tensor::cat(vec![ids, next], 1);
    let uncached = mistral.model().forward(all.clone(), all.ones_like());
    let columns = uncached.dims()[1];
    assert_close("mistral cached vs uncached", &step, &uncached.slice([0..1, columns - 1..columns]), 1e-5);
}
