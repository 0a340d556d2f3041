// The last argument of `trace!` must be a closure over the envoy.
#[path = "../model.rs"]
mod model;
use model::*;

fn main() {
    let x = Tensor::<Flex, 3>::zeros([1, 2, 4], &Default::default());
    let _ = trace!(model(), x, 42);
}
