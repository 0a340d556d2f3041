// An unknown `#[inspect(..)]` option on an impl block is reported with the valid ones.
use burn::nn::Linear;
use burn::prelude::*;
use nnsight::prelude::*;

#[derive(Module, Debug, Inspectable)]
struct Model<B: Backend> {
    proj: Linear<B>,
}

#[inspect(batch = 1)]
impl<B: Backend> Model<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.proj.forward(x)
    }
}

fn main() {}
