//! What the examples share: loading the model named on the command line (GPT-2 by default),
//! falling back to a bundled tiny fixture of the same family when it cannot be loaded (no network
//! and not in the Hugging Face cache), and showing tokens.

use burn::backend::Flex;
use burn::prelude::Backend;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use nnsight_models::{LanguageModel, Pretrained};

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
    load_or_fixture(DEFAULT_MODEL, "tiny-gpt2", "GPT-2")
}

/// Loads the model named by the first command-line argument (default `default`); when that
/// fails, says why and loads the test fixture `fixture` (a tiny random `family`) instead.
pub(crate) fn load_or_fixture<B: Backend, M: Pretrained<B>>(
    default: &str,
    fixture: &str,
    family: &str,
) -> nnsight::Result<(LanguageModel<B, M>, String)> {
    let id = std::env::args().nth(1).unwrap_or_else(|| default.to_owned());
    let device = Default::default();
    match LanguageModel::<B, M>::from_pretrained(&id, &device) {
        Ok(lm) => Ok((lm, id)),
        Err(error) => {
            println!("could not load {id}: {error}");
            println!("running on the bundled tiny {family} fixture instead (random weights: the numbers");
            println!("show the workflow, not what {family} knows)\n");
            // A tiny random model with a real tokenizer, made for the tests.
            let dir = nnsight_support::fixture_dir(fixture);
            let dir = dir.to_str().expect("the workspace path is UTF-8");
            Ok((LanguageModel::<B, M>::from_pretrained(dir, &device)?, format!("{fixture} (test fixture)")))
        }
    }
}

/// A token as text, quoted so that leading spaces show (`" Paris"`).
#[allow(dead_code)]
pub(crate) fn label<B: Backend>(lm: &Gpt2On<B>, id: u32) -> nnsight::Result<String> {
    Ok(format!("{:?}", lm.token_text(id)?))
}
