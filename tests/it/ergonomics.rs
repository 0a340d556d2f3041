//! The small conveniences a trace body leans on: prompts in every form a researcher holds them
//! (text, ids as a `Vec`, slice, array or tensor) give the same trace, and the position helpers
//! (`at_pos`, `set_pos`, `add_at_pos`) equal the slicing they stand for.

use crate::support;

use burn::prelude::*;
use nnsight::Error;
use nnsight::prelude::*;
use nnsight_models::Prompts;
use support::B;
use support::fixture::tiny_gpt2;

const PROMPT: &str = "The Eiffel Tower is in the city of";

#[test]
fn prompts_in_every_form_give_the_same_trace() {
    let lm = tiny_gpt2();
    let ids = lm.encode(PROMPT).unwrap();
    let device = Default::default();
    let row: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
    let one = Tensor::<B, 1, Int>::from_data(TensorData::new(row.clone(), [ids.len()]), &device);
    let two = Tensor::<B, 2, Int>::from_data(TensorData::new(row, [1, ids.len()]), &device);
    let forms: Vec<(&str, Prompts)> = vec![
        ("&str", PROMPT.into()),
        ("[&str; 1]", [PROMPT].into()),
        ("&[String]", [PROMPT.to_owned()].as_slice().into()),
        ("Vec<u32>", ids.clone().into()),
        ("&[u32]", ids.as_slice().into()),
        ("&Vec<u32>", (&ids).into()),
        ("&[Vec<u32>]", [ids.clone()].as_slice().into()),
        ("Tensor<B, 1, Int>", one.into()),
        ("Tensor<B, 2, Int>", two.into()),
    ];
    let reference = lm.forward(PROMPT).unwrap();
    for (form, prompts) in forms {
        let logits = lm.trace(prompts).run(async |m| m.output().await).unwrap();
        assert_eq!(logits.dims(), reference.dims(), "{form}");
        support::assert_identical(&logits, &reference);
    }
    let array = [ids[0], ids[1], ids[2]];
    assert_eq!(Prompts::from(array), Prompts::from(ids[..3].to_vec()));
    // Two rows of a tensor are two prompts; a negative id is rejected as outside the vocabulary.
    let pair = Tensor::<B, 2, Int>::from_data([[1, 2, 3], [4, 5, 6]], &device);
    assert_eq!(Prompts::from(pair), Prompts::Ids(vec![vec![1, 2, 3], vec![4, 5, 6]]));
    let negative = Tensor::<B, 1, Int>::from_data([1, -2], &device);
    let error = lm.trace(negative).run(async |m| m.output().await).unwrap_err();
    assert!(
        matches!(error, Error::Input { .. }) && error.to_string().contains("outside the vocabulary"),
        "{error}"
    );
}

#[test]
fn position_helpers_equal_the_slicing_they_stand_for() {
    let lm = tiny_gpt2();
    let tokens = lm.encode(PROMPT).unwrap().len() as isize;
    let patch = |h: Tensor<B, 3>| {
        let [b, t, d] = h.dims();
        let last = h.clone().narrow(1, t - 1, 1);
        let first = h.clone().narrow(1, 0, 1);
        h.slice_assign([0..b, 0..1, 0..d], last).slice_assign([0..b, t - 1..t, 0..d], first + 0.5)
    };
    let by_hand = lm
        .trace(PROMPT)
        .run(async |m| {
            m.transformer.h[0].output().edit(patch).await?;
            m.output().await
        })
        .unwrap();
    let by_helpers = lm
        .trace(PROMPT)
        .run(async |m| {
            m.transformer.h[0]
                .output()
                .try_edit(|h: Tensor<B, 3>| {
                    let (last, first) = (h.clone().at_pos(-1)?, h.clone().at_pos(0)?);
                    let d = first.dims()[1];
                    h.set_pos(0, last)?
                        .set_pos(-1, first)?
                        .add_at_pos(-1, Tensor::full([d], 0.5, &Default::default()))
                })
                .await?;
            m.output().await
        })
        .unwrap();
    support::assert_identical(&by_helpers, &by_hand);
    // A position past the end inside a body is the body's error; the model stays usable.
    let error = lm
        .trace(PROMPT)
        .run(async |m| {
            m.transformer.h[0]
                .output()
                .try_edit(|h: Tensor<B, 3>| {
                    let width = h.dims()[2];
                    h.set_pos(tokens, Tensor::zeros([1, width], &Default::default()))
                })
                .await
        })
        .unwrap_err();
    assert!(
        error.to_string().contains(&format!("position {tokens} of a value with {tokens} tokens")),
        "{error}"
    );
    support::assert_identical(
        &lm.forward(PROMPT).unwrap(),
        &lm.trace(PROMPT).run(async |m| m.output().await).unwrap(),
    );
}
