//! Each structural rule, broken once: the diagnostic's code, node and message.

use nnsight_remote::ir::{
    BinaryFn, Input, Invoke, Location, Node, Op, Program, ReduceFn, Scalar, Steps, Trace,
};
use nnsight_remote::{Code, NodePath, Version, canonical, check};

use crate::corpus::{Nodes, output};

fn program(invokes: Vec<Nodes>) -> Program {
    let invokes =
        invokes.into_iter().map(|n| Invoke { input: Some(Input::Text("x".into())), nodes: n.0 }).collect();
    Program::new(vec![Trace { invokes, generate: None }])
}

/// The codes of `program`'s diagnostics, with the node each is about.
fn codes(program: &Program) -> Vec<(Code, Option<u32>)> {
    check::check(program).into_iter().map(|d| (d.code, d.node.map(|n| n.node))).collect()
}

#[test]
fn references_must_point_back_to_a_value_in_scope() {
    let mut n = Nodes::default();
    let h = n.push(Op::Read { site: output("transformer.h.0") });
    n.push(Op::Unary { fun: nnsight_remote::ir::UnaryFn::Exp, x: 5 }); // forward
    let saved = n.push(Op::Save { name: "h".into(), value: h, cast: None });
    n.push(Op::Log { label: "s".into(), value: saved }); // a save has no value
    n.push(Op::Edit {
        site: output("transformer.h.0"),
        steps: Steps::All,
        body: vec![
            Node::new(Op::Arg),
            Node::new(Op::BinaryScalar { fun: BinaryFn::Mul, x: 5, scalar: Scalar(2.0) }),
        ],
    });
    n.push(Op::Save { name: "inner".into(), value: 6, cast: None }); // the body's node, out of scope
    assert_eq!(
        codes(&program(vec![n])),
        [(Code::DanglingRef, Some(1)), (Code::NoValue, Some(3)), (Code::DanglingRef, Some(7))]
    );
}

#[test]
fn edit_bodies_start_with_arg_end_with_a_value_and_hold_no_site_operations() {
    let mut n = Nodes::default();
    let edit = |body: Vec<Op>| Op::Edit {
        site: output("transformer.h.0"),
        steps: Steps::All,
        body: body.into_iter().map(Node::new).collect(),
    };
    n.push(edit(vec![Op::Tensor { name: "t".into() }])); // no arg first
    n.push(edit(vec![Op::Arg, Op::Read { site: output("transformer.h.1") }])); // a read in a body
    n.push(edit(vec![])); // empty
    n.push(Op::Arg); // outside an edit
    let diagnostics = check::check(&program(vec![n]));
    let got: Vec<_> = diagnostics.iter().map(|d| (d.code, d.node.unwrap().node)).collect();
    assert_eq!(
        got,
        [
            (Code::BadEditBody, 0),
            (Code::BadEditBody, 4),
            (Code::BadEditBody, 5),
            (Code::BadEditBody, 5),
            (Code::ArgOutsideEdit, 6)
        ]
    );
    assert!(diagnostics[1].message.contains("`read` cannot stand in it"), "{}", diagnostics[1]);
}

#[test]
fn shared_values_come_from_earlier_invokes() {
    let mut first = Nodes::default();
    let h = first.push(Op::Read { site: output("transformer.h.0") });
    first.push(Op::Save { name: "h".into(), value: h, cast: None });
    let mut second = Nodes::default();
    second.push(Op::Shared { invoke: 0, node: h }); // fine
    second.push(Op::Shared { invoke: 0, node: 1 }); // a save: no value
    second.push(Op::Shared { invoke: 1, node: 0 }); // itself
    second.push(Op::Shared { invoke: 0, node: 9 }); // no such node
    assert_eq!(
        codes(&program(vec![first, second])),
        [(Code::BadShared, Some(1)), (Code::BadShared, Some(2)), (Code::BadShared, Some(3))]
    );
}

#[test]
fn saved_values_come_from_earlier_traces_and_names_are_unique() {
    let mut first = Nodes::default();
    let h = first.push(Op::Read { site: output("transformer.h.0") });
    first.push(Op::Saved { name: "later".into() }); // saved by the second trace only
    first.push(Op::Save { name: "h".into(), value: h, cast: None });
    let mut second = Nodes::default();
    let h = second.push(Op::Saved { name: "h".into() });
    second.push(Op::Save { name: "later".into(), value: h, cast: None });
    second.push(Op::Save { name: "h".into(), value: h, cast: None });
    let traces = [first, second]
        .into_iter()
        .map(|n| Trace { invokes: vec![Invoke { input: None, nodes: n.0 }], generate: None })
        .collect();
    let diagnostics = check::check(&Program::new(traces));
    let got: Vec<_> = diagnostics.iter().map(|d| (d.code, d.node.unwrap())).collect();
    assert_eq!(
        got,
        [
            (Code::UnknownSaved, NodePath { trace: 0, invoke: 0, node: 1 }),
            (Code::DuplicateSave, NodePath { trace: 1, invoke: 0, node: 2 })
        ]
    );
}

#[test]
fn operations_arguments_are_consistent() {
    let mut n = Nodes::default();
    let h = n.push(Op::Read { site: output("transformer.h.0") });
    n.push(Op::Reduce { fun: ReduceFn::Argmax, x: h, dim: None });
    n.push(Op::Cat { xs: vec![], dim: 0 });
    n.push(Op::Call { module: "lm_head".into(), args: vec![] });
    n.push(Op::TopK { x: h, k: 0, dim: 0, part: nnsight_remote::ir::TopKPart::Values });
    n.push(Op::Permute { x: h, dims: vec![0, 0, 1] });
    n.push(Op::Reshape { x: h, shape: vec![-1, -1] });
    n.push(Op::Edit {
        site: output("transformer.h.0"),
        steps: Steps::List(vec![2, 1]),
        body: vec![Node::new(Op::Arg)],
    });
    let got = codes(&program(vec![n]));
    assert_eq!(got.len(), 7, "{got:?}");
    assert!(got.iter().all(|(code, _)| *code == Code::BadArgument), "{got:?}");
}

#[test]
fn diagnostics_carry_the_source_location() {
    let mut n = Nodes::default();
    n.push(Op::Stop);
    n.0[0] = Node {
        op: Op::Save { name: "x".into(), value: 3, cast: None },
        at: Some(Location { file: "examples/steer.rs".into(), line: 14, column: 9 }),
    };
    let diagnostic = check::check(&program(vec![n])).remove(0);
    assert_eq!(
        diagnostic.to_string(),
        "[dangling_ref] trace 0 invoke 0 node 0 (examples/steer.rs:14:9): `save` uses node 3, which is not before it (node 0)"
    );
    let json = serde_json::to_string(&diagnostic).unwrap();
    assert!(json.contains(r#""code":"dangling_ref""#), "{json}");
}

#[test]
fn versions_a_build_cannot_read_are_refused_naming_both() {
    let mut program = program(vec![Nodes::default()]);
    program.ir = Version { major: 1, minor: 7 };
    let text = canonical::encode(&program);
    let refused = canonical::decode(text.as_bytes(), 1 << 20).unwrap_err();
    assert_eq!(refused.code, Code::UnsupportedVersion);
    assert!(refused.message.contains("IR 1.7") && refused.message.contains("up to 1.0"), "{refused}");
    // A newer minor's unknown field is reported as the version, not as the field.
    let newer = text.replace(r#""traces":"#, r#""budget":3,"traces":"#);
    assert_eq!(canonical::decode(newer.as_bytes(), 1 << 20).unwrap_err().code, Code::UnsupportedVersion);
    program.ir = Version { major: 2, minor: 0 };
    assert_eq!(check::check(&program)[0].code, Code::UnsupportedVersion);
}

#[test]
fn malformed_and_oversized_texts_are_one_diagnostic() {
    let cases: [(&[u8], Code, &str); 6] = [
        (b"", Code::Malformed, "not JSON"),
        (b"{\"ir\":{\"major\":1,\"minor\":0},\"traces\":[", Code::Malformed, "not JSON"),
        (b"[1,2]", Code::Malformed, "no `ir`"),
        (br#"{"ir":{"major":"one","minor":0},"traces":[]}"#, Code::Malformed, "not a version"),
        (br#"{"ir":{"major":1,"minor":0},"traces":[],"extra":1}"#, Code::Malformed, "unknown field `extra`"),
        (
            br#"{"ir":{"major":1,"minor":0},"traces":[{"invokes":[{"nodes":[{"op":{"rread":{}}}]}]}]}"#,
            Code::Malformed,
            "unknown variant `rread`",
        ),
    ];
    for (text, code, message) in cases {
        let diagnostic = canonical::decode(text, 1 << 20).unwrap_err();
        assert_eq!(diagnostic.code, code, "{diagnostic}");
        assert!(diagnostic.message.contains(message), "{diagnostic}");
    }
    let large = canonical::decode(&[b' '; 2000], 1000).unwrap_err();
    assert_eq!(large.code, Code::TooLarge);
    assert!(large.message.contains("2000 bytes") && large.message.contains("1000"), "{large}");
}

#[test]
fn non_finite_scalars_round_trip() {
    let mut n = Nodes::default();
    let h = n.push(Op::Read { site: output("") });
    for x in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 1e-300] {
        n.push(Op::FullLike { x: h, value: Scalar(x) });
    }
    let program = program(vec![n]);
    let text = canonical::encode(&program);
    assert!(text.contains(r#""NaN""#) && text.contains(r#""-Infinity""#), "{text}");
    assert_eq!(canonical::decode(text.as_bytes(), 1 << 20).unwrap(), program);
}
