//! Trace custom burn models: a residual MLP (read activations, patch one, check the patch by
//! hand) and a recurrent network, whose cell runs once per time step: every step is a new visit
//! of the cell's sites, read with `.at(t)`, patched at one step, or skipped.
//!
//! ```sh
//! cargo run --release --example custom_model
//! ```

use burn::backend::Flex;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, Relu, Tanh};
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

/// An Elman RNN cell: `h' = tanh(input(x) + recurrent(h))`.
#[derive(Module, Debug, Inspectable)]
struct RnnCell<B: Backend> {
    input: Linear<B>,
    recurrent: Linear<B>,
    act: Tanh,
}

#[inspect]
impl<B: Backend> RnnCell<B> {
    fn forward(&self, x: Tensor<B, 2>, h: Tensor<B, 2>) -> Tensor<B, 2> {
        self.act.forward(self.input.forward(x) + self.recurrent.forward(h))
    }
}

/// A recurrent classifier: the cell over the sequence `[batch, steps, features]`, then a head on
/// the last hidden state. Not a transformer: one module called once per time step.
#[derive(Module, Debug, Inspectable)]
struct Rnn<B: Backend> {
    cell: RnnCell<B>,
    head: Linear<B>,
}

#[inspect]
impl<B: Backend> Rnn<B> {
    fn forward(&self, xs: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, steps, _] = xs.dims();
        let width = self.cell.recurrent.weight.dims()[0];
        let mut h = Tensor::zeros([batch, width], &xs.device());
        for t in 0..steps {
            let x = xs.clone().narrow(1, t, 1).squeeze_dim::<2>(1);
            h = self.cell.forward(x, h);
        }
        self.head.forward(h)
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

    recurrent(&device)
}

/// The recurrent network: reads at every time step, a patch at one, a skip at another.
fn recurrent(device: &burn::tensor::Device<Flex>) -> nnsight::Result<()> {
    let (features, width, steps) = (3, 16, 5);
    let rnn = Rnn::<Flex> {
        cell: RnnCell {
            input: LinearConfig::new(features, width).init(device),
            recurrent: LinearConfig::new(width, width).init(device),
            act: Tanh::new(),
        },
        head: LinearConfig::new(width, 2).init(device),
    };
    let xs =
        Tensor::<Flex, 3>::random([1, steps, features], burn::tensor::Distribution::Normal(0.0, 1.0), device);

    // 5. The hidden state after every step: the cell's output, one visit per step.
    let states = rnn.trace(xs.clone()).run(async |m| {
        let mut states = Vec::new();
        for t in 0..steps as u32 {
            states.push(m.cell.output().at(t).await?);
        }
        Ok(states)
    })?;
    let norms: Vec<f32> =
        states.iter().map(|h| h.clone().powf_scalar(2.0).sum().sqrt().into_scalar()).collect();
    println!("\nRNN hidden-state norm after each step: {norms:.3?}");

    // 6. Patch the state after step 2 with zeros (forget the first three inputs), and check by
    //    hand: steps 3 and 4 from the zero state, then the head.
    let patched = rnn.trace(xs.clone()).run(async |m| {
        m.cell.output().at(2).replace(Tensor::zeros([1, width], device)).await?;
        m.output().await
    })?;
    let mut h = Tensor::zeros([1, width], device);
    for t in 3..steps {
        h = rnn.cell.forward(xs.clone().narrow(1, t, 1).squeeze_dim::<2>(1), h);
    }
    let difference = (patched - rnn.head.forward(h)).abs().max().into_scalar();
    println!("forgetting the first 3 steps: max |patched - by hand| = {difference}");
    assert_eq!(difference, 0.0);

    // 7. Skip the cell at step 4: the state of step 3 flows on, as if the last input were absent.
    let skipped = rnn.trace(xs.clone()).run(async |m| {
        let before = m.cell.output().at(3).await?;
        m.cell.skip(before).at(4).await?;
        m.output().await
    })?;
    let shorter = rnn.forward(xs.narrow(1, 0, steps - 1));
    let difference = (skipped - shorter).abs().max().into_scalar();
    println!("skipping the last step = the sequence without it: max difference {difference}");
    assert_eq!(difference, 0.0);
    Ok(())
}
