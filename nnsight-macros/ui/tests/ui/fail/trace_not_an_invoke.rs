// Without an input argument, a `trace!` body is a list of `invoke input { .. }` blocks.
#[path = "../model.rs"]
mod model;
use model::*;

fn main() {
    let x = Tensor::<Flex, 3>::zeros([1, 2, 4], &Default::default());
    let _ = trace!(model(), |m| {
        invoke x.clone() {
            m.output()
        }
        run x {
            m.output()
        }
    });
}
