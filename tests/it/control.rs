//! Control of the forward pass (stop, skip), the activation cache, and persistent edits.

use crate::support;

use std::cell::Cell;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use nnsight::prelude::*;
use nnsight::{CacheOptions, Error};
use support::models::{Mlp, Transformer};
use support::{B, assert_differs, assert_identical, input};

thread_local! {
    /// How many times a `Counted` module ran on this thread.
    static RUNS: Cell<usize> = const { Cell::new(0) };
}

/// A linear layer that counts its calls.
#[derive(Module, Debug, Inspectable)]
struct Counted<B: Backend> {
    linear: Linear<B>,
}

#[inspect]
impl<B: Backend> Counted<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        RUNS.with(|r| r.set(r.get() + 1));
        self.linear.forward(x)
    }
}

/// Three counted stages.
#[derive(Module, Debug, Inspectable)]
struct Stages<B: Backend> {
    stages: Vec<Counted<B>>,
}

#[inspect]
impl<B: Backend> Stages<B> {
    fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
        for stage in &self.stages {
            x = stage.forward(x);
        }
        x
    }
}

fn stages() -> Stages<B> {
    let device = Default::default();
    Stages { stages: (0..3).map(|_| Counted { linear: LinearConfig::new(4, 4).init(&device) }).collect() }
}

fn runs() -> usize {
    RUNS.with(Cell::get)
}

#[test]
fn stop_ends_the_forward_pass_after_the_current_site() {
    let model = stages();
    let x = input([2, 4], 1);
    let before = runs();
    let first = model
        .trace(x.clone())
        .run(async |m| {
            let h: Tensor<B, 2> = m.stages[0].output().await?;
            m.stop()?;
            Ok(h)
        })
        .unwrap();
    assert_eq!(runs() - before, 1, "the later stages never ran");
    assert_identical(&first, &model.stages[0].forward(x.clone()));

    // An access after the stop point is never reached; the model stays usable.
    let err = model
        .trace(x.clone())
        .run(async |m| {
            m.stages[0].output().await?;
            m.stop()?;
            m.stages[2].output().await
        })
        .unwrap_err();
    assert!(matches!(&err, Error::NotReached { site } if site == "stages.2.output.i0"), "{err}");
    let before = runs();
    model.trace(x).run(async |m| m.output().await).unwrap();
    assert_eq!(runs() - before, 3);
}

#[test]
fn skip_replaces_a_module_whose_children_never_run() {
    let model = Transformer::<B>::new(2, &Default::default());
    let x = input([1, 3, 8], 2);
    let stand_in = input([1, 3, 8], 3);
    let out = model
        .trace(x.clone())
        .run(async |m| {
            m.blocks[1].skip(stand_in.clone()).await?;
            m.output().await
        })
        .unwrap();
    assert_identical(&out, &model.tail(stand_in.clone()));

    // The skipped module's output site still fires, with the stand-in; its children never do.
    let seen = model
        .trace(x.clone())
        .run(async |m| {
            m.blocks[1].skip(stand_in.clone()).await?;
            m.blocks[1].output().await
        })
        .unwrap();
    assert_identical(&seen, &stand_in);
    let err = model
        .trace(x)
        .run(async |m| {
            m.blocks[1].skip(stand_in.clone()).await?;
            m.blocks[1].attn.output().await
        })
        .unwrap_err();
    assert!(matches!(&err, Error::NotReached { site } if site == "blocks.1.attn.output.i0"), "{err}");
}

#[test]
fn a_skip_value_of_the_wrong_type_is_an_error() {
    let model = Mlp::<B>::new(2, 4, &Default::default());
    let err = model
        .trace(input([1, 4], 4))
        .run(async |m| {
            m.layers[0].skip(input([1, 1, 4], 5)).await?;
            m.output().await
        })
        .unwrap_err();
    let Error::TypeMismatch { site, .. } = &err else { panic!("{err}") };
    assert_eq!(site, "layers.0.input.i0 (skip)");
    assert!(model.trace(input([1, 4], 4)).run(async |m| m.output().await).is_ok());
}

#[test]
fn skipping_from_one_invoke_of_a_batch_is_an_error() {
    let model = Transformer::<B>::new(2, &Default::default());
    let err = model
        .tracer()
        .invoke(input([1, 3, 8], 6), async |_| Ok(()))
        .invoke(input([1, 3, 8], 7), async |m| m.blocks[0].skip(input([1, 3, 8], 8)).await)
        .run()
        .unwrap_err();
    let Error::PartialSkip { site, invoke, rows } = &err else { panic!("{err}") };
    assert_eq!((site.as_str(), invoke.as_str(), rows.as_str()), ("blocks.0", "invoke 1", "1..2 of 2"));
    // From an invoke that sees the whole batch, a skip is fine.
    let (_, (), out) = model
        .tracer()
        .invoke(input([1, 3, 8], 6), async |_| Ok(()))
        .invoke(input([1, 3, 8], 7), async |_| Ok(()))
        .invoke_all(async |m| {
            m.blocks[1].skip(input([2, 3, 8], 9)).await?;
            m.output().await
        })
        .run()
        .unwrap();
    assert_identical(&out, &model.tail(input([2, 3, 8], 9)));
}

#[test]
fn the_cache_records_post_intervention_outputs_by_path_and_by_envoy() {
    let model = Transformer::<B>::new(2, &Default::default());
    let x = input([1, 3, 8], 10);
    let (cache, h0, from_envoy) = model
        .trace(x.clone())
        .run(async |m| {
            let cache = m.cache(CacheOptions::all())?;
            let h0: Tensor<B, 3> = m.blocks[0].output().await?;
            m.blocks[0].output().replace(h0.clone() * 2.0).await?;
            m.output().await?;
            let from_envoy = m.blocks[0].cached_output(&cache)?;
            Ok((cache, h0, from_envoy))
        })
        .unwrap();
    let cached: Tensor<B, 3> = cache.output("blocks.0").unwrap();
    assert_identical(&cached, &(h0.clone() * 2.0));
    assert_identical(&from_envoy, &cached);
    let block1: Tensor<B, 3> = cache.output("blocks.1").unwrap();
    assert_identical(&block1, &model.blocks[1].forward(h0 * 2.0));
    let out: Tensor<B, 3> = cache.output("model").unwrap();
    assert_eq!(out.dims(), [1, 3, 3]);
    // The projection runs twice: two occurrences.
    let second: Tensor<B, 3> = cache.output_at("proj", 1).unwrap();
    assert_identical(&model.head.forward(second), &out);
    assert!(cache.sites().contains(&"blocks.1.attn.q_proj.output.i0".to_owned()));
    // Inputs were not asked for; a wrong type is named.
    assert!(matches!(cache.inputs::<(Tensor<B, 3>,)>("blocks.0"), Err(Error::NotCached { .. })));
    let err = cache.output::<Tensor<B, 2>>("blocks.0").unwrap_err();
    assert!(err.to_string().contains("not `burn_tensor"), "{err}");
}

#[test]
fn a_cache_of_chosen_modules_with_inputs_records_only_those() {
    let model = Transformer::<B>::new(2, &Default::default());
    let x = input([1, 3, 8], 11);
    let cache = model
        .trace(x.clone())
        .run(async |m| m.cache(CacheOptions::only([m.blocks[1].path(), m.head.path()]).with_inputs()))
        .unwrap();
    assert_eq!(cache.sites(), ["blocks.1.input.i0", "blocks.1.output.i0", "head.input.i0", "head.output.i0"]);
    let (h0,): (Tensor<B, 3>,) = cache.inputs("blocks.1").unwrap();
    assert_identical(&h0, &model.blocks[0].forward(x));
    let err = model
        .trace(input([1, 3, 8], 11))
        .run(async |m| m.cache(CacheOptions::only(["blocks.7"])))
        .unwrap_err();
    assert!(matches!(&err, Error::NotCached { site, .. } if site == "blocks.7"), "{err}");
}

#[test]
fn a_cache_made_by_one_invoke_sees_its_rows() {
    let model = Transformer::<B>::new(1, &Default::default());
    let (a, b) = (input([1, 3, 8], 12), input([2, 3, 8], 13));
    let ((), cache_b, cache_all) = model
        .tracer()
        .invoke(a, async |_| Ok(()))
        .invoke(b.clone(), async |m| m.cache(CacheOptions::all()))
        .invoke_all(async |m| m.cache(CacheOptions::all()))
        .run()
        .unwrap();
    let hb: Tensor<B, 3> = cache_b.output("blocks.0").unwrap();
    let all: Tensor<B, 3> = cache_all.output("blocks.0").unwrap();
    assert_eq!((hb.dims(), all.dims()), ([2, 3, 8], [3, 3, 8]));
    assert_identical(&hb, &all.narrow(0, 1, 2));
}

#[test]
fn edits_apply_first_on_every_trace_of_the_handle_and_leave_the_model_unchanged() {
    let model = Transformer::<B>::new(2, &Default::default());
    let x = input([1, 3, 8], 14);
    let plain = model.forward(x.clone());

    let mut edited = model.edit(async |m| m.blocks[0].output().edit(|h: Tensor<B, 3>| h.zeros_like()).await);
    for _ in 0..2 {
        let (seen, out) = edited
            .trace(x.clone())
            .run(async |m| Ok((m.blocks[0].output().await?, m.output().await?)))
            .unwrap();
        assert_identical(&seen, &seen.zeros_like());
        assert_identical(&out, &model.finish_from(1, seen));
    }
    // The model itself is unchanged.
    assert_identical(&model.trace(x.clone()).run(async |m| m.output().await).unwrap(), &plain);

    // Edits stack, apply to invokes too, and can be removed.
    edited = edited.edit(async |m| m.blocks[1].output().edit(|h: Tensor<B, 3>| h + 1.0).await);
    assert_eq!(edited.edits(), 2);
    let (out,) = edited.tracer().invoke(x.clone(), async |m| m.output().await).run().unwrap();
    assert_identical(&out, &model.tail(model.blocks[1].forward(x.zeros_like()) + 1.0));
    assert!(edited.undo() && edited.undo() && !edited.undo());
    assert_identical(&edited.trace(x).run(async |m| m.output().await).unwrap(), &plain);
    assert_differs(&out, &plain);
}

#[test]
fn an_error_in_an_edit_names_itself_and_leaves_the_model_usable() {
    let model = Transformer::<B>::new(1, &Default::default());
    let edited = model.edit(async |m| m.blocks[3].output().await.map(drop));
    let err = edited.trace(input([1, 3, 8], 15)).run(async |m| m.output().await).unwrap_err();
    assert!(matches!(&err, Error::IndexOutOfRange { index: 3, len: 1, .. }), "{err}");
    assert!(model.trace(input([1, 3, 8], 15)).run(async |m| m.output().await).is_ok());
}
