// `trace!` awaits accesses itself: an explicit `.await` is pointed out.
#[path = "../model.rs"]
mod model;
use model::*;

fn main() {
    let x = Tensor::<Flex, 3>::zeros([1, 2, 4], &Default::default());
    let _ = trace!(model(), x, |m| m.attn.output().await);
}
