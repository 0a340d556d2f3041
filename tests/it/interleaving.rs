//! Interleaving semantics (nnsight's tests/test_interleaving.py, the cases that apply), on tiny
//! models, through the explicit API. Each patched result is checked against the same computation
//! done by hand, without hooks.

use crate::support;

use burn::prelude::*;
use burn::tensor::activation::relu;
use nnsight::prelude::*;
use support::models::{Mlp, Transformer};
use support::{B, assert_differs, assert_identical, input};

fn mlp() -> Mlp<B> {
    Mlp::new(4, 6, &Default::default())
}

fn transformer() -> Transformer<B> {
    Transformer::new(2, &Default::default())
}

#[test]
fn reading_an_output_gives_the_value_the_module_computed() {
    let model = mlp();
    let x = input([2, 6], 1);
    let h0 = model.trace(x.clone()).run(async |m| m.layers[0].output::<Tensor<B, 2>>().await).unwrap();
    assert_identical(&h0, &model.layers[0].forward(x));
}

#[test]
fn reading_inputs_gives_the_arguments_the_module_received() {
    let model = mlp();
    let x = input([2, 6], 2);
    let (input1, all) = model
        .trace(x.clone())
        .run(async |m| {
            let input1: Tensor<B, 2> = m.layers[1].input().await?;
            let (all,): (Tensor<B, 2>,) = m.layers[1].inputs().await?;
            Ok((input1, all))
        })
        .unwrap();
    let expected = relu(model.layers[0].forward(x));
    assert_identical(&input1, &expected);
    assert_identical(&all, &expected);
}

#[test]
fn the_final_output_and_the_root_input_are_sites() {
    let model = transformer();
    let x = input([1, 4, 8], 3);
    let (root_in, out) =
        model.trace(x.clone()).run(async |m| Ok((m.input().await?, m.output().await?))).unwrap();
    assert_identical(&root_in, &x);
    assert_identical(&out, &model.forward(x));
}

#[test]
fn an_identity_intervention_leaves_outputs_bit_identical() {
    let model = transformer();
    let x = input([2, 5, 8], 4);
    let plain = model.forward(x.clone());
    let traced = model
        .trace(x)
        .run(async |m| {
            for block in &m.blocks {
                let h = block.output().await?;
                block.output().replace(h).await?;
            }
            m.proj.output::<Tensor<B, 3>>().edit(|h| h).await?;
            m.output().await
        })
        .unwrap();
    assert_identical(&traced, &plain);
}

#[test]
fn replacing_an_output_equals_running_the_downstream_modules_by_hand() {
    let model = transformer();
    let x = input([1, 4, 8], 5);
    let patch = input([1, 4, 8], 6);
    let out = model
        .trace(x.clone())
        .run(async |m| {
            m.blocks[0].output().replace(patch.clone()).await?;
            m.output().await
        })
        .unwrap();
    assert_identical(&out, &model.finish_from(1, patch.clone()));
    assert_differs(&out, &model.forward(x));
}

#[test]
fn replacing_an_input_changes_what_the_module_sees() {
    let model = mlp();
    let x = input([2, 6], 7);
    let patch = input([2, 6], 8);
    let out = model
        .trace(x)
        .run(async |m| {
            m.layers[2].input().replace(patch.clone()).await?;
            m.output().await
        })
        .unwrap();
    let mut h = relu(model.layers[2].forward(patch));
    h = relu(model.layers[3].forward(h));
    assert_identical(&out, &model.head.forward(h));
}

#[test]
fn a_slice_edit_changes_only_that_slice_downstream() {
    let model = transformer();
    let x = input([1, 4, 8], 9);
    let out = model
        .trace(x.clone())
        .run(async |m| {
            let h = m.blocks[1].output().await?;
            m.blocks[1]
                .output()
                .edit(|h| h.slice_assign([0..1, 3..4, 0..8], Tensor::zeros([1, 1, 8], &Default::default())))
                .await?;
            Ok((h, m.output().await?))
        })
        .unwrap();
    let (h, out) = out;
    let zeroed = h.slice_assign([0..1, 3..4, 0..8], Tensor::zeros([1, 1, 8], &Default::default()));
    assert_identical(&out, &model.tail(zeroed));
}

#[test]
fn a_read_then_a_write_of_one_site_are_served_on_one_visit() {
    let model = mlp();
    let x = input([1, 6], 10);
    let (before, out) = model
        .trace(x.clone())
        .run(async |m| {
            let before: Tensor<B, 2> = m.layers[3].output().await?;
            m.layers[3].output().replace(before.clone() * 2.0).await?;
            let after: Tensor<B, 2> = m.layers[3].output().await?;
            assert_identical(&after, &(before.clone() * 2.0));
            Ok((before, m.output().await?))
        })
        .unwrap();
    assert_identical(&out, &model.head.forward(relu(before * 2.0)));
}

#[test]
fn several_accesses_follow_execution_order_across_nesting_levels() {
    let model = transformer();
    let x = input([1, 3, 8], 11);
    let (pattern, q, block0, ln_f) = model
        .trace(x.clone())
        .run(async |m| {
            let pattern: Tensor<B, 3> = m.blocks[0].attn.pattern.output().await?;
            let q: Tensor<B, 3> = m.blocks[1].attn.q_proj.output().await?;
            let block0_again = m.blocks[0].output().await;
            let ln_f: Tensor<B, 3> = m.ln_f.output().await?;
            Ok((pattern, q, block0_again, ln_f))
        })
        .unwrap();
    // Attention probabilities: rows sum to one, and the causal mask zeroes the future.
    let sums = pattern.clone().sum_dim(2).to_data().to_vec::<f32>().unwrap();
    assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{sums:?}");
    assert!(pattern.slice([0..1, 0..1, 1..3]).to_data().to_vec::<f32>().unwrap().iter().all(|&p| p < 1e-6));
    let h1 = model.blocks[0].forward(x);
    assert_identical(&q, &model.blocks[1].attn.q_proj.forward(model.blocks[1].ln_1.forward(h1)));
    // Block 0 had finished before `q_proj` of block 1 ran: asking for it afterwards is an error.
    match block0 {
        Err(Error::OutOfOrder { requested, passed }) => {
            assert_eq!(requested, "blocks.0.output.i0");
            assert_eq!(passed, "blocks.1.attn.q_proj.output.i0");
        }
        other => panic!("expected OutOfOrder, got {other:?}"),
    }
    let _ = ln_f;
}

#[test]
fn out_of_order_access_is_an_error_naming_both_sites() {
    let model = mlp();
    let err = model
        .trace(input([1, 6], 12))
        .run(async |m| {
            let _late: Tensor<B, 2> = m.layers[2].output().await?;
            let _early: Tensor<B, 2> = m.layers[1].output().await?;
            Ok(())
        })
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::OutOfOrder { .. }), "{err:?}");
    assert!(
        message.contains("`layers.1.output.i0`") && message.contains("`layers.2.output.i0`"),
        "{message}"
    );
}

#[test]
fn a_module_called_twice_has_two_occurrences() {
    let model = transformer();
    let x = input([1, 3, 8], 13);
    let (first, second, second_input) = model
        .trace(x.clone())
        .run(async |m| {
            let first: Tensor<B, 3> = m.proj.output().await?;
            let second_input: Tensor<B, 3> = m.proj.input().at(1).await?;
            let second: Tensor<B, 3> = m.proj.output().at(1).await?;
            Ok((first, second, second_input))
        })
        .unwrap();
    let mut h = x;
    for block in &model.blocks {
        h = block.forward(h);
    }
    let normed = model.ln_f.as_ref().unwrap().forward(h);
    let expected_first = model.proj.forward(normed);
    assert_identical(&first, &expected_first);
    assert_identical(&second_input, &expected_first);
    assert_identical(&second, &model.proj.forward(expected_first));
}

#[test]
fn replacing_the_second_occurrence_leaves_the_first_alone() {
    let model = transformer();
    let x = input([1, 3, 8], 14);
    let patch = input([1, 3, 8], 15);
    let (first, out) = model
        .trace(x)
        .run(async |m| {
            let first: Tensor<B, 3> = m.proj.output().await?;
            m.proj.output().at(1).replace(patch.clone()).await?;
            Ok((first, m.output().await?))
        })
        .unwrap();
    assert_identical(&out, &model.head.forward(patch));
    assert_differs(&first, &input([1, 3, 8], 15));
}

#[test]
fn an_occurrence_that_never_happens_is_not_reached() {
    let model = transformer();
    let err = model
        .trace(input([1, 3, 8], 16))
        .run(async |m| m.proj.output::<Tensor<B, 3>>().at(2).await)
        .unwrap_err();
    assert!(matches!(&err, Error::NotReached { site } if site == "proj.output.i2"), "{err:?}");
}

#[test]
fn an_absent_optional_module_is_reported_by_path() {
    let model = transformer();
    let err =
        model.trace(input([1, 3, 8], 17)).run(async |m| m.extra.output::<Tensor<B, 3>>().await).unwrap_err();
    assert!(matches!(&err, Error::NotPresent { path } if path == "extra"), "{err:?}");
}

#[test]
fn an_index_past_the_end_fails_before_the_forward_runs() {
    let model = mlp();
    let err =
        model.trace(input([1, 6], 18)).run(async |m| m.layers[7].output::<Tensor<B, 2>>().await).unwrap_err();
    assert!(matches!(&err, Error::IndexOutOfRange { path, index: 7, len: 4 } if path == "layers"), "{err:?}");
    assert_eq!(err.to_string(), "index 7 is out of range for `layers`, which has 4 modules");
    assert_eq!(model.calls(), 0, "the forward pass must not have run");
}

#[test]
fn a_replacement_of_another_shape_is_an_error_and_the_model_stays_usable() {
    let model = transformer();
    let x = input([1, 4, 8], 19);
    let err = model
        .trace(x.clone())
        .run(async |m| {
            m.blocks[0].output().replace(input([1, 2, 8], 20)).await?;
            m.output().await
        })
        .unwrap_err();
    match &err {
        Error::ShapeMismatch { site, expected, found } => {
            assert_eq!(site, "blocks.0.output.i0");
            assert_eq!((expected.as_str(), found.as_str()), ("[1, 4, 8]", "[1, 2, 8]"));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    let out = model.trace(x.clone()).run(async |m| m.output().await).unwrap();
    assert_identical(&out, &model.forward(x));
}

#[test]
fn asking_for_the_wrong_type_at_a_generic_site_is_an_error() {
    let model = mlp();
    let err =
        model.trace(input([1, 6], 21)).run(async |m| m.layers[0].output::<Tensor<B, 3>>().await).unwrap_err();
    match err {
        Error::TypeMismatch { site, expected, found } => {
            assert_eq!(site, "layers.0.output.i0");
            assert!(expected.contains("Tensor") && expected.contains(", 3"), "{expected}");
            assert!(found.contains(", 2"), "{found}");
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
}

#[test]
fn an_error_of_the_body_aborts_the_trace_and_leaves_the_model_usable() {
    let model = mlp();
    let x = input([1, 6], 22);
    let err = model
        .trace(x.clone())
        .run(async |m| -> Result<()> {
            let h: Tensor<B, 2> = m.layers[0].output().await?;
            m.layers[1].output().replace(h.clone() * 100.0).await?;
            Err(Error::custom("probe failed"))
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "probe failed");
    let out = model.trace(x.clone()).run(async |m| m.output().await).unwrap();
    assert_identical(&out, &model.forward(x));
}

/// A helper written once and used from any trace: the envoy is an ordinary argument.
async fn double_block(block: &support::models::BlockEnvoy<'_, B>) -> Result<Tensor<B, 3>> {
    let h = block.output().await?;
    block.output().replace(h.clone() * 2.0).await?;
    Ok(h)
}

#[test]
fn helpers_are_async_functions_over_envoys() {
    let model = transformer();
    let x = input([1, 3, 8], 23);
    let (h, out) = model
        .trace(x)
        .run(async |m| {
            let h = double_block(&m.blocks[1]).await?;
            Ok((h, m.output().await?))
        })
        .unwrap();
    assert_identical(&out, &model.tail(h * 2.0));
}

#[test]
fn model_code_called_inside_a_body_runs_outside_the_trace() {
    let model = transformer();
    let x = input([1, 3, 8], 24);
    let (by_hand, out) = model
        .trace(x.clone())
        .run(async |m| {
            let h = m.blocks[0].output().await?;
            // Running block 1 by hand inside the body must not fire block 1's sites.
            let by_hand = model.blocks[1].forward(h);
            let real = m.blocks[1].output().await?;
            assert_identical(&by_hand, &real);
            Ok((by_hand, m.output().await?))
        })
        .unwrap();
    assert_identical(&out, &model.tail(by_hand));
    assert_identical(&out, &model.forward(x));
}

#[test]
fn a_body_that_touches_nothing_returns_without_running_the_model() {
    let model = mlp();
    let n = model.trace(input([1, 6], 25)).run(async |m| Ok(m.layers.len())).unwrap();
    assert_eq!(n, 4);
    assert_eq!(model.calls(), 0);
}

#[test]
fn envoys_know_their_paths() {
    let model = transformer();
    let paths = model
        .trace(input([1, 2, 8], 26))
        .run(async |m| Ok((m.path(), m.blocks[1].attn.q_proj.path(), m.blocks.path(), m.blocks[9].path())))
        .unwrap();
    assert_eq!(paths, ("model".into(), "blocks.1.attn.q_proj".into(), "blocks".into(), "blocks.9".into()));
}

/// A projection whose output the model goes on with transposed, through an activation that a
/// backend may compute in place.
#[derive(Module, Debug, Inspectable)]
struct Transposing<B: Backend> {
    proj: burn::nn::Linear<B>,
}

#[inspect]
impl<B: Backend> Transposing<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        burn::tensor::activation::silu(self.proj.forward(x).swap_dims(1, 2))
    }
}

#[test]
fn a_value_read_or_cached_is_not_changed_by_the_models_later_in_place_work() {
    // On LibTorch, burn's transposed views get a reference count of their own, so the model's
    // in-place activation would write into memory the body's copy shares (seen on Mamba's
    // in_proj): reads and caches take a copy there.
    let device = Default::default();
    let model = Transposing::<B> { proj: burn::nn::LinearConfig::new(6, 5).init(&device) };
    let x = input::<3>([2, 3, 6], 9).reshape([2, 3, 6]);
    let (read, cache, out) = model
        .trace(x.clone())
        .run(async |m| {
            let cache = m.cache(nnsight::CacheOptions::all())?;
            let read = m.proj.output::<Tensor<B, 3>>().await?;
            Ok((read, cache, m.output().await?))
        })
        .unwrap();
    let by_hand = model.proj.forward(x.clone());
    assert_identical(&read, &by_hand);
    assert_identical(&cache.output::<Tensor<B, 3>>("proj").unwrap(), &by_hand);
    assert_identical(&out, &model.forward(x));
}
