//! Invokes: several inputs in one trace, one batched forward pass, each body on its own rows.

use crate::support;

use burn::prelude::*;
use nnsight::prelude::*;
use nnsight::{Error, Shared};
use support::models::{Mlp, MlpEnvoy, Transformer};
use support::{B, assert_differs, input};

/// Asserts two tensors equal within `tol` (a batched matmul may round differently in the last bit).
fn assert_close<const D: usize>(a: &Tensor<B, D>, b: &Tensor<B, D>, tol: f32) {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let (a, b) = (a.to_data().to_vec::<f32>().unwrap(), b.to_data().to_vec::<f32>().unwrap());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= tol, "element {i}: {x} vs {y}");
    }
}

#[test]
fn two_invokes_run_as_one_forward_pass_each_on_its_rows() {
    let model = Mlp::<B>::new(2, 4, &Default::default());
    let (a, b) = (input([1, 4], 1), input([2, 4], 2));
    let calls = model.calls();
    let (out_a, (seen_b, out_b), all) = model
        .tracer()
        .invoke(a.clone(), async |m| m.output().await)
        .invoke(b.clone(), async |m| {
            Ok((m.layers[0].output::<Tensor<B, 2>>().await?.dims(), m.output().await?))
        })
        .invoke_all(async |m| Ok(m.output().await?.dims()))
        .run()
        .unwrap();
    assert_eq!(model.calls(), calls + 1, "one forward pass for all invokes");
    assert_eq!(seen_b, [2, 4], "invoke 1 sees its two rows");
    assert_eq!(all, [3, 2], "the empty invoke sees the whole batch");
    assert_close(&out_a, &model.forward(a), 1e-6);
    assert_close(&out_b, &model.forward(b), 1e-6);
}

#[test]
fn cross_invoke_patching_equals_two_separate_traces() {
    let model = Transformer::<B>::new(3, &Default::default());
    let (clean, corrupted) = (input([1, 4, 8], 3), input([1, 4, 8], 4));

    let hidden = Shared::new("block 1 output of the clean input");
    let (clean_out, patched_out) = model
        .tracer()
        .invoke(clean.clone(), async |m| {
            hidden.set(m.blocks[1].output().await?)?;
            m.output().await
        })
        .invoke(corrupted.clone(), async |m| {
            m.blocks[1].output().replace_with(|| hidden.get()).await?;
            m.output().await
        })
        .run()
        .unwrap();

    // The same in two traces: read, then patch.
    let h = model.trace(clean.clone()).run(async |m| m.blocks[1].output().await).unwrap();
    let separate = model
        .trace(corrupted.clone())
        .run(async |m| {
            m.blocks[1].output().replace(h.clone()).await?;
            m.output().await
        })
        .unwrap();
    assert_close(&clean_out, &model.forward(clean), 1e-5);
    assert_close(&patched_out, &separate, 1e-5);
    assert_close(&patched_out, &model.finish_from(2, h), 1e-5);
    assert_differs(&patched_out, &model.forward(corrupted));
}

#[test]
fn bodies_run_in_invoke_order_so_an_earlier_edit_is_seen_by_a_later_invoke() {
    let model = Mlp::<B>::new(2, 4, &Default::default());
    let (a, b) = (input([1, 4], 5), input([1, 4], 6));
    let (before, (), seen) = model
        .tracer()
        .invoke(a, async |m| {
            let h: Tensor<B, 2> = m.layers[0].output().await?;
            m.layers[0].output().replace(h.clone() * 3.0).await?;
            Ok(h)
        })
        .invoke(b, async |_| Ok(()))
        .invoke_all(async |m| m.layers[0].output::<Tensor<B, 2>>().await)
        .run()
        .unwrap();
    assert_close(&seen.clone().narrow(0, 0, 1), &(before * 3.0), 0.0);
    assert_eq!(seen.dims(), [2, 4]);
}

#[test]
fn invoke_each_adds_many_invokes_of_one_body_type() {
    let model = Mlp::<B>::new(2, 4, &Default::default());
    let inputs: Vec<_> = (0..5).map(|i| input([1, 4], 10 + i)).collect();
    let scales = [0.0f32, 0.5, 1.0, 2.0, 4.0];
    let (outs,) = model
        .tracer()
        .invoke_each(inputs.iter().zip(scales).map(|(x, scale)| {
            (x.clone(), async move |m: &MlpEnvoy<'_, B>| {
                m.layers[1].output().edit(|h: Tensor<B, 2>| h * scale).await?;
                m.output().await
            })
        }))
        .run()
        .unwrap();
    assert_eq!(outs.len(), 5);
    for ((x, scale), out) in inputs.iter().zip(scales).zip(&outs) {
        let expected = model
            .trace(x.clone())
            .run(async |m| {
                m.layers[1].output().edit(|h: Tensor<B, 2>| h * scale).await?;
                m.output().await
            })
            .unwrap();
        assert_close(out, &expected, 1e-6);
    }
}

#[test]
fn a_value_shared_before_it_is_read_is_an_ordering_error() {
    let model = Transformer::<B>::new(2, &Default::default());
    let late = Shared::<Tensor<B, 3>>::new("block 1 output of invoke 0");
    let err = model
        .tracer()
        .invoke(input([1, 3, 8], 7), async |m| late.set(m.blocks[1].output().await?))
        .invoke(input([1, 3, 8], 8), async |m| m.blocks[0].output().replace_with(|| late.get()).await)
        .run()
        .unwrap_err();
    assert!(matches!(err, Error::NotShared { name: "block 1 output of invoke 0" }), "{err}");
    // The model stays usable.
    assert!(model.trace(input([1, 3, 8], 9)).run(async |m| m.output().await).is_ok());
}

#[test]
fn a_write_that_changes_the_row_count_names_the_rows() {
    let model = Transformer::<B>::new(2, &Default::default());
    let err = model
        .tracer()
        .invoke(input([1, 3, 8], 11), async |_| Ok(()))
        .invoke(input([2, 3, 8], 12), async |m| m.blocks[0].output().replace(input([3, 3, 8], 13)).await)
        .run()
        .unwrap_err();
    let Error::ShapeMismatch { site, expected, found } = &err else { panic!("{err}") };
    assert_eq!(site, "blocks.0.output.i0");
    assert_eq!(expected, "[2, 3, 8] (invoke 1 sees rows 1..3 of a batch of 3)");
    assert_eq!(found, "[3, 3, 8]");
}

#[test]
fn inputs_that_cannot_form_a_batch_and_traces_without_input_are_errors() {
    let model = Transformer::<B>::new(1, &Default::default());
    let err = model
        .tracer()
        .invoke(input([1, 3, 8], 14), async |_| Ok(()))
        .invoke(input([1, 4, 8], 15), async |_| Ok(()))
        .run()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Input { problem } if problem.contains("input 1 has shape [1, 4, 8]")),
        "{err}"
    );

    let err = model.tracer().invoke_all(async |m| m.output().await).run().unwrap_err();
    assert!(matches!(&err, Error::Input { problem } if problem.contains("no invoke has an input")), "{err}");
}

#[test]
fn the_first_failing_invoke_is_reported_and_the_others_stop_cleanly() {
    let model = Transformer::<B>::new(2, &Default::default());
    let err = model
        .tracer()
        .invoke(input([1, 3, 8], 16), async |m| m.output().await)
        .invoke(input([1, 3, 8], 17), async |m| {
            m.blocks[1].output().await?;
            m.blocks[0].output().await
        })
        .run()
        .unwrap_err();
    assert!(
        matches!(&err, Error::OutOfOrder { requested, .. } if requested == "blocks.0.output.i0"),
        "{err}"
    );
}
