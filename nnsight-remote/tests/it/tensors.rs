//! Tensors files: literals and saves round-trip through safetensors bit for bit in their own
//! element types; an intervention directory saved, loaded and run gives the compiled body's
//! values; damaged files are one diagnostic naming what is wrong.

use std::collections::BTreeMap;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::FloatDType;
use nnsight::prelude::*;
use nnsight_models::LanguageModel;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use nnsight_remote::interpret::{self, Value};
use nnsight_remote::intervention::{Intervention, PROGRAM_FILE, TENSORS_FILE};
use nnsight_remote::ir::{BinaryFn, Input, Invoke, Op, Program, Trace};
use nnsight_remote::{Code, tensors};
use nnsight_support::sweep::prompt;

use crate::corpus::{Nodes, output};

type B = Flex;

fn sample() -> BTreeMap<String, Value<B>> {
    let device = Default::default();
    let f = Tensor::<B, 3>::from_floats([[[0.5, -1.25], [3.0, f32::MIN_POSITIVE]]], &device);
    BTreeMap::from([
        ("f32".to_owned(), Value::F3(f.clone())),
        ("f16".to_owned(), Value::F1(f.clone().reshape([4]).cast(FloatDType::F16))),
        ("int".to_owned(), Value::I2(Tensor::<B, 2, Int>::from_ints([[1, -2], [3, 1 << 20]], &device))),
        (
            "bool".to_owned(),
            Value::B1(Tensor::<B, 1, Bool>::from_bool([true, false, true].as_slice().into(), &device)),
        ),
    ])
}

#[test]
fn tensors_round_trip_in_their_element_types() {
    let values = sample();
    let bytes = tensors::write(&values).unwrap();
    let back = tensors::read::<B>(&bytes, &Default::default()).unwrap();
    assert_eq!(back.keys().collect::<Vec<_>>(), values.keys().collect::<Vec<_>>());
    for (name, value) in &values {
        assert_eq!(back[name].to_bytes(), value.to_bytes(), "{name}");
    }
}

#[test]
fn damaged_or_unsupported_tensors_files_are_one_diagnostic() {
    let bytes = tensors::write(&sample()).unwrap();
    let rank5 = safetensors::serialize(
        [(
            "x",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1, 1, 1, 1, 1], &[0u8; 4])
                .unwrap(),
        )],
        None,
    )
    .unwrap();
    let u8s = safetensors::serialize(
        [("x", safetensors::tensor::TensorView::new(safetensors::Dtype::U8, vec![2], &[1u8, 2]).unwrap())],
        None,
    )
    .unwrap();
    let cases: [(&[u8], &str); 5] = [
        (&bytes[..bytes.len() - 3], "not a safetensors file"),
        (&bytes[..5], "not a safetensors file"),
        (b"not a tensors file at all", "not a safetensors file"),
        (&rank5, "rank 5"),
        (&u8s, "U8"),
    ];
    for (bytes, message) in cases {
        let diagnostic = tensors::read::<B>(bytes, &Default::default()).unwrap_err();
        assert_eq!(diagnostic.code, Code::BadTensors);
        assert!(diagnostic.message.contains(message), "{diagnostic}");
    }
}

#[test]
fn an_intervention_directory_saved_loaded_and_run_gives_the_compiled_values() {
    let dir = nnsight_support::fixture_dir("tiny-gpt2");
    let lm: LanguageModel<B, Gpt2LMHeadModel<B>> =
        LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default()).unwrap();
    let hidden = lm.model().transformer.wte.weight.val().dims()[1];
    let steering = Tensor::<B, 1>::from_floats(
        (0..hidden).map(|i| i as f32 / 16.0 - 1.0).collect::<Vec<_>>().as_slice(),
        &Default::default(),
    )
    .reshape([1, 1, hidden]);
    let mut n = Nodes::default();
    let v = n.push(Op::Tensor { name: "steering".into() });
    let h = n.push(Op::Read { site: output("transformer.h.0") });
    let sum = n.push(Op::Binary { fun: BinaryFn::Add, lhs: h, rhs: v });
    n.push(Op::Write { site: output("transformer.h.0"), value: sum });
    let logits = n.push(Op::Read { site: output("") });
    n.push(Op::Save { name: "logits".into(), value: logits, cast: None });
    let tokens = vec![5u32, 77, 301, 12];
    let program = Program::new(vec![Trace {
        invokes: vec![Invoke { input: Some(Input::Tokens(tokens.clone())), nodes: n.0 }],
        generate: None,
    }]);
    let literals = BTreeMap::from([("steering".to_owned(), Value::F3(steering.clone()))]);
    let shared = tempfile::tempdir().unwrap();
    Intervention { program, tensors: tensors::write(&literals).unwrap() }.save(shared.path()).unwrap();
    assert!(shared.path().join(PROGRAM_FILE).exists() && shared.path().join(TENSORS_FILE).exists());

    let loaded = Intervention::load(shared.path(), 1 << 20).unwrap();
    let literals = tensors::read::<B>(&loaded.tensors, &Default::default()).unwrap();
    let outcome = interpret::run(lm.model(), &loaded.program, &literals, |input: &Input| match input {
        Input::Tokens(t) => Ok(prompt::<B>(t)),
        _ => unreachable!(),
    })
    .unwrap();
    let results = tensors::write(&outcome.saves).unwrap();
    let results = tensors::read::<B>(&results, &Default::default()).unwrap();

    let expected: Tensor<B, 3> = lm
        .model()
        .trace(prompt::<B>(&tokens))
        .run(async |m| {
            m.transformer.h[0].output().edit(|h| h + steering.clone()).await?;
            m.output().await
        })
        .unwrap();
    let (_, _, bytes) = results["logits"].to_bytes();
    assert!(bytes == expected.to_data().as_bytes(), "the results file holds other logits");

    // A damaged or oversized directory is one diagnostic naming the file.
    std::fs::write(shared.path().join(PROGRAM_FILE), "{\"ir\":").unwrap();
    let damaged = Intervention::load(shared.path(), 1 << 20).unwrap_err();
    assert!(damaged.code == Code::Malformed && damaged.message.contains(PROGRAM_FILE), "{damaged}");
    let large = Intervention::load(shared.path(), 3).unwrap_err();
    assert_eq!(large.code, Code::TooLarge);
    let missing = Intervention::load(&shared.path().join("nowhere"), 1 << 20).unwrap_err();
    assert!(missing.message.contains("cannot read it"), "{missing}");
}
