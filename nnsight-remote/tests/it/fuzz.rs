//! The decoder, the checker and the validator on hostile input: arbitrary bytes, golden files cut
//! short or with bytes changed, and arbitrary programs (with references anywhere, on real and
//! made-up paths). Never a panic; a program that decodes re-encodes to the same canonical text.

use nnsight_remote::ir::{
    BinaryFn, Invoke, Node, Op, Program, ReduceFn, Scalar, Site, SiteKind, SliceRange, Steps, Trace, UnaryFn,
};
use nnsight_remote::{canonical, check};
use proptest::prelude::*;

use crate::corpus::corpus;

fn site() -> impl Strategy<Value = Site> {
    let real = prop_oneof![
        Just("transformer.h.0".to_owned()),
        Just("transformer.h.1.mlp".to_owned()),
        Just("lm_head".to_owned())
    ];
    (prop_oneof![Just("".to_owned()), "[a-z]{1,3}(\\.[0-9])?", real], any::<bool>(), 0u32..3).prop_map(
        |(path, output, occurrence)| Site {
            path,
            kind: if output { SiteKind::Output } else { SiteKind::Input(occurrence) },
            occurrence,
        },
    )
}

fn op(depth: u32) -> BoxedStrategy<Op> {
    let r = 0u32..12;
    let leaf =
        prop_oneof![
            site().prop_map(|site| Op::Read { site }),
            (site(), r.clone()).prop_map(|(site, value)| Op::Write { site, value }),
            Just(Op::Arg),
            Just(Op::Stop),
            "[a-z]{1,2}".prop_map(|name| Op::Saved { name }),
            (0u32..3, r.clone()).prop_map(|(invoke, node)| Op::Shared { invoke, node }),
            r.clone().prop_map(|x| Op::Unary { fun: UnaryFn::Gelu, x }),
            (r.clone(), r.clone()).prop_map(|(lhs, rhs)| Op::Binary { fun: BinaryFn::Sub, lhs, rhs }),
            (r.clone(), any::<f64>()).prop_map(|(x, s)| Op::BinaryScalar {
                fun: BinaryFn::Pow,
                x,
                scalar: Scalar(s)
            }),
            (r.clone(), proptest::option::of(0u32..4)).prop_map(|(x, dim)| Op::Reduce {
                fun: ReduceFn::Argmin,
                x,
                dim
            }),
            (r.clone(), proptest::collection::vec(-3i64..4, 0..4))
                .prop_map(|(x, shape)| Op::Reshape { x, shape }),
            (r.clone(), proptest::collection::vec(0u32..4, 0..4))
                .prop_map(|(x, dims)| Op::Permute { x, dims }),
            (r.clone(), proptest::collection::vec((-4i64..4, proptest::option::of(-4i64..4)), 0..3))
                .prop_map(|(x, ranges)| Op::Slice {
                    x,
                    ranges: ranges.into_iter().map(|(start, end)| SliceRange { start, end }).collect()
                }),
            (proptest::collection::vec(r.clone(), 0..3), 0u32..3).prop_map(|(xs, dim)| Op::Cat { xs, dim }),
            ("[a-z]{1,2}", r.clone()).prop_map(|(name, value)| Op::Save { name, value, cast: None }),
            "[a-z]{1,3}(\\.[a-z]{1,3})?".prop_map(|path| Op::Param { path }),
            (r.clone(), r.clone(), proptest::option::of(r.clone()))
                .prop_map(|(x, weight, bias)| Op::Linear { x, weight, bias }),
            (r.clone(), r.clone(), proptest::option::of(r.clone()), any::<f64>())
                .prop_map(|(x, gamma, beta, e)| Op::LayerNorm { x, gamma, beta, epsilon: Scalar(e) }),
            (r.clone(), proptest::collection::vec(0u32..6, 0..4))
                .prop_map(|(x, shape)| Op::Expand { x, shape }),
        ];
    if depth == 0 {
        return leaf.boxed();
    }
    let steps = prop_oneof![
        Just(Steps::All),
        (0u32..4, proptest::option::of(0u32..4)).prop_map(|(start, end)| Steps::Range { start, end }),
        proptest::collection::vec(0u32..5, 0..3).prop_map(Steps::List),
    ];
    prop_oneof![
        4 => leaf,
        1 => (site(), steps, proptest::collection::vec(op(depth - 1), 0..3)).prop_map(|(site, steps, body)| Op::Edit {
            site,
            steps,
            body: body.into_iter().map(Node::new).collect(),
        }),
    ]
    .boxed()
}

fn program() -> impl Strategy<Value = Program> {
    let invoke = proptest::collection::vec(op(2), 0..8)
        .prop_map(|ops| Invoke { input: None, nodes: ops.into_iter().map(Node::new).collect() });
    let trace = proptest::collection::vec(invoke, 0..3).prop_map(|invokes| Trace { invokes, generate: None });
    proptest::collection::vec(trace, 0..3).prop_map(Program::new)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(program) = canonical::decode(&bytes, 1 << 16) {
            let _ = check::check(&program);
        }
    }

    #[test]
    fn damaged_golden_programs_never_panic(which in 0usize..6, cut in any::<prop::sample::Index>(),
                                           flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4)) {
        let (_, program) = corpus().swap_remove(which);
        let mut bytes = canonical::encode(&program).into_bytes();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        if let Ok(program) = canonical::decode(&bytes, 1 << 16) {
            let _ = check::check(&program);
            let again = canonical::encode(&program);
            prop_assert_eq!(canonical::decode(again.as_bytes(), 1 << 16).unwrap(), program);
        }
    }

    #[test]
    fn arbitrary_programs_round_trip_and_check_without_panicking(program in program()) {
        let text = canonical::encode(&program);
        let decoded = canonical::decode(text.as_bytes(), 1 << 20).unwrap();
        prop_assert_eq!(&decoded, &program);
        prop_assert_eq!(canonical::encode(&decoded), text);
        let _ = check::check(&decoded);
        // The references a renumbering rewrites are the ones the checker follows.
        for node in decoded.traces.iter().flat_map(|t| &t.invokes).flat_map(|i| &i.nodes) {
            let mut op = node.op.clone();
            let refs: Vec<_> = op.inputs_mut().into_iter().map(|r| *r).collect();
            prop_assert_eq!(refs, node.op.inputs());
        }
    }

    #[test]
    fn damaged_tensors_files_never_panic(cut in any::<prop::sample::Index>(),
                                         flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6)) {
        use burn::prelude::*;
        type B = burn::backend::Flex;
        let device = Default::default();
        let values = std::collections::BTreeMap::from([
            ("a".to_owned(), nnsight_remote::interpret::Value::F2(Tensor::<B, 2>::ones([2, 3], &device))),
            ("b".to_owned(), nnsight_remote::interpret::Value::I1(Tensor::<B, 1, Int>::arange(0..5, &device))),
        ]);
        let mut bytes = nnsight_remote::tensors::write(&values).unwrap();
        for (at, byte) in flips {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = nnsight_remote::tensors::read::<B>(&bytes, &device);
    }
}

/// The validator on arbitrary programs, and on damaged golden ones, against the tiny GPT-2's
/// manifest: a result, never a panic.
#[test]
fn the_validator_never_panics() {
    use nnsight_remote::validate::{Limits, validate};
    let manifest = crate::validate::tiny_manifest();
    let tensors = std::collections::BTreeMap::from([(
        "steering".to_owned(),
        (vec![1, 1, 64], nnsight_remote::ir::DType::F32),
    )]);
    let mut runner = deterministic(256);
    runner
        .run(&program(), |program| {
            let _ = validate(&manifest, &program, &tensors, &Limits::default());
            Ok(())
        })
        .unwrap();
    let damaged = (0usize..6, any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>());
    runner
        .run(&damaged, |(which, cut, at, byte)| {
            let (_, program) = corpus().swap_remove(which);
            let mut bytes = canonical::encode(&program).into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            bytes.truncate(cut.index(bytes.len() + 1));
            if let Ok(program) = canonical::decode(&bytes, 1 << 16) {
                let _ = validate(&manifest, &program, &tensors, &Limits::default());
            }
            Ok(())
        })
        .unwrap();
}

/// Programs that pass the structural checks — reads of real sites, then tensor operations on
/// earlier values with arbitrary dimensions, ranges and shapes — so that the validator's shape
/// rules run, and the interpreter runs them on the tiny GPT-2 too: a result, never a panic (no
/// overflow on huge shapes, no index out of range), and a program the validator accepts runs.
#[test]
fn the_validators_shape_rules_never_panic() {
    use nnsight_remote::ir::{DType, Input};
    use nnsight_remote::validate::{Limits, validate};
    let manifest = crate::validate::tiny_manifest();
    let dir = nnsight_support::fixture_dir("tiny-gpt2");
    let lm: nnsight_models::LanguageModel<burn::backend::Flex, nnsight_models::gpt2::Gpt2LMHeadModel<_>> =
        nnsight_models::LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default()).unwrap();
    let hosted = nnsight_remote::interpret::Hosted::new();
    let steps = proptest::collection::vec((0u8..12, any::<u32>(), any::<u32>(), any::<i64>()), 1..12);
    let mut runner = deterministic(256);
    let accepted = std::cell::Cell::new(0);
    runner
        .run(&steps, |steps| {
            let sites = ["transformer.h.0", "transformer.h.1", "", "transformer.h.1.attn.attn_dropout"];
            let mut nodes = vec![Node::new(Op::Read {
                site: Site { path: sites[0].into(), kind: SiteKind::Output, occurrence: 0 },
            })];
            for (kind, a, b, c) in steps {
                let n = nodes.len() as u32;
                let (x, y) = (a % n, b % n);
                let small = |v: i64| v.rem_euclid(9) - 2;
                let op = match kind {
                    0 => Op::Binary { fun: BinaryFn::Add, lhs: x, rhs: y },
                    1 => Op::Matmul { lhs: x, rhs: y },
                    2 => Op::Slice {
                        x,
                        ranges: vec![
                            SliceRange { start: small(c), end: Some(small(c / 7)) };
                            (a % 4) as usize
                        ],
                    },
                    3 => Op::Reshape { x, shape: vec![c, small(c), -1][..(b % 4) as usize].to_vec() },
                    4 => Op::Transpose { x, dim0: a % 5, dim1: b % 5 },
                    5 => Op::Reduce { fun: ReduceFn::Sum, x, dim: Some((c.rem_euclid(6)) as u32) },
                    6 => Op::Cat { xs: vec![x, y], dim: a % 4 },
                    7 => Op::Softmax { x, dim: b % 5 },
                    8 => Op::Permute { x, dims: vec![a % 4, b % 4, (c.rem_euclid(4)) as u32] },
                    9 => Op::Expand { x, shape: vec![a, b, c as u32] },
                    10 => Op::Read {
                        site: Site {
                            path: sites[(a % 4) as usize].into(),
                            kind: SiteKind::Output,
                            occurrence: b % 2,
                        },
                    },
                    _ => Op::Unary { fun: UnaryFn::Exp, x },
                };
                nodes.push(Node::new(op));
            }
            let last = nodes.len() as u32 - 1;
            let end = if last.is_multiple_of(2) {
                Op::Write {
                    site: Site { path: "transformer.h.1".into(), kind: SiteKind::Output, occurrence: 0 },
                    value: last,
                }
            } else {
                Op::Save { name: "out".into(), value: last, cast: None }
            };
            nodes.push(Node::new(end));
            let invoke = Invoke { input: Some(Input::Tokens(vec![1, 2, 3, 4])), nodes };
            let program = Program::new(vec![Trace { invokes: vec![invoke], generate: None }]);
            let tensors = std::collections::BTreeMap::<String, (Vec<usize>, DType)>::new();
            let valid = validate(&manifest, &program, &tensors, &Limits::default()).is_ok();
            let ran =
                nnsight_remote::interpret::run_language_model(&lm, &program, &Default::default(), &hosted);
            prop_assert!(!valid || ran.is_ok(), "valid, but it failed: {:?}", ran.err());
            if valid {
                accepted.set(accepted.get() + 1);
            }
            // A program the validator refuses fails when run too (the validator is not stricter
            // than the interpreter on these).
            prop_assert!(valid || ran.is_err(), "refused, but it ran");
            Ok(())
        })
        .unwrap();
    assert!(
        accepted.get() >= 10,
        "only {} of 256 programs were valid: the fuzzer tests too little",
        accepted.get()
    );
}

/// A runner of `cases` cases with a fixed seed: the same cases on every run.
fn deterministic(cases: u32) -> proptest::test_runner::TestRunner {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}
