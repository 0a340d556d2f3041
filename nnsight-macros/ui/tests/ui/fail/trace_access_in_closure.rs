// An envoy access inside a closure cannot be awaited: the macro says to use a loop.
#[path = "../model.rs"]
mod model;
use model::*;

fn main() {
    let x = Tensor::<Flex, 3>::zeros([1, 2, 4], &Default::default());
    let _ = trace!(model(), x, |m| {
        let outs: Vec<_> = (0..2).map(|i| m.blocks[i].output()).collect();
        outs
    });
}
