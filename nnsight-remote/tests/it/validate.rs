//! Manifests and validation: the tiny GPT-2's manifest (from its shape-only twin, no weights),
//! every corpus program — hand-written and recorded — valid against it, and each kind of bad
//! program one diagnostic with its code, node and message.

use std::collections::BTreeMap;

use burn::backend::Flex;
use nnsight_models::LanguageModel;
use nnsight_models::gpt2::{Gpt2Config, Gpt2LMHeadModel};
use nnsight_remote::ir::{DType, Input, Op, Program, Site, SiteKind, SliceRange, Trace, UnaryFn};
use nnsight_remote::manifest::{Dim, Manifest, weights_digest};
use nnsight_remote::record::{RecordDevice, Recorder, record};
use nnsight_remote::validate::{Limits, validate};
use nnsight_remote::{Code, Diagnostic};

use crate::corpus::{Nodes, corpus, output};

type Lm<B> = LanguageModel<B, Gpt2LMHeadModel<B>>;

fn models() -> (Lm<Flex>, Lm<Recorder>, Manifest) {
    let dir = nnsight_support::fixture_dir("tiny-gpt2");
    let real: Lm<Flex> = LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default()).unwrap();
    let config = Gpt2Config::from_file(&dir.join("config.json")).unwrap();
    let device = RecordDevice::default();
    let twin =
        LanguageModel::new(config.init::<Recorder>(&device), real.tokenizer().clone(), real.pad_id(), device);
    let manifest = Manifest::of_language_model(&twin, &["transformer.ln_f", "lm_head"]).unwrap();
    (real, twin, manifest)
}

/// The tiny GPT-2's manifest (for the fuzzer).
pub(crate) fn tiny_manifest() -> Manifest {
    models().2
}

fn no_tensors() -> BTreeMap<String, (Vec<usize>, DType)> {
    BTreeMap::new()
}

#[test]
fn the_manifest_has_symbolic_shapes_tree_params_and_stable_digests() {
    let (real, twin, manifest) = models();
    let block = manifest.site_entries("transformer.h.1", SiteKind::Output).next().unwrap().1;
    assert_eq!(block.shape, vec![Dim::Batch, Dim::Seq, Dim::Fixed(64)]);
    assert_eq!(block.dtype, DType::F32);
    let ids = manifest.site_entries("", SiteKind::Input(0)).next().unwrap().1;
    assert_eq!(ids.shape, vec![Dim::Batch, Dim::Seq]);
    assert!(manifest.has_module("transformer.h.1.attn"));
    assert!(!manifest.has_module("transformer.h.2"), "the fixture has two blocks");
    assert!(
        manifest.param("lm_head.weight").is_some(),
        "{:?}",
        manifest.params.iter().map(|p| &p.path).collect::<Vec<_>>()
    );
    // The same config gives the same digest; the JSON reads back as it was.
    let again = Manifest::of_language_model(&twin, &["transformer.ln_f", "lm_head"]).unwrap();
    assert_eq!(again.config_digest, manifest.config_digest);
    let json = manifest.to_json();
    assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), manifest);
    // The weights' digest is the real model's.
    assert_eq!(weights_digest(real.model()), weights_digest(real.model()));
    assert_ne!(weights_digest(real.model()), weights_digest(twin.model()));
}

#[test]
fn every_corpus_program_validates_with_a_plan() {
    let (_, _, manifest) = models();
    let tensors = BTreeMap::from([("steering".to_owned(), (vec![1, 1, 64], DType::F32))]);
    for (name, program) in corpus() {
        let plan = validate(&manifest, &program, &tensors, &Limits::default()).unwrap_or_else(|d| {
            panic!("{name}: {}", d.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
        });
        assert!(plan.nodes > 0 && plan.forward_passes >= 1, "{name}: {plan:?}");
    }
}

#[test]
fn recorded_programs_validate() {
    let (_, twin, manifest) = models();
    let recorded = record(twin.model(), |rec| {
        let h = twin.trace("The Eiffel Tower").run(async |m| {
            let h = m.transformer.h[0].output().await?;
            m.transformer.h[1].output().edit(|x| x * 2.0).await?;
            Ok(h.slice([0..1, 1..3]))
        })?;
        rec.save("h", &h)
    })
    .unwrap();
    let plan = validate(&manifest, &recorded.program, &no_tensors(), &Limits::default()).unwrap();
    assert_eq!(plan.forward_passes, 1);
    assert!(plan.saved_bytes > 0);
}

/// One trace of one invoke on token ids of length 6.
fn program(nodes: Nodes) -> Program {
    let invoke =
        nnsight_remote::ir::Invoke { input: Some(Input::Tokens(vec![1, 2, 3, 4, 5, 6])), nodes: nodes.0 };
    Program::new(vec![Trace { invokes: vec![invoke], generate: None }])
}

fn codes(manifest: &Manifest, program: &Program) -> Vec<Diagnostic> {
    validate(manifest, program, &no_tensors(), &Limits::default()).expect_err("the program is invalid")
}

fn expect(manifest: &Manifest, program: &Program, code: Code, words: &str) {
    let diagnostics = codes(manifest, program);
    let found =
        diagnostics.iter().find(|d| d.code == code).unwrap_or_else(|| panic!("no {code}: {diagnostics:?}"));
    assert!(found.message.contains(words), "{found}");
    assert!(found.node.is_some(), "{found}: names its node");
}

#[test]
fn each_bad_program_is_a_diagnostic_with_its_code() {
    let (_, _, manifest) = models();
    let read = |n: &mut Nodes, path: &str| n.push(Op::Read { site: output(path) });

    let mut n = Nodes::default();
    read(&mut n, "transformer.h.7");
    expect(&manifest, &program(n), Code::UnknownSite, "no module `transformer.h.7`");

    let mut n = Nodes::default();
    n.push(Op::Read {
        site: Site { path: "transformer.h.0".into(), kind: SiteKind::Input(3), occurrence: 0 },
    });
    expect(&manifest, &program(n), Code::UnknownSite, "argument 3");

    let mut n = Nodes::default();
    n.push(Op::Read { site: Site { occurrence: 2, ..output("transformer.h.0") } });
    expect(&manifest, &program(n), Code::OccurrenceOutOfRange, "occurrence 2");

    let mut n = Nodes::default();
    read(&mut n, "transformer.h.1");
    read(&mut n, "transformer.h.0");
    expect(&manifest, &program(n), Code::OutOfOrder, "execution order");

    let mut n = Nodes::default();
    let h = read(&mut n, "transformer.h.0");
    let part = n.push(Op::Slice {
        x: h,
        ranges: vec![SliceRange { start: 0, end: None }, SliceRange { start: 0, end: Some(2) }],
    });
    n.push(Op::Write { site: output("transformer.h.0"), value: part });
    expect(&manifest, &program(n), Code::ShapeMismatch, "writing `transformer.h.0`");

    let mut n = Nodes::default();
    let h = read(&mut n, "transformer.h.0");
    let half = n.push(Op::Cast { x: h, dtype: DType::F16 });
    n.push(Op::Write { site: output("transformer.h.0"), value: half });
    expect(&manifest, &program(n), Code::TypeMismatch, "F16");

    let mut n = Nodes::default();
    let h = read(&mut n, "transformer.h.0");
    n.push(Op::Slice {
        x: h,
        ranges: vec![SliceRange { start: 0, end: None }, SliceRange { start: 4, end: Some(9) }],
    });
    expect(&manifest, &program(n), Code::OutOfBounds, "of a dimension of 6");

    let mut n = Nodes::default();
    let h = read(&mut n, "transformer.h.0");
    n.push(Op::Matmul { lhs: h, rhs: h });
    expect(&manifest, &program(n), Code::BadShape, "inner dimensions");

    let mut n = Nodes::default();
    let h = read(&mut n, "transformer.h.0");
    n.push(Op::Call { module: "transformer.h.1".into(), args: vec![h] });
    expect(&manifest, &program(n), Code::NotCallable, "not callable");

    let mut n = Nodes::default();
    n.push(Op::Param { path: "transformer.wte.secret".into() });
    expect(&manifest, &program(n), Code::UnknownParam, "transformer.wte.secret");

    let mut n = Nodes::default();
    n.push(Op::Tensor { name: "missing".into() });
    expect(&manifest, &program(n), Code::BadTensors, "missing");

    let mut n = Nodes::default();
    let h = read(&mut n, "transformer.h.0");
    n.push(Op::Unary { fun: UnaryFn::Not, x: h });
    expect(&manifest, &program(n), Code::TypeMismatch, "Not");

    // Limits, and inputs the model cannot take.
    let mut n = Nodes::default();
    let h = read(&mut n, "transformer.h.0");
    n.push(Op::Save { name: "h".into(), value: h, cast: None });
    let small = Limits { max_nodes: 1, max_saved_bytes: 16, ..Limits::default() };
    let diagnostics = validate(&manifest, &program(n), &no_tensors(), &small).unwrap_err();
    assert_eq!(diagnostics.iter().filter(|d| d.code == Code::LimitExceeded).count(), 2, "{diagnostics:?}");

    let mut long = program(Nodes::default());
    long.traces[0].invokes[0].input = Some(Input::Tokens(vec![1; manifest.max_positions + 1]));
    assert!(codes(&manifest, &long).iter().any(|d| d.code == Code::BadInput));
    let mut tensor_input = program(Nodes::default());
    tensor_input.traces[0].invokes[0].input = Some(Input::Tensor("x".into()));
    assert!(codes(&manifest, &tensor_input).iter().any(|d| d.code == Code::BadInput));
}

#[test]
fn any_inspectable_model_has_a_manifest() {
    let (_, twin, lm_manifest) = models();
    let ids = |batch: usize, n: usize| {
        let data: Vec<i32> = (0..batch * n).map(|i| (i % 7 + 1) as i32).collect();
        let device = RecordDevice::default();
        let ids = burn::tensor::Tensor::<Recorder, 2, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(data, [batch, n]),
            &device,
        );
        let mask = ids.clone().ones_like();
        (ids, mask)
    };
    let bare = Manifest::of_model(twin.model(), ids(1, 3), ids(2, 5), (3, 5), &["lm_head"]).unwrap();
    assert!(!bare.generates);
    assert_eq!(bare.sites, lm_manifest.sites, "the bare model's sites are the language model's");
    assert_eq!(bare.config_digest.len(), 64);
}
