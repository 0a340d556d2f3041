//! What running an intervention as data costs, on the tiny GPT-2 fixture (small on purpose: the
//! engine's and the interpreter's work is visible next to the model's):
//!
//! - `patching_10_invokes/{compiled,interpreted}`: one trace of 11 invokes — the clean prompt's
//!   block-1 output read, then patched into the corrupted prompt at each position and the last
//!   logits saved — written as compiled bodies, and as an IR program run by the interpreter.
//!   Goal: interpreted ≤ 1.1× compiled.
//! - `program_270_invokes/{encode,decode_and_check}`: a 270-invoke patching program (30 layers ×
//!   9 positions, as the SmolLM2 sweep) to canonical JSON, and back with the structural check.
//!
//! Figures are recorded in BENCHMARKS.md. Under `cargo test --benches` each runs once.
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use std::collections::BTreeMap;
use std::hint::black_box;

use burn::backend::Flex;
use burn::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};
use nnsight::Shared;
use nnsight::prelude::*;
use nnsight_models::LanguageModel;
use nnsight_models::gpt2::{Gpt2LMHeadModel, Gpt2LMHeadModelEnvoy};
use nnsight_remote::interpret::{self, Value};
use nnsight_remote::ir::{Input, Invoke, Node, Op, Program, Ref, Site, SiteKind, SliceRange, Trace};
use nnsight_remote::{canonical, check};
use nnsight_support::sweep::prompt;

type B = Flex;
type Lm = LanguageModel<B, Gpt2LMHeadModel<B>>;

const CLEAN: [u32; 10] = [64, 208, 86, 311, 45, 25, 17, 300, 121, 9];
const CORRUPTED: [u32; 10] = [64, 208, 86, 11, 45, 25, 17, 300, 121, 9];

fn output(path: &str) -> Site {
    Site { path: path.into(), kind: SiteKind::Output, occurrence: 0 }
}

fn push(nodes: &mut Vec<Node>, op: Op) -> Ref {
    nodes.push(Node::new(op));
    (nodes.len() - 1) as Ref
}

/// The sweep as a program: invoke 0 reads `layers` block outputs of the clean prompt; one invoke
/// per (layer, position) patches the corrupted prompt there and saves its last logits.
fn sweep_program(layers: usize, positions: usize, clean: &[u32], corrupted: &[u32]) -> Program {
    let mut first = Vec::new();
    let reads: Vec<Ref> = (0..layers)
        .map(|l| push(&mut first, Op::Read { site: output(&format!("transformer.h.{l}")) }))
        .collect();
    let mut invokes = vec![Invoke { input: Some(Input::Tokens(clean.to_vec())), nodes: first }];
    for (layer, &read) in reads.iter().enumerate() {
        for p in 0..positions {
            let site = output(&format!("transformer.h.{layer}"));
            let at = vec![
                SliceRange { start: 0, end: None },
                SliceRange { start: p as i64, end: Some(p as i64 + 1) },
            ];
            let mut n = Vec::new();
            let target = push(&mut n, Op::Read { site: site.clone() });
            let source = push(&mut n, Op::Shared { invoke: 0, node: read });
            let piece = push(&mut n, Op::Slice { x: source, ranges: at.clone() });
            let patched = push(&mut n, Op::SliceAssign { x: target, ranges: at, value: piece });
            push(&mut n, Op::Write { site, value: patched });
            let logits = push(&mut n, Op::Read { site: output("") });
            let last = push(
                &mut n,
                Op::Slice {
                    x: logits,
                    ranges: vec![SliceRange { start: 0, end: None }, SliceRange { start: -1, end: None }],
                },
            );
            push(&mut n, Op::Save { name: format!("l{layer}p{p}"), value: last, cast: None });
            invokes.push(Invoke { input: Some(Input::Tokens(corrupted.to_vec())), nodes: n });
        }
    }
    Program::new(vec![Trace { invokes, generate: None }])
}

/// The same sweep as compiled bodies.
fn compiled_sweep(model: &Gpt2LMHeadModel<B>, positions: usize) -> Vec<Tensor<B, 3>> {
    let clean = Shared::new("the clean block 1 output");
    let clean = &clean;
    let ((), values) = model
        .tracer()
        .invoke(prompt::<B>(&CLEAN), async |m| clean.set(m.transformer.h[1].output().await?))
        .invoke_each((0..positions).map(|p| {
            let body = async move |m: &Gpt2LMHeadModelEnvoy<'_, B>| {
                m.transformer.h[1]
                    .output()
                    .try_edit(|h| Ok(h.slice_assign([0..1, p..p + 1], clean.get()?.slice([0..1, p..p + 1]))))
                    .await?;
                let logits = m.output().await?;
                let last = logits.dims()[1] - 1;
                Ok(logits.slice([0..1, last..last + 1]))
            };
            (prompt::<B>(&CORRUPTED), body)
        }))
        .run()
        .unwrap();
    values
}

fn bench(c: &mut Criterion) {
    let dir = nnsight_support::fixture_dir("tiny-gpt2");
    let lm: Lm = LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default()).unwrap();
    let model = lm.model();
    // Layer 1 only, every position: the program of `compiled_sweep`.
    let mut program = sweep_program(2, CLEAN.len(), &CLEAN, &CORRUPTED);
    let first = &mut program.traces[0].invokes[0];
    first.nodes.truncate(2);
    program.traces[0].invokes.drain(1..=CLEAN.len());
    let tensors: BTreeMap<String, Value<B>> = BTreeMap::new();
    let inputs = |input: &Input| match input {
        Input::Tokens(tokens) => Ok(prompt::<B>(tokens)),
        _ => unreachable!("the bench's program has token inputs"),
    };
    let interpreted = || interpret::run(model, &program, &tensors, inputs).unwrap();

    // Before timing: the two give the same bytes.
    let outcome = interpreted();
    for (p, value) in compiled_sweep(model, CLEAN.len()).iter().enumerate() {
        let saved = outcome.saves[&format!("l1p{p}")].to_bytes().2;
        assert!(saved == value.to_data().as_bytes(), "position {p}: the interpreted sweep differs");
    }

    let mut group = c.benchmark_group("interpret");
    group.bench_function("patching_10_invokes/compiled", |b| {
        b.iter(|| black_box(compiled_sweep(model, CLEAN.len())))
    });
    group.bench_function("patching_10_invokes/interpreted", |b| b.iter(|| black_box(interpreted())));
    let big = sweep_program(30, 9, &CLEAN[..9], &CORRUPTED[..9]);
    let text = canonical::encode(&big);
    group.bench_function("program_270_invokes/encode", |b| b.iter(|| black_box(canonical::encode(&big))));
    group.bench_function("program_270_invokes/decode_and_check", |b| {
        b.iter(|| {
            let program = canonical::decode(text.as_bytes(), 1 << 26).unwrap();
            assert!(check::check(&program).is_empty());
            black_box(program)
        })
    });
    group.finish();
    println!("program_270_invokes: {} bytes of canonical JSON", text.len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
