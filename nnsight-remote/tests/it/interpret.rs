//! Programs run by the interpreter give, byte for byte, what the same intervention written as a
//! compiled body gives, on the tiny GPT-2 fixture; the golden programs run; operations not
//! interpreted yet, bad operands and bad paths are typed errors before or while running, and the
//! model stays usable.

use std::collections::BTreeMap;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::FloatDType;
use nnsight::prelude::*;
use nnsight_models::LanguageModel;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use nnsight_remote::interpret::{self, Hosted, Outcome, RunError, Value};
use nnsight_remote::ir::{
    BinaryFn, Input, Invoke, Op, Program, ReduceFn, Scalar, SliceRange, Trace, UnaryFn,
};
use nnsight_support::sweep::prompt;

use crate::corpus::{Nodes, corpus, output};

type B = Flex;
type Lm = LanguageModel<B, Gpt2LMHeadModel<B>>;
type Inputs = (Tensor<B, 2, Int>, Tensor<B, 2, Int>);

fn tiny_gpt2() -> Lm {
    let dir = nnsight_support::fixture_dir("tiny-gpt2");
    LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default()).expect("the fixture loads")
}

const CLEAN: [u32; 6] = [64, 208, 86, 311, 45, 25];
const CORRUPTED: [u32; 6] = [64, 208, 86, 11, 45, 25];

/// Runs `program` on the tiny GPT-2; prompts are tokenized by its tokenizer.
fn run(lm: &Lm, program: &Program, tensors: &BTreeMap<String, Value<B>>) -> Result<Outcome<B>, RunError> {
    interpret::run(lm.model(), program, tensors, |input: &Input| -> nnsight::Result<Inputs> {
        match input {
            Input::Tokens(tokens) => Ok(prompt::<B>(tokens)),
            Input::Text(text) => Ok(prompt::<B>(&lm.encode(text)?)),
            Input::Tensor(name) => {
                Err(nnsight::Error::Input { problem: format!("no tensor input `{name}` here") })
            }
        }
    })
}

fn invoke(tokens: &[u32], nodes: Nodes) -> Invoke {
    Invoke { input: Some(Input::Tokens(tokens.to_vec())), nodes: nodes.0 }
}

fn one_trace(invokes: Vec<Invoke>) -> Program {
    Program::new(vec![Trace { invokes, generate: None }])
}

/// Asserts a saved value holds exactly `expected`'s bytes, shape and type.
fn assert_saved<const D: usize, K: burn::tensor::BasicOps<B>>(
    outcome: &Outcome<B>,
    name: &str,
    expected: &Tensor<B, D, K>,
) {
    let saved = outcome.saves.get(name).unwrap_or_else(|| panic!("`{name}` was not saved"));
    let (shape, dtype, bytes) = saved.to_bytes();
    let data = expected.to_data();
    assert_eq!((shape, dtype), (data.shape.to_vec(), data.dtype), "{name}");
    assert!(bytes == data.as_bytes(), "{name}: the bytes differ");
}

#[test]
fn reads_and_a_cast_save_equal_the_compiled_body() {
    let lm = tiny_gpt2();
    let mut n = Nodes::default();
    let h0 = n.push(Op::Read { site: output("transformer.h.0") });
    n.push(Op::Save { name: "h0".into(), value: h0, cast: None });
    let mlp_in = n.push(Op::Read {
        site: nnsight_remote::ir::Site {
            path: "transformer.h.1.mlp".into(),
            kind: nnsight_remote::ir::SiteKind::Input(0),
            occurrence: 0,
        },
    });
    let act = n.push(Op::Unary { fun: UnaryFn::Gelu, x: mlp_in });
    n.push(Op::Save { name: "gelu_mlp_in".into(), value: act, cast: None });
    let logits = n.push(Op::Read { site: output("") });
    n.push(Op::Save { name: "logits".into(), value: logits, cast: Some(nnsight_remote::ir::DType::Bf16) });
    let outcome = run(&lm, &one_trace(vec![invoke(&CLEAN, n)]), &BTreeMap::new()).unwrap();

    let (h0, mlp_in, logits): (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 3>) = lm
        .model()
        .trace(prompt::<B>(&CLEAN))
        .run(async |m| {
            Ok((m.transformer.h[0].output().await?, m.transformer.h[1].mlp.input().await?, m.output().await?))
        })
        .unwrap();
    assert_saved(&outcome, "h0", &h0);
    assert_saved(&outcome, "gelu_mlp_in", &burn::tensor::activation::gelu(mlp_in));
    assert_saved(&outcome, "logits", &logits.cast(FloatDType::BF16));
}

#[test]
fn cross_invoke_patching_equals_the_compiled_body() {
    let lm = tiny_gpt2();
    let (_, program) = corpus().into_iter().find(|(name, _)| *name == "patching_one_position").unwrap();
    // The golden program on token inputs of one length (a bare model batches by concatenation).
    let mut program = program;
    program.traces[0].invokes[0].input = Some(Input::Tokens(CLEAN.to_vec()));
    program.traces[0].invokes[1].input = Some(Input::Tokens(CORRUPTED.to_vec()));
    let outcome = run(&lm, &program, &BTreeMap::new()).unwrap();

    let clean = nnsight::Shared::new("clean block 1");
    let ((), patched) = lm
        .model()
        .tracer()
        .invoke(prompt::<B>(&CLEAN), async |m| clean.set(m.transformer.h[1].output().await?))
        .invoke(prompt::<B>(&CORRUPTED), async |m| {
            m.transformer.h[1]
                .output()
                .try_edit(|h| Ok(h.slice_assign([0..1, 2..3], clean.get()?.slice([0..1, 2..3]))))
                .await?;
            let logits = m.output().await?;
            let last = logits.dims()[1] - 1;
            Ok(logits.slice([0..1, last..last + 1]))
        })
        .run()
        .unwrap();
    assert_saved(&outcome, "patched_logits", &patched);
}

#[test]
fn a_session_passes_saved_values_between_traces() {
    let lm = tiny_gpt2();
    let (_, mut program) = corpus().into_iter().find(|(name, _)| *name == "session_of_two_traces").unwrap();
    program.traces[0].invokes[0].input = Some(Input::Tokens(CLEAN.to_vec()));
    let outcome = run(&lm, &program, &BTreeMap::new()).unwrap();

    let mean: Tensor<B, 3> = lm
        .model()
        .trace(prompt::<B>(&CLEAN))
        .run(async |m| Ok(m.transformer.h[1].output().await?.mean_dim(1)))
        .unwrap();
    let steered: Tensor<B, 3> = lm
        .model()
        .trace(prompt::<B>(&[40, 392, 326]))
        .run(async |m| {
            m.transformer.h[1].output().edit(|h| h + mean.clone()).await?;
            m.output().await
        })
        .unwrap();
    assert_saved(&outcome, "mean_h1", &mean);
    assert_saved(&outcome, "steered_logits", &steered);
}

#[test]
fn tensor_operations_and_literals_equal_burns() {
    let lm = tiny_gpt2();
    let device = Default::default();
    let hidden = lm.model().transformer.wte.weight.val().dims()[1];
    let direction = Tensor::<B, 1>::from_floats(
        (0..hidden).map(|i| (i as f32 * 0.37).sin()).collect::<Vec<_>>().as_slice(),
        &device,
    )
    .reshape([1, 1, hidden]);
    let tensors = BTreeMap::from([("direction".to_owned(), Value::F3(direction.clone()))]);
    let mut n = Nodes::default();
    let h = n.push(Op::Read { site: output("transformer.h.0") });
    let d = n.push(Op::Tensor { name: "direction".into() });
    let dt = n.push(Op::Transpose { x: d, dim0: 1, dim1: 2 });
    let proj = n.push(Op::Matmul { lhs: h, rhs: dt });
    let scaled = n.push(Op::BinaryScalar { fun: BinaryFn::Mul, x: proj, scalar: Scalar(0.5) });
    let along = n.push(Op::Matmul { lhs: scaled, rhs: d });
    let edited = n.push(Op::Binary { fun: BinaryFn::Sub, lhs: h, rhs: along });
    n.push(Op::Write { site: output("transformer.h.0"), value: edited });
    let logits = n.push(Op::Read { site: output("") });
    let last = n.push(Op::Slice {
        x: logits,
        ranges: vec![SliceRange { start: 0, end: None }, SliceRange { start: -1, end: None }],
    });
    let probs = n.push(Op::Softmax { x: last, dim: 2 });
    let top = n.push(Op::TopK { x: probs, k: 3, dim: 2, part: nnsight_remote::ir::TopKPart::Indices });
    let total = n.push(Op::Reduce { fun: ReduceFn::Sum, x: probs, dim: None });
    n.push(Op::Save { name: "top".into(), value: top, cast: None });
    n.push(Op::Save { name: "total".into(), value: total, cast: None });
    let outcome = run(&lm, &one_trace(vec![invoke(&CLEAN, n)]), &tensors).unwrap();

    let probs: Tensor<B, 3> = lm
        .model()
        .trace(prompt::<B>(&CLEAN))
        .run(async |m| {
            m.transformer.h[0]
                .output()
                .edit(|h| {
                    let proj = h.clone().matmul(direction.clone().swap_dims(1, 2)).mul_scalar(0.5);
                    h - proj.matmul(direction.clone())
                })
                .await?;
            let logits = m.output().await?;
            let last = logits.dims()[1] - 1;
            Ok(burn::tensor::activation::softmax(logits.slice([0..1, last..last + 1]), 2))
        })
        .unwrap();
    assert_saved(&outcome, "top", &probs.clone().topk_with_indices(3, 2).1);
    assert_saved(&outcome, "total", &probs.sum());
}

#[test]
fn a_skip_and_a_stop_equal_the_compiled_body() {
    let lm = tiny_gpt2();
    let (_, mut program) = corpus().into_iter().find(|(name, _)| *name == "zero_ablation_and_stop").unwrap();
    program.traces[0].invokes[0].input = Some(Input::Tokens(CLEAN.to_vec()));
    let outcome = run(&lm, &program, &BTreeMap::new()).unwrap();

    let mean: Tensor<B, 3> = lm
        .model()
        .trace(prompt::<B>(&CLEAN))
        .run(async |m| {
            let x: Tensor<B, 3> = m.transformer.h[0].mlp.input().await?;
            m.transformer.h[0].mlp.skip(x.zeros_like()).await?;
            let mean = m.transformer.h[1].output().await?.mean_dim(2);
            m.stop()?;
            Ok(mean)
        })
        .unwrap();
    assert_saved(&outcome, "h1_mean", &mean);
}

#[test]
fn a_standing_edit_equals_the_compiled_one() {
    let lm = tiny_gpt2();
    let hidden = lm.model().transformer.wte.weight.val().dims()[1];
    let vector = Tensor::<B, 3>::ones([1, 1, hidden], &Default::default()).mul_scalar(0.25);
    let tensors = BTreeMap::from([("steering".to_owned(), Value::F3(vector.clone()))]);
    let mut n = Nodes::default();
    let v = n.push(Op::Tensor { name: "steering".into() });
    // The body's nodes are 2 (arg) and 3.
    n.push(Op::Edit {
        site: output("transformer.h.1"),
        steps: nnsight_remote::ir::Steps::All,
        body: vec![
            nnsight_remote::ir::Node::new(Op::Arg),
            nnsight_remote::ir::Node::new(Op::Binary { fun: BinaryFn::Add, lhs: 2, rhs: v }),
        ],
    });
    let logits = n.push(Op::Read { site: output("") });
    n.push(Op::Save { name: "logits".into(), value: logits, cast: None });
    let outcome = run(&lm, &one_trace(vec![invoke(&CLEAN, n)]), &tensors).unwrap();

    let logits: Tensor<B, 3> = lm
        .model()
        .trace(prompt::<B>(&CLEAN))
        .run(async |m| {
            let vector = vector.clone();
            m.transformer.h[1].output().every(move |h: Tensor<B, 3>| h + vector.clone())?;
            m.output().await
        })
        .unwrap();
    assert_saved(&outcome, "logits", &logits);
}

/// Block 0's output cut to 3 features, then called through each of `modules`.
fn narrow_calls(modules: &[&str]) -> Nodes {
    let mut n = Nodes::default();
    let h = n.push(Op::Read { site: output("transformer.h.0") });
    let narrow = n.push(Op::Slice {
        x: h,
        ranges: vec![
            SliceRange { start: 0, end: None },
            SliceRange { start: 0, end: None },
            SliceRange { start: 0, end: Some(3) },
        ],
    });
    for module in modules {
        n.push(Op::Call { module: (*module).into(), args: vec![narrow] });
    }
    n
}

#[test]
fn a_logit_lens_through_hosted_modules_equals_the_compiled_one() {
    let lm = tiny_gpt2();
    let model = lm.model();
    let (_, mut program) = corpus().into_iter().find(|(name, _)| *name == "logit_lens").unwrap();
    program.traces[0].invokes[0].input = Some(Input::Tokens(CLEAN.to_vec()));
    // Without hosting, the call is refused before anything runs, naming the module.
    let refused = run(&lm, &program, &BTreeMap::new()).unwrap_err();
    assert!(
        matches!(&refused, RunError::NotHosted { module, .. } if module == "transformer.ln_f"),
        "{refused}"
    );

    let hosted = Hosted::new()
        .layer_norm("transformer.ln_f", &model.transformer.ln_f)
        .forward("lm_head", &model.lm_head);
    let inputs = |input: &Input| match input {
        Input::Tokens(tokens) => Ok(prompt::<B>(tokens)),
        _ => unreachable!(),
    };
    let outcome = interpret::run_hosted(model, &program, &BTreeMap::new(), inputs, &hosted).unwrap();
    let h: Tensor<B, 3> =
        model.trace(prompt::<B>(&CLEAN)).run(async |m| m.transformer.h[0].output().await).unwrap();
    let probs =
        burn::tensor::activation::softmax(model.lm_head.forward(model.transformer.ln_f.forward(h)), 2);
    assert_saved(&outcome, "lens_top5", &probs.topk_with_indices(5, 2).1);

    // A hosted module given a value it cannot take is an error naming it.
    let n = narrow_calls(&["lm_head", "transformer.ln_f"]);
    let error =
        interpret::run_hosted(model, &one_trace(vec![invoke(&CLEAN, n)]), &BTreeMap::new(), inputs, &hosted)
            .unwrap_err();
    assert!(error.to_string().contains("node 2: `call`: `lm_head` cannot take"), "{error}");
    let n = narrow_calls(&["transformer.ln_f"]);
    let error =
        interpret::run_hosted(model, &one_trace(vec![invoke(&CLEAN, n)]), &BTreeMap::new(), inputs, &hosted)
            .unwrap_err();
    assert!(error.to_string().contains("`transformer.ln_f` takes a last dimension of 64"), "{error}");
}

#[test]
fn operations_not_interpreted_yet_are_refused_before_running() {
    let lm = tiny_gpt2();
    // A call inside an edit's body (the body runs at every step, after the body that made it).
    let mut n = Nodes::default();
    n.push(Op::Edit {
        site: output("transformer.h.0"),
        steps: nnsight_remote::ir::Steps::All,
        body: vec![
            nnsight_remote::ir::Node::new(Op::Arg),
            nnsight_remote::ir::Node::new(Op::Call { module: "transformer.ln_f".into(), args: vec![1] }),
        ],
    });
    let error = run(&lm, &one_trace(vec![invoke(&CLEAN, n)]), &BTreeMap::new()).unwrap_err();
    assert!(matches!(&error, RunError::NotInterpreted { op: "call (in an edit's body)", .. }), "{error}");
}

#[test]
fn bad_operands_paths_and_programs_are_typed_errors_and_the_model_stays_usable() {
    let lm = tiny_gpt2();
    let before = lm.model().forward(prompt::<B>(&CLEAN).0, prompt::<B>(&CLEAN).1);
    let cases: Vec<(Nodes, &str)> = vec![
        {
            let mut n = Nodes::default();
            let h = n.push(Op::Read { site: output("transformer.h.0") });
            n.push(Op::Matmul { lhs: h, rhs: h });
            (n, "node 1: `matmul`: [1, 6, 64] × [1, 6, 64]: the inner dimensions 64 and 6 differ")
        },
        {
            let mut n = Nodes::default();
            n.push(Op::Read { site: output("transformer.h.9") });
            (n, "no module `transformer.h.9`")
        },
        {
            let mut n = Nodes::default();
            let h = n.push(Op::Read { site: output("transformer.h.0") });
            n.push(Op::Slice {
                x: h,
                ranges: vec![SliceRange { start: 0, end: None }, SliceRange { start: 7, end: None }],
            });
            (n, "range 7.. of dimension 1 (size 6) is empty or out of bounds")
        },
        {
            let mut n = Nodes::default();
            let h = n.push(Op::Read { site: output("transformer.h.0") });
            let wrong = n.push(Op::Reduce { fun: ReduceFn::Mean, x: h, dim: Some(1) });
            n.push(Op::Write { site: output("transformer.h.0"), value: wrong });
            (n, "shape mismatch")
        },
        {
            let mut n = Nodes::default();
            let h = n.push(Op::Read { site: output("transformer.h.1") });
            n.push(Op::Save { name: "h".into(), value: h, cast: None });
            n.push(Op::Read { site: output("transformer.h.0") });
            (n, "already ran past it")
        },
        {
            let mut n = Nodes::default();
            n.push(Op::Tensor { name: "missing".into() });
            (n, "no tensor `missing`")
        },
        {
            // A standing edit whose body changes the shape: the node 0 is the edit, 1 its arg.
            let mut n = Nodes::default();
            n.push(Op::Edit {
                site: output("transformer.h.0"),
                steps: nnsight_remote::ir::Steps::All,
                body: vec![
                    nnsight_remote::ir::Node::new(Op::Arg),
                    nnsight_remote::ir::Node::new(Op::Reduce { fun: ReduceFn::Mean, x: 1, dim: Some(1) }),
                ],
            });
            n.push(Op::Read { site: output("") });
            (n, "shape mismatch")
        },
        {
            // A skip value of another shape than the module's output.
            let mut n = Nodes::default();
            let x = n.push(Op::Read {
                site: nnsight_remote::ir::Site {
                    path: "transformer.h.0.mlp".into(),
                    kind: nnsight_remote::ir::SiteKind::Input(0),
                    occurrence: 0,
                },
            });
            let wrong = n.push(Op::Slice {
                x,
                ranges: vec![SliceRange { start: 0, end: None }, SliceRange { start: 0, end: Some(2) }],
            });
            n.push(Op::Skip { module: "transformer.h.0.mlp".into(), occurrence: 0, value: wrong });
            (n, "shape mismatch")
        },
    ];
    for (nodes, message) in cases {
        let error = run(&lm, &one_trace(vec![invoke(&CLEAN, nodes)]), &BTreeMap::new()).unwrap_err();
        assert!(matches!(error, RunError::Trace { .. }) && error.to_string().contains(message), "{error}");
    }
    let mut n = Nodes::default();
    n.push(Op::Save { name: "x".into(), value: 4, cast: None });
    let invalid = run(&lm, &one_trace(vec![invoke(&CLEAN, n)]), &BTreeMap::new()).unwrap_err();
    assert!(matches!(invalid, RunError::Invalid(_)), "{invalid}");
    let after = lm.model().forward(prompt::<B>(&CLEAN).0, prompt::<B>(&CLEAN).1);
    assert!(after.to_data().as_bytes() == before.to_data().as_bytes(), "the model changed");
}
