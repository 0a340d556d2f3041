//! Direct logit attribution on GPT-2: which heads and MLPs write the answer into the residual
//! stream, through the final LayerNorm (its scale from the final residual) and the unembedding,
//! as TransformerLens' `logit_attrs` computes it.
//!
//! ```sh
//! cargo run --release --example logit_attribution [MODEL_ID]   # default: openai-community/gpt2
//! ```
//!
//! Prints each component's share of `logit(" Mary") − logit(" John")` on an indirect-object
//! prompt, and draws the heads' attributions as a heatmap (layers × heads) to
//! `target/pictures/logit_attribution_heads.{png,svg}`. Offline, the tiny GPT-2 fixture runs.

mod support;

use nnsight_models::vocabulary::Standardized;
use nnsight_support::pictures::picture;
use nnsight_toolkit::decomposition::ResidualStack;
use nnsight_toolkit::plot::{Heatmap, Scale};

const PROMPT: &str = "When Mary and John went to the store, John gave a drink to";

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run() -> nnsight::Result<()> {
    let (lm, name) = support::load_model()?;
    let (mary, john) = (lm.encode(" Mary")?[0], lm.encode(" John")?[0]);
    let stack = ResidualStack::heads(&lm, PROMPT)?;
    let attrs = stack.logit_attrs(&lm, mary, Some(john), -1)?;
    println!("{name}: {PROMPT:?}");
    println!("direct logit attribution to logit(\" Mary\") − logit(\" John\") at the last token:");
    let mut order: Vec<usize> = (0..attrs.len()).collect();
    order.sort_by(|&a, &b| attrs[b].abs().total_cmp(&attrs[a].abs()));
    for &c in order.iter().take(8) {
        println!("  {:>14} {:+.4}", stack.labels[c], attrs[c]);
    }
    println!("  (sum over {} components: {:+.4})", attrs.len(), attrs.iter().sum::<f32>());

    let words = lm.model().vocabulary();
    let (layers, heads) = (words.num_layers, words.num_heads);
    let mut values = Vec::with_capacity(layers * heads);
    for layer in (0..layers).rev() {
        for head in 0..heads {
            let at = stack
                .labels
                .iter()
                .position(|l| *l == format!("L{layer}H{head}"))
                .expect("every head is a component");
            values.push(attrs[at]);
        }
    }
    let rows = (0..layers).rev().map(|l| format!("layer {l}")).collect();
    let columns = (0..heads).map(|h| format!("head {h}")).collect();
    let heatmap = Heatmap::new("direct logit attribution: Mary − John", rows, columns, values)?
        .axes("head", "layer")
        .scale(Scale::Diverging);
    let (png, svg) = (picture("logit_attribution_heads.png")?, picture("logit_attribution_heads.svg")?);
    heatmap.save(&png)?;
    heatmap.save(&svg)?;
    println!("heads' attributions drawn to {} (and .svg)", png.display());
    Ok(())
}
