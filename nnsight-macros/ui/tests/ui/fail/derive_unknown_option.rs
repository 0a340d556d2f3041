// An unknown `#[inspect(..)]` field option is reported with the valid one.
use burn::nn::Linear;
use burn::prelude::*;
use nnsight::Inspectable;

#[derive(Module, Debug, Inspectable)]
struct Model<B: Backend> {
    #[inspect(hidden)]
    proj: Linear<B>,
}

fn main() {}
