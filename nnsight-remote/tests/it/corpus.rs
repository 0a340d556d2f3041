//! The corpus: one program per kind of intervention the examples make, built by hand as the
//! recorder will emit them (on GPT-2's paths), and committed as golden files.

use nnsight_remote::ir::{
    BinaryFn, DType, Generate, Input, Invoke, Node, Op, Program, ReduceFn, Ref, Sampler, Site, SiteKind,
    SliceRange, Steps, Trace,
};

/// An invoke's nodes, numbered as the IR numbers them (an edit's body nodes count after it).
#[derive(Default)]
pub(crate) struct Nodes(pub(crate) Vec<Node>, Ref);

impl Nodes {
    pub(crate) fn push(&mut self, op: Op) -> Ref {
        let id = self.1;
        self.1 += 1 + if let Op::Edit { body, .. } = &op { body.len() as Ref } else { 0 };
        self.0.push(Node::new(op));
        id
    }
}

pub(crate) fn output(path: &str) -> Site {
    Site { path: path.into(), kind: SiteKind::Output, occurrence: 0 }
}

fn invoke(input: Option<Input>, nodes: Nodes) -> Invoke {
    Invoke { input, nodes: nodes.0 }
}

fn text(prompt: &str) -> Option<Input> {
    Some(Input::Text(prompt.into()))
}

fn one_trace(invokes: Vec<Invoke>) -> Program {
    Program::new(vec![Trace { invokes, generate: None }])
}

/// Every block's output saved.
fn reads_of_every_block() -> Program {
    let mut n = Nodes::default();
    for layer in 0..2 {
        let h = n.push(Op::Read { site: output(&format!("transformer.h.{layer}")) });
        n.push(Op::Save { name: format!("h{layer}"), value: h, cast: None });
    }
    let logits = n.push(Op::Read { site: output("") });
    n.push(Op::Save { name: "logits".into(), value: logits, cast: Some(DType::Bf16) });
    one_trace(vec![invoke(text("The Eiffel Tower is in the city of"), n)])
}

/// Two invokes: the clean prompt's block-1 output at position 2 patched into the corrupted one.
fn patching_one_position() -> Program {
    let mut clean = Nodes::default();
    let h = clean.push(Op::Read { site: output("transformer.h.1") });
    // The clean value is there once the forward pass has reached the site (invoke 0 is served
    // first): read the corrupted value, then take the clean one.
    let mut corrupted = Nodes::default();
    let target = corrupted.push(Op::Read { site: output("transformer.h.1") });
    let source = corrupted.push(Op::Shared { invoke: 0, node: h });
    let at = vec![SliceRange { start: 0, end: None }, SliceRange { start: 2, end: Some(3) }];
    let piece = corrupted.push(Op::Slice { x: source, ranges: at.clone() });
    let patched = corrupted.push(Op::SliceAssign { x: target, ranges: at, value: piece });
    corrupted.push(Op::Write { site: output("transformer.h.1"), value: patched });
    let logits = corrupted.push(Op::Read { site: output("") });
    let last = corrupted.push(Op::Slice {
        x: logits,
        ranges: vec![SliceRange { start: 0, end: None }, SliceRange { start: -1, end: None }],
    });
    corrupted.push(Op::Save { name: "patched_logits".into(), value: last, cast: None });
    one_trace(vec![
        invoke(text("The Eiffel Tower is in the city of"), clean),
        invoke(text("The Colosseum is in the city of"), corrupted),
    ])
}

/// A steering vector (an attached tensor) added to block 1's output at every generation step.
fn steering_every_step() -> Program {
    let mut n = Nodes::default();
    let vector = n.push(Op::Tensor { name: "steering".into() });
    let scaled =
        n.push(Op::BinaryScalar { fun: BinaryFn::Mul, x: vector, scalar: nnsight_remote::ir::Scalar(4.0) });
    // The body's nodes are numbered after the edit: arg is node 3, the sum node 4.
    let edit = n.push(Op::Edit {
        site: output("transformer.h.1"),
        steps: Steps::All,
        body: vec![Node::new(Op::Arg), Node::new(Op::Binary { fun: BinaryFn::Add, lhs: 3, rhs: scaled })],
    });
    assert_eq!(edit, 2);
    let trace = Trace {
        invokes: vec![invoke(text("I think that"), n)],
        generate: Some(Generate { max_new_tokens: 5, sampler: Sampler::Greedy, stop_at_eos: false }),
    };
    Program::new(vec![trace])
}

/// The MLP of block 0 zero-ablated by skipping it; the model stopped after block 1.
fn zero_ablation_and_stop() -> Program {
    let mut n = Nodes::default();
    let mlp_input = n.push(Op::Read {
        site: Site { path: "transformer.h.0.mlp".into(), kind: SiteKind::Input(0), occurrence: 0 },
    });
    let zeros = n.push(Op::FullLike { x: mlp_input, value: nnsight_remote::ir::Scalar(0.0) });
    n.push(Op::Skip { module: "transformer.h.0.mlp".into(), occurrence: 0, value: zeros });
    let h = n.push(Op::Read { site: output("transformer.h.1") });
    let norm = n.push(Op::Reduce { fun: ReduceFn::Mean, x: h, dim: Some(2) });
    n.push(Op::Save { name: "h1_mean".into(), value: norm, cast: None });
    n.push(Op::Stop);
    one_trace(vec![invoke(text("Hello world"), n)])
}

/// A logit lens: block 0's output through the final norm and the head.
fn logit_lens() -> Program {
    let mut n = Nodes::default();
    let h = n.push(Op::Read { site: output("transformer.h.0") });
    let normed = n.push(Op::Call { module: "transformer.ln_f".into(), args: vec![h] });
    let logits = n.push(Op::Call { module: "lm_head".into(), args: vec![normed] });
    let probs = n.push(Op::Softmax { x: logits, dim: 2 });
    let top = n.push(Op::TopK { x: probs, k: 5, dim: 2, part: nnsight_remote::ir::TopKPart::Indices });
    n.push(Op::Save { name: "lens_top5".into(), value: top, cast: None });
    one_trace(vec![invoke(text("The capital of France is"), n)])
}

/// A session: the first trace saves a mean activation, the second adds it.
fn session_of_two_traces() -> Program {
    let mut first = Nodes::default();
    let h = first.push(Op::Read { site: output("transformer.h.1") });
    let mean = first.push(Op::Reduce { fun: ReduceFn::Mean, x: h, dim: Some(1) });
    first.push(Op::Save { name: "mean_h1".into(), value: mean, cast: None });
    let mut second = Nodes::default();
    let mean = second.push(Op::Saved { name: "mean_h1".into() });
    let h = second.push(Op::Read { site: output("transformer.h.1") });
    let sum = second.push(Op::Binary { fun: BinaryFn::Add, lhs: h, rhs: mean });
    second.push(Op::Write { site: output("transformer.h.1"), value: sum });
    let logits = second.push(Op::Read { site: output("") });
    second.push(Op::Save { name: "steered_logits".into(), value: logits, cast: None });
    Program::new(vec![
        Trace { invokes: vec![invoke(text("Love"), first)], generate: None },
        Trace { invokes: vec![invoke(Some(Input::Tokens(vec![40, 392, 326])), second)], generate: None },
    ])
}

/// Every corpus program, by its golden file's name.
pub(crate) fn corpus() -> Vec<(&'static str, Program)> {
    vec![
        ("reads_of_every_block", reads_of_every_block()),
        ("patching_one_position", patching_one_position()),
        ("steering_every_step", steering_every_step()),
        ("zero_ablation_and_stop", zero_ablation_and_stop()),
        ("logit_lens", logit_lens()),
        ("session_of_two_traces", session_of_two_traces()),
    ]
}
