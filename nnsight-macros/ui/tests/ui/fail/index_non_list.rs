// Indexing a module that is not a list is a compile error.
#[path = "../model.rs"]
mod model;
use model::*;

fn main() {
    let x = Tensor::<Flex, 3>::zeros([1, 2, 4], &Default::default());
    let _ = trace!(model(), x, |m| m.attn[0].output());
}
