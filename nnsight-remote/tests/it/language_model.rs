//! Programs on a language model: text prompts of different lengths (left-padded into one batch)
//! and generation with a standing edit at every step give the compiled bodies' bytes.

use std::collections::BTreeMap;

use burn::backend::Flex;
use burn::prelude::*;
use nnsight_models::LanguageModel;
use nnsight_models::generation::GenerateOptions;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use nnsight_remote::interpret::{Hosted, RunError, Value, run_language_model};
use nnsight_remote::ir::{Input, Node, Op, Site, SiteKind};

use crate::corpus::corpus;

type B = Flex;
type Lm = LanguageModel<B, Gpt2LMHeadModel<B>>;

fn tiny_gpt2() -> Lm {
    let dir = nnsight_support::fixture_dir("tiny-gpt2");
    LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default()).expect("the fixture loads")
}

fn program(name: &str) -> nnsight_remote::ir::Program {
    corpus().into_iter().find(|(n, _)| *n == name).unwrap().1
}

fn bytes(value: &Value<B>) -> Vec<u8> {
    value.to_bytes().2
}

#[test]
fn text_prompts_of_different_lengths_patch_as_the_compiled_invokes() {
    let lm = tiny_gpt2();
    let program = program("patching_one_position");
    let [Some(Input::Text(clean)), Some(Input::Text(corrupted))] =
        [0, 1].map(|i| program.traces[0].invokes[i].input.clone())
    else {
        panic!("the golden program's prompts are texts")
    };
    assert_ne!(lm.encode(&clean).unwrap().len(), lm.encode(&corrupted).unwrap().len(), "the prompts pad");
    let outcome = run_language_model(&lm, &program, &BTreeMap::new(), &Hosted::new()).unwrap();

    let hidden = nnsight::Shared::new("clean block 1");
    let ((), patched) = lm
        .tracer()
        .invoke(clean.as_str(), async |m| hidden.set(m.transformer.h[1].output().await?))
        .invoke(corrupted.as_str(), async |m| {
            m.transformer.h[1]
                .output()
                .try_edit(|h| Ok(h.slice_assign([0..1, 2..3], hidden.get()?.slice([0..1, 2..3]))))
                .await?;
            let logits = m.output().await?;
            let last = logits.dims()[1] - 1;
            Ok(logits.slice([0..1, last..last + 1]))
        })
        .run()
        .unwrap();
    assert!(bytes(&outcome.saves["patched_logits"]) == patched.to_data().as_bytes());
}

#[test]
fn generation_with_a_standing_edit_equals_the_compiled_generator() {
    let lm = tiny_gpt2();
    let mut program = program("steering_every_step");
    // Save the head's output at the last step, to compare.
    let nodes = &mut program.traces[0].invokes[0].nodes;
    let head = Site { path: "lm_head".into(), kind: SiteKind::Output, occurrence: 4 };
    let id = 5; // after the tensor, the scaling, the edit and its body's two nodes
    nodes.push(Node::new(Op::Read { site: head }));
    nodes.push(Node::new(Op::Save { name: "last_step_logits".into(), value: id, cast: None }));
    let hidden = lm.model().transformer.wte.weight.val().dims()[1];
    let steering = Tensor::<B, 3>::ones([1, 1, hidden], &Default::default()).mul_scalar(0.1);
    let tensors = BTreeMap::from([("steering".to_owned(), Value::F3(steering.clone()))]);
    let outcome = run_language_model(&lm, &program, &tensors, &Hosted::new()).unwrap();

    let scaled = steering.mul_scalar(4.0);
    let (logits, _) = lm
        .generator("I think that", GenerateOptions::greedy(5).ignore_eos())
        .run(async |m| {
            m.transformer.h[1].output().every(move |h: Tensor<B, 3>| h + scaled.clone())?;
            m.lm_head.output().at(4).await
        })
        .unwrap();
    assert!(bytes(&outcome.saves["last_step_logits"]) == logits.to_data().as_bytes());
}

#[test]
fn generating_invokes_need_prompts_and_a_bare_model_does_not_generate() {
    let lm = tiny_gpt2();
    let mut program = program("steering_every_step");
    program.traces[0].invokes[0].input = None;
    let error = run_language_model::<B, _>(&lm, &program, &BTreeMap::new(), &Hosted::new()).unwrap_err();
    assert!(
        matches!(error, RunError::Trace { .. }) && error.to_string().contains("has no prompt"),
        "{error}"
    );
    let bare = nnsight_remote::interpret::run::<B, _>(
        lm.model(),
        &self::program("steering_every_step"),
        &BTreeMap::new(),
        |_| unreachable!("refused before any input is made"),
    )
    .unwrap_err();
    assert!(
        matches!(bare, RunError::NotInterpreted { .. }) && bare.to_string().contains("generate"),
        "{bare}"
    );
}
