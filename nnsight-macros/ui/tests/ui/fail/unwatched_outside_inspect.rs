// `unwatched!` outside an `#[inspect]` forward cannot tell which submodule it names.
use nnsight::HookPoint;

struct Layer {
    hook: HookPoint,
}

impl Layer {
    fn fused(&self) -> bool {
        nnsight::unwatched!(self.hook)
    }
}

fn main() {}
