//! Activation patching on GPT-2 (indirect-object identification), as in nnsight's tutorials.
//!
//! ```sh
//! cargo run --release --example activation_patching [MODEL_ID]   # default: openai-community/gpt2
//! ```
//!
//! The clean prompt "… John gave a drink to" should be completed with " Mary"; the corrupted
//! one "… Mary gave a drink to" (same length) with " John". The metric is the logit difference
//! `logit(" Mary") − logit(" John")` at the last token. Patching runs the corrupted prompt with a
//! piece of the clean run's residual stream put back, and asks how much of the clean metric
//! returns:
//!
//! 1. read every block's output `transformer.h[L]` of the clean run in one trace;
//! 2. replace block `L`'s whole output in a trace of the corrupted prompt (`.replace`);
//! 3. patch one position only (`.edit` with burn's `slice_assign`);
//! 4. sweep every (layer, position) with `Gpt2LMHeadModel::residual_patching_sweep`, which shares
//!    work between the patches instead of running one forward pass each, and check a few entries
//!    against one trace each;
//! 5. patch the attention and MLP outputs and every head with `nnsight_toolkit::patching` (one
//!    batched forward pass per chunk of entries), and draw the attention and MLP sweeps as
//!    heatmaps (`target/pictures/activation_patching_{attn_out,mlp_out}.png`, and `.svg`);
//! 6. estimate the same entries by attribution patching (one forward and one backward pass) and
//!    compare. The model is loaded once, on the autodiff backend, for all of it.
//!
//! The model comes from the Hugging Face cache or the Hub; when neither is reachable the example
//! says so and runs on the tiny random GPT-2 the tests use.

mod support;

use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use nnsight::Error;
use nnsight_models::patching::LogitDiff;
use nnsight_models::vocabulary::Standardized;
use nnsight_support::pictures::picture;
use nnsight_toolkit::patching::{Metric, Patching, SiteKind, result_heatmap};
use nnsight_toolkit::plot::token_label;
use support::{Gpt2On, label};

/// burn's CPU backend with autodiff: the model is loaded once and serves plain traces, patching
/// and attribution patching (which needs gradients) alike.
type A = Autodiff<Flex>;
type Gpt2 = Gpt2On<A>;

const CLEAN: &str = "When Mary and John went to the store, John gave a drink to";
const CORRUPTED: &str = "When Mary and John went to the store, Mary gave a drink to";

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run() -> nnsight::Result<()> {
    let (lm, name) = support::load_model_on::<A>()?;
    let (clean, corrupted) = (lm.encode(CLEAN)?, lm.encode(CORRUPTED)?);
    if clean.len() != corrupted.len() {
        return Err(Error::Input {
            problem: format!(
                "the clean prompt has {} tokens and the corrupted one {}; patching position by \
                 position needs prompts of equal length",
                clean.len(),
                corrupted.len()
            ),
        });
    }
    let metric = LogitDiff { answer: first_token(&lm, " Mary")?, distractor: first_token(&lm, " John")? };
    let (layers, tokens) = (lm.model().transformer.h.len(), clean.len());
    println!("model: {name} ({layers} layers)");
    println!("clean:     {CLEAN:?}\ncorrupted: {CORRUPTED:?} ({tokens} tokens each)");
    println!(
        "metric: logit({}) - logit({}) at the last token\n",
        label(&lm, metric.answer)?,
        label(&lm, metric.distractor)?
    );

    // 1. The clean run: every block's output and the logits, in one trace.
    let (clean_hidden, clean_logits) = lm.trace(clean.clone()).run(async |m| {
        let mut hidden = Vec::new();
        for block in &m.transformer.h {
            hidden.push(block.output().await?);
        }
        Ok((hidden, m.output().await?))
    })?;
    let corrupted_logits = lm.trace(corrupted.clone()).run(async |m| m.output().await)?;
    let clean_metric = logit_diff(&clean_logits, metric);
    let corrupted_metric = logit_diff(&corrupted_logits, metric);
    let recovered = |value: f32| 100.0 * (value - corrupted_metric) / (clean_metric - corrupted_metric);
    println!("logit difference: clean {clean_metric:.4}, corrupted {corrupted_metric:.4}\n");

    // 2. Block L's whole output from the clean run (every position).
    let mut chosen = vec![0, layers / 2, layers - 1];
    chosen.dedup();
    println!("patching a whole layer (all positions):");
    for &layer in &chosen {
        let logits = lm.trace(corrupted.clone()).run(async |m| {
            m.transformer.h[layer].output().replace(clean_hidden[layer].clone()).await?;
            m.output().await
        })?;
        let value = logit_diff(&logits, metric);
        println!("  h[{layer:>2}]  {value:>8.4}  ({:>5.1}% recovered)", recovered(value));
    }

    // 3. One position: where the prompts differ (the second name).
    let position = clean.iter().zip(&corrupted).position(|(a, b)| a != b).unwrap_or(tokens - 1);
    println!("\npatching position {position} ({}) only:", label(&lm, clean[position])?);
    for &layer in &chosen {
        let value = patch_position(&lm, &corrupted, metric, layer, position, &clean_hidden[layer])?;
        println!("  h[{layer:>2}]  {value:>8.4}  ({:>5.1}% recovered)", recovered(value));
    }

    // 4. Every (layer, position).
    sweep(&lm, &clean, &corrupted, metric, &clean_hidden)?;

    // 5. Other sites, with the toolkit.
    sites(&lm, &clean, &corrupted, metric)
}

/// Attention and MLP outputs at every (layer, position), and every head at the last position,
/// with the toolkit's general patching; the sweeps drawn as heatmaps.
fn sites(lm: &Gpt2, clean: &[u32], corrupted: &[u32], metric: LogitDiff) -> nnsight::Result<()> {
    let metric = || Metric::logit_diff(metric.answer, metric.distractor);
    let start = Instant::now();
    let blocks = Patching::new(metric()).sites(&[SiteKind::AttnOut, SiteKind::MlpOut]).run(
        lm,
        clean.to_vec(),
        corrupted.to_vec(),
    )?;
    println!(
        "
attention and MLP outputs at every (layer, position): {} entries by invokes in {:.2?}",
        blocks.values.len(),
        start.elapsed()
    );
    let tokens = clean
        .iter()
        .map(|&id| lm.token_text(id).map(|t| token_label(&t)))
        .collect::<nnsight::Result<Vec<_>>>()?;
    for (site, name) in [(0, "attn_out"), (1, "mlp_out")] {
        let heatmap =
            result_heatmap(&blocks, site, &tokens, &format!("IOI: {name} patched from the clean run"))?;
        let (png, svg) = (
            picture(&format!("activation_patching_{name}.png"))?,
            picture(&format!("activation_patching_{name}.svg"))?,
        );
        heatmap.save(&png)?;
        heatmap.save(&svg)?;
        println!("  {name}: {}", png.display());
    }
    let heads = lm.model().vocabulary().num_heads;
    let kinds: Vec<SiteKind> = (0..heads).map(SiteKind::Head).collect();
    let last = clean.len() - 1;
    let per_head = Patching::new(metric()).sites(&kinds).positions([last]).run(
        lm,
        clean.to_vec(),
        corrupted.to_vec(),
    )?;
    let layers = per_head.layers.len();
    let (mut best, mut best_value) = ((0, 0), f32::NEG_INFINITY);
    for head in 0..heads {
        for layer in 0..layers {
            let value = per_head.recovered(head, layer, 0);
            if value > best_value {
                (best, best_value) = ((layer, head), value);
            }
        }
    }
    println!(
        "every head at the last position ({} entries): head {}.{} restores the most ({:.1}%)",
        per_head.values.len(),
        best.0,
        best.1,
        100.0 * best_value
    );

    // 6. The same attention and MLP entries by attribution patching.
    let start = Instant::now();
    let atp = Patching::new(metric()).sites(&[SiteKind::AttnOut, SiteKind::MlpOut]).attribute(
        lm,
        clean.to_vec(),
        corrupted.to_vec(),
    )?;
    let n = atp.values.len() as f32;
    let mean = |v: &[f32]| v.iter().sum::<f32>() / n;
    let (ma, mb) = (mean(&atp.values), mean(&blocks.values));
    let cov: f32 = atp.values.iter().zip(&blocks.values).map(|(a, b)| (a - ma) * (b - mb)).sum();
    let spread = |v: &[f32], m: f32| v.iter().map(|x| (x - m).powi(2)).sum::<f32>().sqrt();
    println!(
        "attribution patching of the same {} entries in {:.2?}: correlation with patching {:.3}",
        atp.values.len(),
        start.elapsed(),
        cov / (spread(&atp.values, ma) * spread(&blocks.values, mb))
    );
    Ok(())
}

/// The systematic sweep with `residual_patching_sweep`, timed, with a few entries checked against
/// one trace each.
fn sweep(
    lm: &Gpt2,
    clean: &[u32],
    corrupted: &[u32],
    metric: LogitDiff,
    clean_hidden: &[Tensor<A, 3>],
) -> nnsight::Result<()> {
    let start = Instant::now();
    let sweep = lm.model().residual_patching_sweep(clean, corrupted, metric)?;
    let fast = start.elapsed();
    println!(
        "\nsweep over every (layer, position): {} x {} patches in {fast:.2?}",
        sweep.layers, sweep.positions
    );
    println!("{sweep}");
    // The same as the share of the clean-vs-corrupted difference recovered, one row per position.
    let labels = (0..sweep.positions)
        .map(|p| match (label(lm, clean[p])?, label(lm, corrupted[p])?) {
            (a, b) if a == b => Ok(a),
            (a, b) => Ok(format!("{a} (corrupted: {b})")),
        })
        .collect::<nnsight::Result<Vec<String>>>()?;
    let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    println!("\nrecovered, in % of clean - corrupted (rows: positions, columns: layers):");
    print!("{:width$}    ", "");
    (0..sweep.layers).for_each(|layer| print!(" {:>5}", format!("h{layer}")));
    for (position, text) in labels.iter().enumerate() {
        print!("\n{position:>3} {text:width$}");
        (0..sweep.layers).for_each(|layer| print!(" {:>5.0}", 100.0 * sweep.recovered(layer, position)));
    }
    println!();

    // A few entries the naive way: one trace of the corrupted prompt per patch.
    let (layers, tokens) = (sweep.layers, sweep.positions);
    let entries = [(0, tokens - 1), (layers / 2, tokens - 2), (layers - 1, tokens - 1)];
    let start = Instant::now();
    let mut worst = 0.0f32;
    for &(layer, position) in &entries {
        let naive = patch_position(lm, corrupted, metric, layer, position, &clean_hidden[layer])?;
        worst = worst.max((naive - sweep.get(layer, position)).abs());
    }
    let per_trace = start.elapsed() / entries.len() as u32;
    println!(
        "\n{} entries by one trace each ({per_trace:.2?} per trace): max |sweep - trace| = {worst:.2e}",
        entries.len()
    );
    println!(
        "a naive sweep would take about {:.2?} ({} traces)",
        per_trace * (layers * tokens) as u32,
        layers * tokens
    );
    Ok(())
}

/// The metric of the corrupted prompt with block `layer`'s output at `position` taken from
/// `clean` (the clean run's output of that block).
fn patch_position(
    lm: &Gpt2,
    corrupted: &[u32],
    metric: LogitDiff,
    layer: usize,
    position: usize,
    clean: &Tensor<A, 3>,
) -> nnsight::Result<f32> {
    let at = [0..1, position..position + 1];
    let patch = clean.clone().slice(at.clone());
    let logits = lm.trace(corrupted.to_vec()).run(async |m| {
        m.transformer.h[layer].output().edit(|h| h.slice_assign(at, patch)).await?;
        m.output().await
    })?;
    Ok(logit_diff(&logits, metric))
}

/// `logit(answer) − logit(distractor)` at the last token of `logits` (`[1, tokens, vocab]`).
fn logit_diff(logits: &Tensor<A, 3>, metric: LogitDiff) -> f32 {
    let [_, tokens, vocab] = logits.dims();
    let last: Vec<f32> = logits
        .clone()
        .slice([0..1, tokens - 1..tokens])
        .reshape([vocab])
        .into_data()
        .to_vec()
        .expect("f32 logits");
    last[metric.answer as usize] - last[metric.distractor as usize]
}

/// The first token of `text` (GPT-2 tokens carry their leading space: `" Mary"`).
fn first_token(lm: &Gpt2, text: &str) -> nnsight::Result<u32> {
    lm.encode(text)?
        .first()
        .copied()
        .ok_or_else(|| Error::Input { problem: format!("{text:?} has no tokens") })
}
