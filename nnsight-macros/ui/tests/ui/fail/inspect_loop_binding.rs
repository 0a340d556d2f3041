// A loop over a list of modules must bind the element to a name the macro can follow.
use burn::nn::Linear;
use burn::prelude::*;
use nnsight::prelude::*;

#[derive(Module, Debug, Inspectable)]
struct Model<B: Backend> {
    layers: Vec<Linear<B>>,
}

#[inspect]
impl<B: Backend> Model<B> {
    fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
        #[allow(unused_parens)]
        for (_, (layer)) in self.layers.iter().enumerate() {
            x = layer.forward(x);
        }
        x
    }
}

fn main() {}
