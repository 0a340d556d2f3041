//! Gradients of intermediate activations with an autodiff backend, alone and through invokes.

use crate::support;

use burn::backend::Autodiff;
use burn::prelude::*;
use nnsight::Error;
use nnsight::prelude::*;
use support::B;
use support::models::Transformer;

type A = Autodiff<B>;

fn on_autodiff<const D: usize>(t: Tensor<B, D>) -> Tensor<A, D> {
    Tensor::from_data(t.to_data(), &Default::default())
}

fn input<const D: usize>(dims: [usize; D], salt: u64) -> Tensor<A, D> {
    on_autodiff(support::input(dims, salt))
}

fn assert_close<const D: usize>(a: &Tensor<B, D>, b: &Tensor<B, D>, tol: f32) {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (a.to_data().to_vec::<f32>().unwrap(), b.to_data().to_vec::<f32>().unwrap());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "element {i}: {x} vs {y}");
    }
}

/// The gradient of `sum(model(x) * weights)` with respect to block `layer`'s output, computed by
/// hand: the block output becomes a leaf and the rest of the model runs on it.
fn gradient_by_hand(
    model: &Transformer<A>,
    x: Tensor<A, 3>,
    layer: usize,
    weights: Tensor<A, 3>,
) -> Tensor<B, 3> {
    let mut h = x;
    for block in &model.blocks[..=layer] {
        h = block.forward(h);
    }
    let leaf = h.detach().require_grad();
    let out = model.finish_from(layer + 1, leaf.clone());
    let grads = (out * weights).sum().backward();
    leaf.grad(&grads).unwrap()
}

#[test]
fn the_gradient_of_a_tracked_activation_equals_the_hand_computation() {
    let model = Transformer::<A>::new(3, &Default::default());
    let x = input([1, 4, 8], 1);
    let weights = input([1, 4, 3], 2);
    let (tracked, out) = model
        .trace(x.clone())
        .run(async |m| Ok((m.blocks[1].output().track_grad().await?, m.output().await?)))
        .unwrap();
    // Tracking leaves the values unchanged.
    assert_eq!(out.to_data(), model.forward(x.clone()).to_data());
    let grads = (out * weights.clone()).sum().backward();
    let grad = tracked.grad(&grads).unwrap();
    assert_close(&grad, &gradient_by_hand(&model, x, 1, weights), 1e-6);
}

#[test]
fn gradients_are_right_through_invoke_narrowing() {
    let model = Transformer::<A>::new(2, &Default::default());
    let (a, b) = (input([1, 4, 8], 3), input([2, 4, 8], 4));
    let weights = input([3, 4, 3], 5);
    let out = model.forward(Tensor::cat(vec![a.clone(), b.clone()], 0));
    let (tracked, full) = model
        .tracer()
        .invoke(a, async |_| Ok(()))
        .invoke(b.clone(), async |m| m.blocks[0].output().track_grad().await)
        .invoke_all(async |m| m.output().await)
        .run()
        .map(|((), t, full)| (t, full))
        .unwrap();
    assert_eq!(tracked.value().dims(), [2, 4, 8]);
    assert_eq!(full.to_data(), out.to_data());
    let grads = (full * weights.clone()).sum().backward();
    let grad = tracked.grad(&grads).unwrap();
    // Rows are independent: invoke 1's gradient is that of its prompts alone.
    let expected = gradient_by_hand(&model, b, 0, weights.narrow(0, 1, 2));
    assert_close(&grad, &expected, 1e-5);
}

#[test]
fn a_gradient_the_backward_pass_never_reached_is_an_error() {
    let model = Transformer::<A>::new(2, &Default::default());
    let x = input([1, 4, 8], 6);
    let tracked = model.trace(x.clone()).run(async |m| m.blocks[0].output().track_grad().await).unwrap();
    let unrelated = input([1, 2], 7).require_grad();
    let grads = unrelated.clone().sum().backward();
    let err = tracked.grad(&grads).unwrap_err();
    assert!(matches!(&err, Error::NoGradient { site } if site == "blocks.0.output.i0"), "{err}");
}
