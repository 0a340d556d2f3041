//! `trace!`: nnsight-shaped bodies give the same results as the explicit API.

use crate::support;

use burn::prelude::*;
use nnsight::prelude::*;
use support::models::{Mlp, Transformer};
use support::{B, assert_identical, input};

#[test]
fn reads_and_replacements_match_the_explicit_api() {
    let model = Transformer::<B>::new(2, &Default::default());
    let x = input([1, 4, 8], 30);
    let patch = input([1, 4, 8], 31);

    let (h0, out) = trace!(model, x.clone(), |m| {
        let h0 = m.blocks[0].output().save();
        m.blocks[1].output() = patch.clone();
        (h0, m.output())
    })
    .unwrap();

    let (h0_explicit, out_explicit) = model
        .trace(x)
        .run(async |m| {
            let h0 = m.blocks[0].output().await?;
            m.blocks[1].output().replace(patch.clone()).await?;
            Ok((h0, m.output().await?))
        })
        .unwrap();
    assert_identical(&h0, &h0_explicit);
    assert_identical(&out, &out_explicit);
    assert_identical(&out, &model.tail(patch));
}

#[test]
fn compound_assignment_edits_the_value() {
    let model = Mlp::<B>::new(3, 5, &Default::default());
    let x = input([2, 5], 32);
    let (h, out) = trace!(model, x, |m| {
        let h: Tensor<B, 2> = m.layers[2].output();
        m.layers[2].output::<Tensor<B, 2>>() *= 0.5;
        (h, m.output())
    })
    .unwrap();
    let act = burn::tensor::activation::relu(h * 0.5);
    assert_identical(&out, &model.head.forward(act));
}

#[test]
fn loops_branches_and_occurrences_work_in_bodies() {
    let model = Transformer::<B>::new(3, &Default::default());
    let x = input([1, 3, 8], 33);
    let norms = trace!(&model, x.clone(), |m| {
        let mut norms = Vec::new();
        for (i, block) in m.blocks.iter().enumerate() {
            let h = block.output();
            norms.push(h.clone().powf_scalar(2.0).sum().into_scalar());
            if i == 1 {
                block.output() = h.zeros_like();
            }
        }
        let second = m.proj.output::<Tensor<B, 3>>().at(1);
        norms.push(second.powf_scalar(2.0).sum().into_scalar());
        norms
    })
    .unwrap();
    assert_eq!(norms.len(), 4);
    assert!(norms[..2].iter().all(|&n| n > 0.0));
    // Block 2 sees zeros: its output is its own function of zeros, not of the real stream.
    let zeros = Tensor::<B, 3>::zeros([1, 3, 8], &Default::default());
    let expected = model.blocks[2].forward(zeros).powf_scalar(2.0).sum().into_scalar();
    assert_eq!(norms[2].to_bits(), expected.to_bits());
}

#[test]
fn errors_come_back_as_results() {
    let model = Mlp::<B>::new(2, 4, &Default::default());
    let result = trace!(model, input([1, 4], 34), |m| {
        let late: Tensor<B, 2> = m.layers[1].output();
        let early: Tensor<B, 2> = m.layers[0].output();
        (late, early)
    });
    assert!(matches!(result, Err(Error::OutOfOrder { .. })));
}

#[test]
fn invoke_blocks_share_names_and_run_as_one_batch() {
    let model = Transformer::<B>::new(3, &Default::default());
    let (clean, corrupted) = (input([1, 4, 8], 40), input([1, 4, 8], 41));
    let (clean_out, patched, rows) = trace!(model, |m| {
        invoke clean.clone() {
            let h = m.blocks[1].output();
            m.output()
        }
        invoke corrupted.clone() {
            // `h` is invoke 0's value, read when this invoke reaches the site.
            m.blocks[1].output() = h;
            m.output()
        }
        invoke {
            m.blocks[0].output().dims()[0]
        }
    })
    .unwrap();
    assert_eq!(rows, 2, "the empty invoke sees both rows");

    let h = model.trace(clean.clone()).run(async |m| m.blocks[1].output().await).unwrap();
    let expected = model.finish_from(2, h);
    let close = |a: &Tensor<B, 3>, b: &Tensor<B, 3>| (a.clone() - b.clone()).abs().max().into_scalar() < 1e-5;
    assert!(close(&patched, &expected));
    assert!(close(&clean_out, &model.forward(clean)));
}

#[test]
fn a_name_used_before_the_invoke_that_binds_it_reaches_its_site_is_an_error() {
    let model = Transformer::<B>::new(2, &Default::default());
    let err = trace!(model, |m| {
        invoke input([1, 3, 8], 42) {
            let late = m.blocks[1].output();
        }
        invoke input([1, 3, 8], 43) {
            m.blocks[0].output() = late;
        }
    })
    .unwrap_err();
    assert!(matches!(err, nnsight::Error::NotShared { name: "late" }), "{err}");
}

/// The model the UI cases of `nnsight-macros` share (`nnsight-macros/ui/tests/ui/model.rs`), so that each case
/// fails for its own mistake only. Checked here rather than as a trybuild pass case: one pass case
/// makes trybuild build every dependency instead of only checking them.
#[path = "../../nnsight-macros/ui/tests/ui/model.rs"]
#[allow(unreachable_pub)]
mod ui_model;

#[test]
fn the_ui_cases_model_compiles_and_traces() {
    use ui_model::{Flex, model};
    let x = Tensor::<Flex, 3>::zeros([1, 2, 4], &Default::default());
    let out = trace!(model(), x, |m| {
        let q: Tensor<Flex, 3> = m.blocks[1].q_proj.output();
        m.attn.output() = q;
        m.output()
    })
    .unwrap();
    assert_eq!(out.dims(), [1, 2, 4]);
}
