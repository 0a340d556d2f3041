// A field whose type is not a module is reported at the field's type: for the envoy's field and
// for the derive's one bound on it, not at each use of its envoy.
use burn::prelude::*;
use nnsight::Inspectable;

#[derive(Debug, Clone)]
struct Config;

#[derive(Inspectable)]
struct Model<B: Backend> {
    settings: Config,
    weights: Tensor<B, 2>,
}

fn main() {}
