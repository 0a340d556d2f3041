// Replacing a 3-D output with a 2-D tensor is a type error at the replacement.
#[path = "../model.rs"]
mod model;
use model::*;

fn main() {
    let x = Tensor::<Flex, 3>::zeros([1, 2, 4], &Default::default());
    let _ = trace!(model(), x, |m| {
        m.blocks[1].output() = Tensor::<Flex, 2>::zeros([2, 4], &Default::default());
    });
}
