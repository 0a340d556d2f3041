// One mistake in the derive is one error: the model's #[inspect] block and its traces still compile.
use burn::backend::Flex;
use burn::nn::Linear;
use burn::prelude::*;
use nnsight::prelude::*;

#[derive(Module, Debug, Inspectable)]
struct Model<B: Backend> {
    #[inspect(hidden)]
    proj: Linear<B>,
}

#[inspect]
impl<B: Backend> Model<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.proj.forward(x)
    }
}

fn run(model: &Model<Flex>, x: Tensor<Flex, 2>) -> nnsight::Result<Tensor<Flex, 2>> {
    model.trace(x).run(async |m| m.output().await)
}

fn main() {}
