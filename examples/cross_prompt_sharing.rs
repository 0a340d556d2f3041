//! Cross-prompt activation sharing on GPT-2: two prompts in **one** batched forward pass, the
//! second patched with an activation of the first, as in nnsight's
//! `with tracer.invoke(..)` blocks.
//!
//! ```sh
//! cargo run --release --example cross_prompt_sharing [MODEL_ID]   # default: openai-community/gpt2
//! ```
//!
//! Invoke 0 runs "The cat sat on the" and keeps layer 6's output at the last token; invoke 1 runs
//! "The dog ran through the" with that vector put in its place. At every site the invokes run in
//! order, so invoke 1 finds the value invoke 0 stored a moment before. The prompts are left-padded
//! into one batch; the example checks the result against two separate traces (read, then patch)
//! and shows how the dog prompt's next-token prediction moves toward the cat prompt's.

mod support;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use nnsight::Shared;
use support::label;

const CAT: &str = "The cat sat on the";
const DOG: &str = "The dog ran through the";
/// The layer patched (the last one on smaller models).
const LAYER: usize = 6;

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

/// The last token's vector of `[1, T, D]`, as `[1, 1, D]`.
fn last(h: Tensor<Flex, 3>) -> Tensor<Flex, 3> {
    let tokens = h.dims()[1];
    h.narrow(1, tokens - 1, 1)
}

/// `h` with its last token's vector replaced by `v`.
fn with_last(h: Tensor<Flex, 3>, v: Tensor<Flex, 3>) -> Tensor<Flex, 3> {
    let tokens = h.dims()[1];
    h.slice_assign([0..1, tokens - 1..tokens], v)
}

fn run() -> nnsight::Result<()> {
    let (lm, name) = support::load_model()?;
    let layer = LAYER.min(lm.model().transformer.h.len() - 1);
    println!("model: {name}; patching transformer.h[{layer}]'s output at the last token\n");

    // One trace, two invokes, one forward pass.
    let cat = Shared::new("the cat prompt's layer output at the last token");
    let (cat_logits, patched_logits) = lm
        .tracer()
        .invoke(CAT, async |m| {
            cat.set(last(m.transformer.h[layer].output().await?))?;
            m.output().await
        })
        .invoke(DOG, async |m| {
            // `try_edit` runs when the site is reached: after invoke 0 has stored its value.
            m.transformer.h[layer].output().try_edit(|h| Ok(with_last(h, cat.get()?))).await?;
            m.output().await
        })
        .run()?;

    // The same with two traces: read, then patch.
    let read = lm.trace(CAT).run(async |m| Ok(last(m.transformer.h[layer].output().await?)))?;
    let separate = lm.trace(DOG).run(async |m| {
        m.transformer.h[layer].output().edit(|h| with_last(h, read.clone())).await?;
        m.output().await
    })?;
    let gap = (last(patched_logits.clone()) - last(separate)).abs().max().into_scalar();
    println!("batched vs two separate traces: largest logit difference {gap:.2e}\n");

    let plain_dog = lm.forward(DOG)?;
    for (title, logits) in [(CAT, cat_logits), (DOG, plain_dog), ("dog, patched with cat", patched_logits)] {
        let [_, tokens, vocab] = logits.dims();
        let next = logits.narrow(1, tokens - 1, 1).reshape([vocab]);
        let (probs, top) = softmax(next, 0).topk_with_indices(5, 0);
        let probs: Vec<f32> = probs.into_data().to_vec().expect("f32 probabilities");
        let shown: Vec<String> = top
            .into_data()
            .iter::<i64>()
            .zip(&probs)
            .map(|(id, p)| Ok(format!("{} {:.3}", label(&lm, id as u32)?, p)))
            .collect::<nnsight::Result<_>>()?;
        println!("{title:<24} → {}", shown.join(", "));
    }
    Ok(())
}
