//! Mamba against the reference implementation: the tiny Mamba fixtures, loaded through the loader
//! users use, must reproduce what Hugging Face transformers computed
//! (`tools/fixtures/make_mamba_fixture.py`) within 1e-4 — every block, every mixer site, the SSM
//! state after every token, the logits alone, in a left-padded batch and continued from the
//! recurrent cache, greedy generation — and the hook points must change what follows them.

use crate::support;

use std::fs;
use std::path::Path;

use burn::prelude::*;
use nnsight::Error;
use nnsight::prelude::*;
use nnsight_models::LanguageModel;
use nnsight_models::generation::GenerateOptions;
use nnsight_models::mamba::{MambaCache, MambaForCausalLM};
use support::B;
use support::checkpoint::{copy_of, rewrite};
use support::fixture::{Expected, assert_close, fixture_dir};

const TOL: f32 = 1e-4;
const TINY_MAMBA: &str = "tiny-mamba";
const SWITCHES: &str = "tiny-mamba/switches";

type TinyMamba = LanguageModel<B, MambaForCausalLM<B>>;

fn load(dir: &Path) -> Result<TinyMamba, Error> {
    LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default())
}

fn tiny_mamba() -> TinyMamba {
    load(&fixture_dir(TINY_MAMBA)).expect("the fixture loads")
}

fn expected() -> Expected {
    Expected::load_from(TINY_MAMBA)
}

/// The sites transformers' hooks and module calls recorded, read in one trace.
#[derive(Default)]
struct Readout {
    hidden: Vec<Tensor<B, 3>>,
    in_proj: Vec<Tensor<B, 3>>,
    conv1d: Vec<Tensor<B, 3>>,
    x_proj: Vec<Tensor<B, 3>>,
    dt_proj: Vec<Tensor<B, 3>>,
    ssm_states: Vec<Tensor<B, 4>>,
    gated_output: Vec<Tensor<B, 3>>,
    out_proj: Vec<Tensor<B, 3>>,
    norm_f: Option<Tensor<B, 3>>,
    logits: Option<Tensor<B, 3>>,
}

fn read_everything(lm: &TinyMamba, prompts: impl Into<nnsight_models::Prompts>) -> Readout {
    lm.trace(prompts)
        .run(async |m| {
            let mut out = Readout::default();
            for layer in &m.backbone.layers {
                let mixer = &layer.mixer;
                out.in_proj.push(mixer.in_proj.output().await?);
                out.conv1d.push(mixer.conv1d.output().await?);
                out.x_proj.push(mixer.x_proj.output().await?);
                out.dt_proj.push(mixer.dt_proj.output().await?);
                out.ssm_states.push(mixer.ssm_states.output().await?);
                out.gated_output.push(mixer.gated_output.output().await?);
                out.out_proj.push(mixer.out_proj.output().await?);
                out.hidden.push(layer.output().await?);
            }
            out.norm_f = Some(m.backbone.norm_f.output().await?);
            out.logits = Some(m.output().await?);
            Ok(out)
        })
        .unwrap()
}

#[test]
fn every_site_of_one_prompt_matches_transformers() {
    let (lm, expected) = (tiny_mamba(), expected());
    let out = read_everything(&lm, expected.text("single", "prompt").as_str());
    assert_eq!(out.hidden.len(), 2);
    let sites = [
        ("hidden", &out.hidden),
        ("in_proj", &out.in_proj),
        ("conv1d", &out.conv1d),
        ("x_proj", &out.x_proj),
        ("dt_proj", &out.dt_proj),
        ("gated_output", &out.gated_output),
        ("out_proj", &out.out_proj),
    ];
    for (site, values) in sites {
        for (i, value) in values.iter().enumerate() {
            let reference = expected.tensor(&format!("single.{site}.{i}"));
            assert_close(&format!("layers[{i}] {site}"), value, &reference, TOL);
        }
    }
    for (i, states) in out.ssm_states.iter().enumerate() {
        let reference = expected.tensor(&format!("single.ssm_states.{i}"));
        assert_close(&format!("layers[{i}] SSM state after every token"), states, &reference, TOL);
    }
    assert_close("norm_f", out.norm_f.as_ref().unwrap(), &expected.tensor("single.norm_f"), TOL);
    assert_close("logits", out.logits.as_ref().unwrap(), &expected.tensor("single.logits"), TOL);
}

/// The real (unpadded) columns of row `row` of a `[batch, tokens, ..]` value.
fn real_columns(t: Tensor<B, 3>, row: usize, start: usize) -> Tensor<B, 3> {
    let columns = t.dims()[1];
    t.slice([row..row + 1, start..columns])
}

fn assert_batch_matches(lm: &TinyMamba, expected: &Expected, prefix: &str) {
    let prompts = expected.batch_prompts();
    let (hidden, norm_f, logits) = lm
        .trace(prompts.clone())
        .run(async |m| {
            let mut hidden = Vec::new();
            for layer in &m.backbone.layers {
                hidden.push(layer.output().await?);
            }
            Ok((hidden, m.backbone.norm_f.output::<Tensor<B, 3>>().await?, m.output().await?))
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
        let reference = pick(expected.tensor(&format!("{prefix}batch.norm_f")));
        assert_close(&format!("{prefix}prompt {row}, norm_f"), &pick(norm_f.clone()), &reference, TOL);
        let reference = pick(expected.tensor(&format!("{prefix}batch.logits")));
        assert_close(&format!("{prefix}prompt {row}, logits"), &pick(logits.clone()), &reference, TOL);
    }
}

#[test]
fn a_left_padded_batch_matches_transformers_and_each_prompt_alone() {
    let (lm, expected) = (tiny_mamba(), expected());
    let batch = lm.batch(expected.batch_prompts()).unwrap();
    let ids: Vec<i64> = batch.input_ids.to_data().iter::<i64>().collect();
    let flat = expected.rows("batch.input_ids").concat().into_iter().map(i64::from).collect::<Vec<_>>();
    assert_eq!(ids, flat, "left padding with the end-of-text id");
    assert_batch_matches(&lm, &expected, "");

    // Padding is masked out: the short prompt alone gives its row of the batch.
    let short = "The Colosseum is in";
    let alone = lm.forward(short).unwrap();
    let batched = lm.forward(expected.batch_prompts()).unwrap();
    let (tokens, columns) = (alone.dims()[1], batched.dims()[1]);
    assert!(columns > tokens);
    assert_close("padded vs alone", &batched.slice([1..2, columns - tokens..columns]), &alone, 1e-5);
}

#[test]
fn the_other_switches_match_transformers() {
    // use_bias, no convolution bias, untied head, time_step_rank 5, kernel 3, expand 3.
    let lm = load(&fixture_dir(SWITCHES)).unwrap();
    let expected = expected();
    let model = lm.model();
    let mixer = &model.backbone.layers[0].mixer;
    assert!(mixer.in_proj.bias.is_some() && mixer.out_proj.bias.is_some() && mixer.conv1d.bias.is_none());
    assert_eq!((mixer.conv1d.kernel(), mixer.dt_proj.weight.dims()[0], mixer.d.dims()[0]), (3, 5, 72));
    let single = lm.trace(expected.text("single", "prompt").as_str()).run(async |m| {
        let mut hidden = Vec::new();
        for layer in &m.backbone.layers {
            hidden.push(layer.output().await?);
        }
        Ok((hidden, m.output().await?))
    });
    let (hidden, logits) = single.unwrap();
    for (i, h) in hidden.iter().enumerate() {
        assert_close(
            &format!("layers[{i}]"),
            h,
            &expected.tensor(&format!("switches.single.hidden.{i}")),
            TOL,
        );
    }
    assert_close("logits", &logits, &expected.tensor("switches.single.logits"), TOL);
    assert_batch_matches(&lm, &expected, "switches.");
}

#[test]
fn a_cached_continuation_matches_transformers_and_the_uncached_run() {
    let (lm, expected) = (tiny_mamba(), expected());
    let model = lm.model();
    let (ids, mask) = (expected.ids("batch.input_ids"), expected.ids("batch.attention_mask"));
    let next = expected.ids("cached.batch.next_ids");
    let mut cache = MambaCache::new(model.backbone.layers.len());
    assert!(cache.is_empty());
    model.forward_cached(ids.clone(), mask.clone(), &mut cache);
    assert!(!cache.is_empty());
    let full_mask = Tensor::cat(vec![mask, next.ones_like()], 1);
    let step = model.forward_cached(next.clone(), full_mask.clone(), &mut cache);
    assert_close("cached step", &step, &expected.tensor("cached.batch.logits"), TOL);

    let uncached = model.forward(Tensor::cat(vec![ids, next], 1), full_mask);
    let columns = uncached.dims()[1];
    assert_close("cached vs uncached", &step, &uncached.slice([0..2, columns - 1..columns]), 1e-5);
}

#[test]
fn greedy_generation_equals_transformers_alone_and_in_a_padded_batch() {
    let (lm, expected) = (tiny_mamba(), expected());
    let eos = lm.eos_ids()[0];
    let reference = |name: &str| expected.generated(name, eos);
    let single = lm.generate(expected.text("single", "prompt"), GenerateOptions::greedy(8)).unwrap();
    assert_eq!(single.tokens, reference("generate.single.new_ids"));
    let batch = lm.generate(expected.batch_prompts(), GenerateOptions::greedy(8)).unwrap();
    assert_eq!(batch.tokens, reference("generate.batch.new_ids"));
}

#[test]
fn an_identity_intervention_on_every_site_leaves_the_logits_bit_identical() {
    let lm = tiny_mamba();
    let prompt = "The Eiffel Tower is in the city of";
    let plain = lm.forward(prompt).unwrap();
    let traced = trace!(lm, prompt, |m| {
        for layer in &m.backbone.layers {
            let conv = layer.mixer.conv1d.output();
            layer.mixer.conv1d.output() = conv;
            let states: Tensor<B, 4> = layer.mixer.ssm_states.output();
            layer.mixer.ssm_states.output() = states;
            let gated: Tensor<B, 3> = layer.mixer.gated_output.output();
            layer.mixer.gated_output.output() = gated;
            let h = layer.output();
            layer.output() = h;
        }
        m.output()
    })
    .unwrap();
    support::assert_identical(&plain, &traced);
}

#[test]
fn the_hook_points_feed_what_follows_them() {
    let lm = tiny_mamba();
    let prompt = "The Colosseum is in";
    // Zero SSM states: the scan contributes nothing, the mixer's gated output is D·x·silu(gate),
    // with x the activated convolution (act's first visit) and silu(gate) its second.
    let (x, silu_gate, gated, d) = lm
        .trace(prompt)
        .run(async |m| {
            let mixer = &m.backbone.layers[1].mixer;
            let x = mixer.act.output().at(0).await?;
            mixer.ssm_states.output::<Tensor<B, 4>>().edit(|s| s.zeros_like()).await?;
            let silu_gate = mixer.act.output().at(1).await?;
            let gated = mixer.gated_output.output::<Tensor<B, 3>>().await?;
            Ok((x, silu_gate, gated, lm.model().backbone.layers[1].mixer.d.val()))
        })
        .unwrap();
    let inner = d.dims()[0];
    let by_hand = (x * d.reshape([1, inner, 1]) * silu_gate).swap_dims(1, 2);
    assert_close("gated output with zero SSM states", &gated, &by_hand, 1e-6);

    // A zero gated output leaves out_proj (no bias here) nothing: the block passes its input on.
    let (input, output) = lm
        .trace(prompt)
        .run(async |m| {
            let layer = &m.backbone.layers[0];
            let input: Tensor<B, 3> = layer.input().await?;
            layer.mixer.gated_output.output::<Tensor<B, 3>>().edit(|g| g.zeros_like()).await?;
            Ok((input, layer.output().await?))
        })
        .unwrap();
    support::assert_identical(&input, &output);
}

#[test]
fn every_decoding_step_is_a_new_visit_and_steering_works() {
    let lm = tiny_mamba();
    let prompt = "The Eiffel Tower is in the city of";
    let tokens = lm.encode(prompt).unwrap().len();
    let options = GenerateOptions::greedy(4).ignore_eos();
    let (shapes, generation) = lm
        .generator(prompt, options.clone())
        .run(async |m| {
            let mut shapes = Vec::new();
            for step in 0..4 {
                let states = m.backbone.layers[1].mixer.ssm_states.output::<Tensor<B, 4>>().at(step).await?;
                shapes.push(states.dims());
            }
            Ok(shapes)
        })
        .unwrap();
    assert_eq!(shapes[0], [1, tokens, 64, 8], "step 0 is the prefill");
    assert!(shapes[1..].iter().all(|s| *s == [1, 1, 64, 8]), "later steps see one token: {shapes:?}");
    assert_eq!(generation, lm.generate(prompt, options.clone()).unwrap(), "reading changes nothing");

    // A replaced state feeds the scan's outputs and, at the last token, what the next step
    // continues from — not the recurrence of the call that made it. Scaling the last layer's state
    // at the first prompt token changes that token's output only: the continuation is unchanged.
    let plain = lm.generate(prompt, options.clone()).unwrap();
    let plain_first = lm.trace(prompt).run(async |m| m.backbone.layers[1].output().await).unwrap();
    let (first, early) = lm
        .generator(prompt, options.clone())
        .run(async |m| {
            let states = m.backbone.layers[1].mixer.ssm_states.output::<Tensor<B, 4>>().at(0);
            states
                .edit(|s| {
                    let first = s.clone().narrow(1, 0, 1) * 40.0;
                    s.slice_assign([0..1, 0..1], first)
                })
                .await?;
            m.backbone.layers[1].output().at(0).await
        })
        .unwrap();
    support::assert_differs(&first.clone().narrow(1, 0, 1), &plain_first.clone().narrow(1, 0, 1));
    let rest = |t: Tensor<B, 3>| t.narrow(1, 1, tokens - 1);
    support::assert_identical(&rest(first), &rest(plain_first));
    assert_eq!(early.tokens, plain.tokens);
    // At the last token it is carried on: the continuation changes.
    let ((), scaled) = lm
        .generator(prompt, options.clone())
        .run(async |m| {
            let states = m.backbone.layers[0].mixer.ssm_states.output::<Tensor<B, 4>>().at(0);
            states.edit(|s| s * 40.0).await?;
            Ok(())
        })
        .unwrap();
    assert_ne!(scaled.tokens, plain.tokens);

    // Steering the residual stream at every step, as for a transformer.
    let direction = support::input([1, 1, 32], 7) * 4.0;
    let ((), steered) = lm
        .generator(prompt, options)
        .run(async |m| m.backbone.layers[0].output().every(move |h: Tensor<B, 3>| h + direction.clone()))
        .unwrap();
    assert_ne!(steered.tokens, plain.tokens, "steering changes the continuation");
}

#[test]
fn loading_errors_name_the_tensor_and_the_field() {
    let dir = copy_of(TINY_MAMBA);
    rewrite(dir.path(), "backbone.layers.1.mixer.A_log", ("", vec![]));
    let error = load(dir.path()).expect_err("a missing tensor");
    assert!(matches!(error, Error::MissingWeight { .. }), "{error}");
    assert!(error.to_string().contains("backbone.layers.1.mixer.A_log"), "{error}");

    let dir = copy_of(TINY_MAMBA);
    rewrite(dir.path(), "", ("backbone.layers.0.mixer.conv1d.weight", vec![64, 1, 3]));
    let error = load(dir.path()).expect_err("a misshapen tensor");
    let message = error.to_string();
    assert!(matches!(error, Error::BadWeight { .. }), "{message}");
    for part in ["backbone.layers.0.mixer.conv1d.weight", "[64, 1, 3]", "[64, 1, 4]"] {
        assert!(message.contains(part), "`{message}` does not mention `{part}`");
    }

    let dir = copy_of(TINY_MAMBA);
    let config = fs::read_to_string(dir.path().join("config.json")).unwrap();
    fs::write(
        dir.path().join("config.json"),
        config.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1"),
    )
    .unwrap();
    let error = load(dir.path()).expect_err("more layers in the weights than the config says");
    assert!(
        matches!(error, Error::Load { .. }) && error.to_string().contains("num_hidden_layers"),
        "{error}"
    );

    fs::write(dir.path().join("config.json"), config.replace("\"silu\"", "\"gelu\"")).unwrap();
    let error = load(dir.path()).expect_err("an activation we do not compute");
    assert!(error.to_string().contains("hidden_act") && error.to_string().contains("config.json"), "{error}");
}

#[test]
fn bad_input_is_a_typed_error_and_the_model_stays_usable() {
    let lm = tiny_mamba();
    let prompt = "The Colosseum is in";
    let before = lm.forward(prompt).unwrap();
    let wrong = lm
        .trace(prompt)
        .run(async |m| {
            let states = m.backbone.layers[0].mixer.ssm_states.output::<Tensor<B, 4>>();
            states.edit(|s| s.narrow(3, 0, 4)).await?;
            m.output().await
        })
        .expect_err("a state of the wrong width");
    assert!(matches!(wrong, Error::ShapeMismatch { .. }), "{wrong}");
    assert!(lm.forward(vec![9999u32]).is_err(), "an id past the vocabulary");
    assert!(lm.forward(Vec::<u32>::new()).is_err(), "an empty prompt");
    let generated = lm.generate(Vec::<u32>::new(), GenerateOptions::greedy(2));
    assert!(matches!(generated, Err(Error::Input { .. })), "{generated:?}");
    support::assert_identical(&before, &lm.forward(prompt).unwrap());
}
