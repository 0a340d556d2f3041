// Replacing a 3-D output with a 2-D tensor is a type error at the replacement.
use burn::backend::Flex;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use nnsight::prelude::*;

#[derive(Module, Debug, Inspectable)]
struct Attention<B: Backend> {
    q_proj: Linear<B>,
}

#[inspect]
impl<B: Backend> Attention<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.q_proj.forward(x)
    }
}

#[derive(Module, Debug, Inspectable)]
struct Model<B: Backend> {
    blocks: Vec<Attention<B>>,
    attn: Attention<B>,
}

#[inspect]
impl<B: Backend> Model<B> {
    fn forward(&self, mut x: Tensor<B, 3>) -> Tensor<B, 3> {
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.attn.forward(x)
    }
}

fn model() -> Model<Flex> {
    let device = Default::default();
    let attn = || Attention { q_proj: LinearConfig::new(4, 4).init(&device) };
    Model { blocks: vec![attn(), attn()], attn: attn() }
}

fn main() {
    let x = Tensor::<Flex, 3>::zeros([1, 2, 4], &Default::default());
    let _ = trace!(model(), x, |m| {
        m.blocks[1].output() = Tensor::<Flex, 2>::zeros([2, 4], &Default::default());
    });
}
