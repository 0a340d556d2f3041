// `batch_dim` and `unbatched` contradict each other: give one.
use burn::nn::Linear;
use burn::prelude::*;
use nnsight::prelude::*;

#[derive(Module, Debug, Inspectable)]
struct Model<B: Backend> {
    proj: Linear<B>,
}

#[inspect(batch_dim = 1, unbatched)]
impl<B: Backend> Model<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.proj.forward(x)
    }
}

fn main() {}
