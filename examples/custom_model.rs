//! Trace a custom burn model: read activations, patch one, and check the patch by hand.
//!
//! ```sh
//! cargo run --release --example custom_model
//! ```

use burn::backend::Flex;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;
use nnsight::prelude::*;

/// A residual MLP block.
#[derive(Module, Debug, Inspectable)]
struct Block<B: Backend> {
    norm: LayerNorm<B>,
    up: Linear<B>,
    act: Relu,
    down: Linear<B>,
}

#[inspect]
impl<B: Backend> Block<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        x.clone() + self.down.forward(self.act.forward(self.up.forward(self.norm.forward(x))))
    }
}

/// A stack of blocks and a classifier head.
#[derive(Module, Debug, Inspectable)]
struct Classifier<B: Backend> {
    blocks: Vec<Block<B>>,
    head: Linear<B>,
}

#[inspect]
impl<B: Backend> Classifier<B> {
    fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
        for block in &self.blocks {
            x = block.forward(x);
        }
        self.head.forward(x)
    }
}

fn main() -> nnsight::Result<()> {
    let device = Default::default();
    let (width, classes) = (32, 4);
    let model = Classifier::<Flex> {
        blocks: (0..4)
            .map(|_| Block {
                norm: LayerNormConfig::new(width).init(&device),
                up: LinearConfig::new(width, 4 * width).init(&device),
                act: Relu::new(),
                down: LinearConfig::new(4 * width, width).init(&device),
            })
            .collect(),
        head: LinearConfig::new(width, classes).init(&device),
    };
    let clean = Tensor::<Flex, 2>::random([2, width], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let corrupted = clean.clone() * -1.0;

    // 1. Read every block's output (the residual stream) and the hidden activation of block 1.
    let (norms, hidden) = trace!(model, clean.clone(), |m| {
        let mut norms = Vec::new();
        let mut hidden = None;
        for (i, block) in m.blocks.iter().enumerate() {
            if i == 1 {
                let h: Tensor<Flex, 2> = block.act.output();
                hidden = Some(h);
            }
            let h = block.output();
            norms.push(h.powf_scalar(2.0).sum().sqrt().into_scalar());
        }
        (norms, hidden)
    })?;
    println!("residual-stream norms per block: {norms:.3?}");
    println!("block 1 hidden activation: {:?}", hidden.map(|h| h.dims()));

    // 2. Activation patching: run the corrupted input with block 2's output taken from the clean run.
    let clean_block2 = trace!(model, clean.clone(), |m| m.blocks[2].output())?;
    let patched = trace!(model, corrupted.clone(), |m| {
        m.blocks[2].output() = clean_block2.clone();
        m.output()
    })?;

    // 3. The same computation by hand: block 3 and the head on the clean block-2 output.
    let by_hand = model.head.forward(model.blocks[3].forward(clean_block2));
    let difference = (patched.clone() - by_hand).abs().max().into_scalar();
    println!("patched logits:\n{}", patched);
    println!("max |patched - by hand| = {difference}");
    assert_eq!(difference, 0.0, "the patched run equals the computation by hand");

    // 4. Errors name what went wrong and where.
    let error = trace!(model, corrupted, |m| {
        let late = m.blocks[3].output();
        let early = m.blocks[0].output();
        (late, early)
    })
    .unwrap_err();
    println!("an out-of-order access says: {error}");
    Ok(())
}
