// `unwatched!` takes a submodule of `self`, not any expression.
use burn::nn::Linear;
use burn::prelude::*;
use nnsight::HookPoint;
use nnsight::prelude::*;

#[derive(Module, Debug, Inspectable)]
struct Layer<B: Backend> {
    proj: Linear<B>,
    hook: HookPoint,
}

#[inspect]
impl<B: Backend> Layer<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let other = HookPoint::new();
        let h = self.proj.forward(x);
        if nnsight::unwatched!(other) { h } else { self.hook.forward(h) }
    }
}

fn main() {}
