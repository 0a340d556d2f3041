//! Activation analysis on GPT-2, as in nnsight's tutorials: in ONE forward pass, read every
//! layer's residual stream, one layer's attention pattern and the logits; then look at them.
//!
//! ```sh
//! cargo run --release --example activation_analysis [MODEL_ID]   # default: openai-community/gpt2
//! ```
//!
//! Module paths are Hugging Face's, as in nnsight: `transformer.h[i]` is block `i` (its output is
//! the residual stream `[batch, tokens, n_embd]`), the input of `transformer.h[i].attn.attn_dropout`
//! is that block's attention probabilities `[batch, heads, queries, keys]`, and the model's own
//! output is the logits `[batch, tokens, vocab]`. Accesses follow execution order: block `i`'s
//! attention comes before block `i`'s output.
//!
//! The model comes from the Hugging Face cache or the Hub; when neither is reachable the example
//! says so and runs on the tiny random GPT-2 the tests use.

mod support;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use nnsight::prelude::*;
use support::label;

const PROMPT: &str = "The Eiffel Tower is in the city of";

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run() -> nnsight::Result<()> {
    let (lm, name) = support::load_model()?;
    let ids = lm.encode(PROMPT)?;
    let tokens = ids.len();
    let layers = lm.model().transformer.h.len();
    let probe = layers / 2;
    println!("model: {name} ({layers} layers)\nprompt: {PROMPT:?} ({tokens} tokens)\n");

    // One trace: every block's output, the attention probabilities of block `probe`, the logits.
    let (hidden, attention, logits) = trace!(lm, PROMPT, |m| {
        let mut hidden = Vec::new();
        let mut attention = None;
        for (i, block) in m.transformer.h.iter().enumerate() {
            if i == probe {
                let probs: Tensor<Flex, 4> = block.attn.attn_dropout.input();
                attention = Some(probs);
            }
            hidden.push(block.output());
        }
        (hidden, attention, m.output())
    })?;
    let attention = attention.expect("every block runs, so block `probe` did");
    let last = |t: Tensor<Flex, 3>| t.slice([0..1, tokens - 1..tokens]);

    println!("residual stream norm at the last token, per layer:");
    for (i, h) in hidden.into_iter().enumerate() {
        let norm: f32 = last(h).powf_scalar(2.0).sum().sqrt().into_scalar();
        println!("  h[{i:>2}] {norm:>9.3}");
    }

    // [1, heads, T, T] → the last query's row, averaged over heads → [T].
    let heads = attention.dims()[1];
    let row = attention.slice([0..1, 0..heads, tokens - 1..tokens]).mean_dim(1).reshape([tokens]);
    let weights: Vec<f32> = row.into_data().to_vec().expect("f32 probabilities");
    println!("\nattention of the last token in layer {probe} (mean over {heads} heads):");
    for (&id, weight) in ids.iter().zip(weights) {
        let bar = "#".repeat((weight * 40.0).round() as usize);
        println!("  {:<12} {weight:.3} {bar}", label(&lm, id)?);
    }

    let vocab = logits.dims()[2];
    let next = last(logits).reshape([vocab]);
    let norm: f32 = next.clone().powf_scalar(2.0).sum().sqrt().into_scalar();
    println!("\nlogits at the last token: {vocab} values, norm {norm:.3}");
    let (probs, top) = softmax(next, 0).topk_with_indices(5, 0);
    let probs: Vec<f32> = probs.into_data().to_vec().expect("f32 probabilities");
    println!("top-5 next tokens:");
    for (id, p) in top.into_data().iter::<i64>().zip(probs) {
        println!("  {:<12} (id {id:>5}) {:>6.2}%", label(&lm, id as u32)?, 100.0 * p);
    }
    Ok(())
}
