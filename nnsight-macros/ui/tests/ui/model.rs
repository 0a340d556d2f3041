//! The model the UI cases trace: shared so each case shows only its own mistake.
#![allow(dead_code)]
pub use burn::backend::Flex;
use burn::nn::{Linear, LinearConfig};
pub use burn::prelude::*;
pub use nnsight::prelude::*;

#[derive(Module, Debug, Inspectable)]
pub struct Attention<B: Backend> {
    pub q_proj: Linear<B>,
}

#[inspect]
impl<B: Backend> Attention<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.q_proj.forward(x)
    }
}

#[derive(Module, Debug, Inspectable)]
pub struct Model<B: Backend> {
    pub blocks: Vec<Attention<B>>,
    pub attn: Attention<B>,
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

pub fn model() -> Model<Flex> {
    let device = Default::default();
    let attn = || Attention { q_proj: LinearConfig::new(4, 4).init(&device) };
    Model { blocks: vec![attn(), attn()], attn: attn() }
}
