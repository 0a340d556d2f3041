//! The decoder and the checker on hostile input: arbitrary bytes, golden files cut short or with
//! bytes changed, and arbitrary programs (with references anywhere). Never a panic; a program
//! that decodes re-encodes to the same canonical text.

use nnsight_remote::ir::{
    BinaryFn, Invoke, Node, Op, Program, ReduceFn, Scalar, Site, SiteKind, SliceRange, Steps, Trace, UnaryFn,
};
use nnsight_remote::{canonical, check};
use proptest::prelude::*;

use crate::corpus::corpus;

fn site() -> impl Strategy<Value = Site> {
    (prop_oneof![Just("".to_owned()), "[a-z]{1,3}(\\.[0-9])?"], any::<bool>(), 0u32..3).prop_map(
        |(path, output, occurrence)| Site {
            path,
            kind: if output { SiteKind::Output } else { SiteKind::Input(occurrence) },
            occurrence,
        },
    )
}

fn op(depth: u32) -> BoxedStrategy<Op> {
    let r = 0u32..12;
    let leaf = prop_oneof![
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
        (r.clone(), proptest::collection::vec(0u32..4, 0..4)).prop_map(|(x, dims)| Op::Permute { x, dims }),
        (r.clone(), proptest::collection::vec((-4i64..4, proptest::option::of(-4i64..4)), 0..3)).prop_map(
            |(x, ranges)| Op::Slice {
                x,
                ranges: ranges.into_iter().map(|(start, end)| SliceRange { start, end }).collect()
            }
        ),
        (proptest::collection::vec(r.clone(), 0..3), 0u32..3).prop_map(|(xs, dim)| Op::Cat { xs, dim }),
        ("[a-z]{1,2}", r.clone()).prop_map(|(name, value)| Op::Save { name, value, cast: None }),
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
