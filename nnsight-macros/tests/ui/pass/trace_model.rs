// A model with lists, options, hook points and a module called twice compiles and traces.
#[path = "../model.rs"]
mod model;
use model::*;

fn main() {
    let x = Tensor::<Flex, 3>::zeros([1, 2, 4], &Default::default());
    let out = trace!(model(), x, |m| {
        let q: Tensor<Flex, 3> = m.blocks[1].q_proj.output();
        m.attn.output() = q;
        m.output()
    })
    .unwrap();
    assert_eq!(out.dims(), [1, 2, 4]);
}
