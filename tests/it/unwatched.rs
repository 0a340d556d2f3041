//! `nnsight::unwatched!`: a forward takes its fused branch exactly when nothing in the trace can
//! touch the site it would skip, and the skipped calls still count as occurrences.

use burn::prelude::*;
use nnsight::prelude::*;

use crate::support::models::FusingTwice;
use crate::support::{B, assert_identical, input};

fn model() -> FusingTwice<B> {
    FusingTwice::new(4, &Default::default())
}

/// The hook's value at a call, by hand: `pre(x) · 2` is the layer's output.
fn layer(model: &FusingTwice<B>, x: Tensor<B, 2>) -> Tensor<B, 2> {
    model.layer.pre.forward(x) * 2.0
}

#[test]
fn untraced_and_unattended_calls_are_fused() {
    let model = model();
    let x = input([2, 4], 1);
    let plain = model.forward(x.clone());
    assert_eq!(model.take_fused(), 2);
    // A body that reads only the final output watches no hook.
    let out = model.trace(x.clone()).run(async |m| m.output().await).unwrap();
    assert_identical(&out, &plain);
    assert_eq!(model.take_fused(), 2);
    // Nor does one that reads another module's sites.
    let head_in: Tensor<B, 2> = model.trace(x).run(async |m| m.head.input().await).unwrap();
    assert_eq!(model.take_fused(), 2);
    assert_eq!(head_in.dims(), [2, 4]);
}

#[test]
fn a_body_waiting_for_the_hook_gets_the_explicit_branch_at_that_call_only() {
    let model = model();
    let x = input([2, 4], 2);
    let first_by_hand = model.layer.pre.forward(x.clone());
    let second_by_hand = model.layer.pre.forward(layer(&model, x.clone()));
    // The second occurrence: the first call is fused yet counted, so `at(1)` is the second call.
    let second =
        model.trace(x.clone()).run(async |m| m.layer.hook.output::<Tensor<B, 2>>().at(1).await).unwrap();
    assert_eq!(model.take_fused(), 1);
    assert_identical(&second, &second_by_hand);
    let first = model.trace(x.clone()).run(async |m| m.layer.hook.output::<Tensor<B, 2>>().await).unwrap();
    assert_eq!(model.take_fused(), 1);
    assert_identical(&first, &first_by_hand);
    // A write at the second call lands there and flows on.
    let patched = model
        .trace(x)
        .run(async |m| {
            m.layer.hook.output::<Tensor<B, 2>>().at(1).replace(second_by_hand.zeros_like()).await?;
            m.output().await
        })
        .unwrap();
    assert_eq!(model.take_fused(), 1);
    assert_identical(&patched, &model.head.forward(second_by_hand.zeros_like()));
}

#[test]
fn a_cache_or_a_standing_edit_of_the_hook_watches_it() {
    let model = model();
    let x = input([2, 4], 3);
    let cache = model.trace(x.clone()).run(async |m| m.cache(CacheOptions::only(["layer.hook"]))).unwrap();
    assert_eq!(model.take_fused(), 0);
    assert_eq!(cache.len(), 2);
    // A cache of other modules leaves the hook unwatched.
    let cache = model.trace(x.clone()).run(async |m| m.cache(CacheOptions::only(["head"]))).unwrap();
    assert_eq!(model.take_fused(), 2);
    assert_eq!(cache.len(), 1);
    // An edit body waits for the first call only; a standing edit from the second call on
    // watches that call only.
    let edited = model.edit(async |m| m.layer.hook.output().edit(|h: Tensor<B, 2>| h.zeros_like()).await);
    let out = edited.trace(x.clone()).run(async |m| m.output().await).unwrap();
    assert_eq!(model.take_fused(), 1);
    let zeros = x.zeros_like();
    assert_identical(&out, &model.head.forward(layer(&model, zeros.clone())));
    let out = model
        .trace(x.clone())
        .run(async |m| {
            m.layer.hook.output().at(1).every(|h: Tensor<B, 2>| h.zeros_like())?;
            m.output().await
        })
        .unwrap();
    assert_eq!(model.take_fused(), 1);
    assert_identical(&out, &model.head.forward(zeros * 2.0));
}
