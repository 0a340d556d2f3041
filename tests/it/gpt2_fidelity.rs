//! GPT-2 against the reference implementation: the tiny GPT-2 fixture, loaded through the loader
//! users use, must reproduce what Hugging Face transformers computed (`tools/fixtures/`) within
//! 1e-4 — every block output, every layer's attention probabilities, the final norm and the logits,
//! for one prompt and for a left-padded batch.

use crate::support;

use burn::prelude::*;
use nnsight::prelude::*;
use nnsight_models::LanguageModel;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use support::B;
use support::fixture::{Expected, TinyGpt2, assert_close, fixture_dir, tiny_gpt2};

const TOL: f32 = 1e-4;

/// Everything the fixture records, read in one trace.
struct Readout {
    hidden: Vec<Tensor<B, 3>>,
    probs: Vec<Tensor<B, 4>>,
    ln_f: Tensor<B, 3>,
    logits: Tensor<B, 3>,
}

fn read_everything(lm: &TinyGpt2, prompts: impl Into<nnsight_models::Prompts>) -> Readout {
    lm.trace(prompts)
        .run(async |m| {
            let (mut hidden, mut probs) = (Vec::new(), Vec::new());
            for block in &m.transformer.h {
                probs.push(block.attn.attn_dropout.input::<Tensor<B, 4>>().await?);
                hidden.push(block.output().await?);
            }
            let ln_f = m.transformer.ln_f.output::<Tensor<B, 3>>().await?;
            Ok(Readout { hidden, probs, ln_f, logits: m.output().await? })
        })
        .unwrap()
}

#[test]
fn tokenizer_matches_transformers() {
    let (lm, expected) = (tiny_gpt2(), Expected::load());
    let prompt = expected.text("single", "prompt");
    assert_eq!(vec![lm.encode(&prompt).unwrap()], expected.rows("single.input_ids"));

    let prompts = expected.batch_prompts();
    let batch = lm.batch(prompts).unwrap();
    let ids: Vec<i64> = batch.input_ids.to_data().iter::<i64>().collect();
    let mask: Vec<i64> = batch.attention_mask.to_data().iter::<i64>().collect();
    let flat = |name: &str| expected.rows(name).concat().into_iter().map(i64::from).collect::<Vec<_>>();
    assert_eq!(ids, flat("batch.input_ids"), "left padding with the end-of-text id");
    assert_eq!(mask, flat("batch.attention_mask"));
}

#[test]
fn single_prompt_matches_transformers() {
    let (lm, expected) = (tiny_gpt2(), Expected::load());
    let out = read_everything(&lm, expected.text("single", "prompt").as_str());
    assert_eq!(out.hidden.len(), 2);
    for (i, (hidden, probs)) in out.hidden.iter().zip(&out.probs).enumerate() {
        assert_close(&format!("h[{i}] output"), hidden, &expected.tensor(&format!("single.hidden.{i}")), TOL);
        assert_close(
            &format!("h[{i}] attention"),
            probs,
            &expected.tensor(&format!("single.attn_probs.{i}")),
            TOL,
        );
    }
    assert_close("ln_f output", &out.ln_f, &expected.tensor("single.ln_f"), TOL);
    assert_close("logits", &out.logits, &expected.tensor("single.logits"), TOL);
}

#[test]
fn padded_batch_matches_transformers_at_every_token() {
    let (lm, expected) = (tiny_gpt2(), Expected::load());
    let prompts = expected.batch_prompts();
    let out = read_everything(&lm, prompts.clone());
    let batch = lm.batch(prompts).unwrap();
    // Padding positions hold whatever each implementation computes there; compare the tokens.
    for row in 0..batch.len() {
        let real = batch.column(row, 0)..batch.columns();
        let rows3 = |t: Tensor<B, 3>| t.slice([row..row + 1, real.clone()]);
        let rows4 = |t: Tensor<B, 4>| t.slice([row..row + 1, 0..4, real.clone()]);
        for i in 0..out.hidden.len() {
            let expected_hidden = rows3(expected.tensor(&format!("batch.hidden.{i}")));
            assert_close(
                &format!("prompt {row}, h[{i}]"),
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
        }
        let expected_logits = rows3(expected.tensor("batch.logits"));
        assert_close(&format!("prompt {row}, logits"), &rows3(out.logits.clone()), &expected_logits, TOL);
    }
}

#[test]
fn a_prompt_gives_the_same_logits_alone_and_left_padded_in_a_batch() {
    let lm = tiny_gpt2();
    let short = "The Colosseum is in";
    let alone = lm.forward(short).unwrap();
    let batched = lm.forward(["When Mary and John went to the store, John gave a drink to", short]).unwrap();
    let tokens = alone.dims()[1];
    let columns = batched.dims()[1];
    assert!(columns > tokens, "the short prompt is padded");
    let in_batch = batched.slice([1..2, columns - tokens..columns]);
    assert_close("padded vs alone", &in_batch, &alone, 1e-5);
}

#[test]
fn token_ids_and_text_give_the_same_logits() {
    let (lm, expected) = (tiny_gpt2(), Expected::load());
    let prompt = expected.text("single", "prompt");
    let from_text = lm.forward(prompt.as_str()).unwrap();
    let from_ids = lm.forward(lm.encode(&prompt).unwrap()).unwrap();
    support::assert_identical(&from_text, &from_ids);
}

#[test]
fn a_sharded_checkpoint_loads_the_same_model() {
    let whole = tiny_gpt2();
    let dir = fixture_dir("tiny-gpt2-sharded");
    let sharded: TinyGpt2 =
        LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default()).unwrap();
    let prompt = "The Eiffel Tower is in the city of";
    support::assert_identical(&whole.forward(prompt).unwrap(), &sharded.forward(prompt).unwrap());
}

#[test]
fn the_head_is_tied_to_the_token_embedding() {
    let lm = tiny_gpt2();
    let model: &Gpt2LMHeadModel<B> = lm.model();
    support::assert_identical(&model.lm_head.weight.val(), &model.transformer.wte.weight.val());
}

#[test]
fn an_identity_intervention_on_every_block_leaves_the_logits_bit_identical() {
    let lm = tiny_gpt2();
    let prompt = "The Eiffel Tower is in the city of";
    let plain = lm.forward(prompt).unwrap();
    let traced = trace!(lm, prompt, |m| {
        for block in &m.transformer.h {
            let h = block.output();
            block.output() = h;
        }
        m.output()
    })
    .unwrap();
    support::assert_identical(&plain, &traced);
}
