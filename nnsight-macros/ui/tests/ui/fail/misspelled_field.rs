// A misspelled module path is a compile error pointing at the misspelled name.
#[path = "../model.rs"]
mod model;
use model::*;

fn main() {
    let x = Tensor::<Flex, 3>::zeros([1, 2, 4], &Default::default());
    let _ = trace!(model(), x, |m| m.blocks[0].atn.output());
}
