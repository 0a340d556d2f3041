// `#[inspect]` goes on the module's inherent impl block, not on a trait impl.
use burn::nn::Linear;
use burn::prelude::*;
use nnsight::prelude::*;

#[derive(Module, Debug, Inspectable)]
struct Model<B: Backend> {
    proj: Linear<B>,
}

trait Run<B: Backend> {
    fn run(&self, x: Tensor<B, 2>) -> Tensor<B, 2>;
}

#[inspect]
impl<B: Backend> Run<B> for Model<B> {
    fn run(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.proj.forward(x)
    }
}

fn main() {}
