//! What the GPT-2 examples share: loading the model named on the command line (default
//! `openai-community/gpt2`), falling back to the bundled tiny GPT-2 fixture when it cannot be
//! loaded (no network and not in the Hugging Face cache), and showing tokens.

use burn::backend::Flex;
use burn::prelude::Backend;
use nnsight_models::LanguageModel;
use nnsight_models::gpt2::Gpt2LMHeadModel;

/// GPT-2 with its tokenizer, on burn's CPU backend.
pub(crate) type Gpt2 = Gpt2On<Flex>;

/// GPT-2 with its tokenizer, on the backend `B` (e.g. `Autodiff<Flex>` for gradients).
pub(crate) type Gpt2On<B> = LanguageModel<B, Gpt2LMHeadModel<B>>;

/// The model loaded when none is named.
const DEFAULT_MODEL: &str = "openai-community/gpt2";

/// Loads the model named by the first command-line argument (a Hub id or a directory); when that
/// fails, says why and loads the fixture instead. Returns the model and what was loaded.
#[allow(dead_code)]
pub(crate) fn load_model() -> nnsight::Result<(Gpt2, String)> {
    load_model_on::<Flex>()
}

/// [`load_model`] on the backend `B`.
pub(crate) fn load_model_on<B: Backend>() -> nnsight::Result<(Gpt2On<B>, String)> {
    let id = std::env::args().nth(1).unwrap_or_else(|| DEFAULT_MODEL.to_owned());
    let device = Default::default();
    match Gpt2On::<B>::from_pretrained(&id, &device) {
        Ok(lm) => Ok((lm, id)),
        Err(error) => {
            println!("could not load {id}: {error}");
            println!("running on the bundled tiny GPT-2 fixture instead (random weights: the numbers");
            println!("show the workflow, not what GPT-2 knows)\n");
            // A tiny random GPT-2 (2 layers, 512 tokens) with a real tokenizer, made for the tests.
            let fixture = nnsight_support::fixture_dir("tiny-gpt2");
            let fixture = fixture.to_str().expect("the workspace path is UTF-8");
            Ok((Gpt2On::<B>::from_pretrained(fixture, &device)?, "tiny-gpt2 (test fixture)".to_owned()))
        }
    }
}

/// A token as text, quoted so that leading spaces show (`" Paris"`).
#[allow(dead_code)]
pub(crate) fn label<B: Backend>(lm: &Gpt2On<B>, id: u32) -> nnsight::Result<String> {
    Ok(format!("{:?}", lm.token_text(id)?))
}
