//! Mamba's recurrent state, traced as nnsight traces a transformer: read every layer's SSM state,
//! patch one prompt's state into another's, and steer a generation step by step.
//!
//! ```sh
//! cargo run --release --example mamba_state [MODEL_ID]   # default: state-spaces/mamba-130m-hf
//! ```
//!
//! Paths are Hugging Face's: `backbone.layers[i]` is block `i` (its output is the residual stream),
//! `backbone.layers[i].mixer.ssm_states` the SSM state after every token
//! `[batch, tokens, intermediate, state_size]` — the whole memory of the prompt so far, of a fixed
//! size — and `backbone.layers[i].mixer.gated_output` what the mixer projects back.
//!
//! The model comes from the Hugging Face cache or the Hub; when neither is reachable the example
//! says so and runs on the tiny random Mamba the tests use.

mod support;

use burn::backend::Flex;
use burn::prelude::*;
use nnsight_models::LanguageModel;
use nnsight_models::generation::GenerateOptions;
use nnsight_models::mamba::MambaForCausalLM;

type Mamba = LanguageModel<Flex, MambaForCausalLM<Flex>>;

const SOURCE: &str = "The Eiffel Tower is in the city of";
const TARGET: &str = "The Colosseum is in the city of";

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run() -> nnsight::Result<()> {
    let (lm, name): (Mamba, String) =
        support::load_or_fixture("state-spaces/mamba-130m-hf", "tiny-mamba", "Mamba")?;
    let layers = lm.model().backbone.layers.len();
    println!("model: {name} ({layers} blocks)\n");

    // 1. One trace: every block's SSM state after the last token.
    let states = lm.trace(SOURCE).run(async |m| {
        let mut last = Vec::new();
        for layer in &m.backbone.layers {
            let states = layer.mixer.ssm_states.output::<Tensor<Flex, 4>>().await?;
            let tokens = states.dims()[1];
            last.push(states.narrow(1, tokens - 1, 1));
        }
        Ok(last)
    })?;
    println!("SSM state after {SOURCE:?}, per block (Frobenius norm; shape [batch, 1, channels, state]):");
    for (i, state) in states.iter().enumerate() {
        let norm: f32 = state.clone().powf_scalar(2.0).sum().sqrt().into_scalar();
        println!("  layers[{i:>2}] {norm:>9.3}  {:?}", state.dims());
    }

    // 2. State patching: the target prompt's last-token state of block L replaced by the
    //    source's. How much of the source's prediction does that one state carry?
    let answer = top_token(&lm, SOURCE)?;
    let target_logits = lm.forward(TARGET)?;
    let before = logit_at_last(&target_logits, answer);
    println!(
        "\nsource's top next token {:?}; its logit on the target prompt: {before:.3}",
        lm.token_text(answer)?
    );
    println!("patching the target's last SSM state of one block with the source's:");
    for (layer, source_state) in states.iter().enumerate() {
        let patched = lm.trace(TARGET).run(async |m| {
            let site = m.backbone.layers[layer].mixer.ssm_states.output::<Tensor<Flex, 4>>();
            site.edit(|s| {
                let [batch, tokens, channels, width] = s.dims();
                s.slice_assign([0..batch, tokens - 1..tokens, 0..channels, 0..width], source_state.clone())
            })
            .await?;
            m.output().await
        })?;
        let after = logit_at_last(&patched, answer);
        println!("  layers[{layer:>2}]  {after:>9.3}  ({:+.3})", after - before);
    }

    // 3. Steering (ActAdd): add 4× the difference of the two prompts' last residual streams at
    //    block L, at every decoding step (each step is a new visit of every site, as for a transformer).
    let probe = layers / 2;
    let residual = |prompt: &str| -> nnsight::Result<Tensor<Flex, 3>> {
        let h = lm.trace(prompt).run(async |m| m.backbone.layers[probe].output().await)?;
        let tokens = h.dims()[1];
        Ok(h.narrow(1, tokens - 1, 1))
    };
    let direction = (residual(SOURCE)? - residual(TARGET)?) * 4.0;
    let options = GenerateOptions::greedy(12).ignore_eos();
    let plain = lm.generate(TARGET, options.clone())?;
    let ((), steered) = lm.generator(TARGET, options).run(async |m| {
        m.backbone.layers[probe].output().every(move |h: Tensor<Flex, 3>| h + direction.clone())
    })?;
    println!("\ngreedy continuation of {TARGET:?}:");
    println!("  plain:                       {:?}", plain.texts[0]);
    println!("  steered at layers[{probe}], every step: {:?}", steered.texts[0]);
    Ok(())
}

/// The most likely next token after `prompt`.
fn top_token(lm: &Mamba, prompt: &str) -> nnsight::Result<u32> {
    let logits = lm.forward(prompt)?;
    let [_, tokens, vocab] = logits.dims();
    let last = logits.slice([0..1, tokens - 1..tokens]).reshape([vocab]);
    Ok(last.argmax(0).into_scalar() as u32)
}

/// Logit of `token` at the last position of `logits` `[1, tokens, vocab]`.
fn logit_at_last(logits: &Tensor<Flex, 3>, token: u32) -> f32 {
    let [_, tokens, _] = logits.dims();
    let id = token as usize;
    logits.clone().slice([0..1, tokens - 1..tokens, id..id + 1]).into_scalar()
}
