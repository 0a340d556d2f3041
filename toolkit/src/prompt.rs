//! The one prompt an analysis reads, as token ids.

use burn::prelude::Backend;
use nnsight::{Error, Result};
use nnsight_models::{CausalLm, LanguageModel, Prompts};

/// The token ids of `prompts`, which must be one prompt (`which` names it in the error).
///
/// # Errors
/// [`Error::Input`] for several prompts or none; the tokenizer's errors.
pub(crate) fn one_prompt<B: Backend, M: CausalLm<B>>(
    lm: &LanguageModel<B, M>,
    prompts: Prompts,
    which: &str,
) -> Result<Vec<u32>> {
    let mut prompts = lm.tokenize(prompts)?;
    if prompts.len() != 1 {
        return Err(Error::Input {
            problem: format!("the {which} is {} prompts; one is read", prompts.len()),
        });
    }
    Ok(prompts.pop().expect("one prompt"))
}
