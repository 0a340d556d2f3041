//! Gradient-based analysis on GPT-2: how much does each block's output, at each token, push the
//! model toward " Mary" rather than " John"? (gradient × activation attribution).
//!
//! ```sh
//! cargo run --release --example gradient_analysis [MODEL_ID]   # default: openai-community/gpt2
//! ```
//!
//! With burn's autodiff backend (`Autodiff<Flex>`), a trace body marks activations with
//! `.track_grad()`; after `backward()` on the metric computed from the logits, each tracked
//! activation's gradient is read by value. The example checks one gradient coordinate against a
//! finite difference (two more traces that nudge that coordinate).

mod support;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;

type Ad = Autodiff<Flex>;

const PROMPT: &str = "When Mary and John went to the store, John gave a drink to";

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

/// `logit(answer) − logit(distractor)` at the last token, as a one-element tensor.
fn metric<B: Backend>(logits: Tensor<B, 3>, answer: usize, distractor: usize) -> Tensor<B, 1> {
    let [_, tokens, vocab] = logits.dims();
    let last = logits.narrow(1, tokens - 1, 1).reshape([vocab]);
    last.clone().narrow(0, answer, 1) - last.narrow(0, distractor, 1)
}

fn run() -> nnsight::Result<()> {
    let (lm, name) = support::load_model_on::<Ad>()?;
    let answer = lm.encode(" Mary")?[0] as usize;
    let distractor = lm.encode(" John")?[0] as usize;
    let tokens = lm.encode(PROMPT)?;
    println!(
        "model: {name}\nprompt: {PROMPT:?} ({} tokens); metric = logit(\" Mary\") − logit(\" John\")\n",
        tokens.len()
    );

    let (tracked, logits) = lm.trace(PROMPT).run(async |m| {
        let mut tracked = Vec::new();
        for block in &m.transformer.h {
            tracked.push(block.output().track_grad().await?);
        }
        Ok((tracked, m.output().await?))
    })?;
    let metric_value = metric(logits, answer, distractor);
    println!("metric: {:.4}", metric_value.clone().into_scalar());
    let grads = metric_value.backward();

    println!("\ngradient × activation, summed over features (rows: layers, columns: tokens)");
    let texts: Vec<String> = tokens.iter().map(|&t| lm.token_text(t)).collect::<nnsight::Result<_>>()?;
    println!("      {}", texts.iter().map(|t| format!("{:>8}", truncate(t))).collect::<String>());
    for (layer, tracked) in tracked.iter().enumerate() {
        let grad = tracked.grad(&grads)?;
        let value = tracked.value().inner();
        let attribution = (grad * value).sum_dim(2).reshape([tokens.len()]);
        let row = attribution.to_data().to_vec::<f32>().unwrap();
        println!("h[{layer:>2}] {}", row.iter().map(|v| format!("{v:>8.3}")).collect::<String>());
    }

    println!("(the last block's row is 0 up to rounding: ln_f is scale-invariant, so grad · h vanishes)");

    // Check one coordinate (block 0, last token, feature 0) against a central difference.
    let grad = tracked[0].grad(&grads)?;
    let (position, feature, eps) = (tokens.len() - 1, 0, 1e-2);
    let slope = grad.slice([0..1, position..position + 1, feature..feature + 1]).into_scalar();
    let nudged = |delta: f32| -> nnsight::Result<f32> {
        let logits = lm.trace(PROMPT).run(async |m| {
            m.transformer.h[0]
                .output()
                .edit(|h| {
                    let bump = h
                        .zeros_like()
                        .slice_fill([0..1, position..position + 1, feature..feature + 1], delta);
                    h + bump
                })
                .await?;
            m.output().await
        })?;
        Ok(metric(logits, answer, distractor).into_scalar())
    };
    let difference = (nudged(eps)? - nudged(-eps)?) / (2.0 * eps);
    println!("\nd metric / d h[0][last token, 0]: autodiff {slope:.5}, finite difference {difference:.5}");
    Ok(())
}

fn truncate(text: &str) -> String {
    text.chars().take(8).collect()
}
