//! An SAE in a model's forward pass: its features at the hook it was trained on, and the forward
//! pass with them edited — generic over every [`Standardized`] model, the hook found through the
//! model's vocabulary (`blocks.8.hook_resid_pre` → GPT-2's `transformer.h.8` input).

use burn::prelude::*;
use nnsight::{DynEnvoy, Error, Result};
use nnsight_models::vocabulary::{Location, Standardized};
use nnsight_models::{LanguageModel, Prompts};

use super::{Features, Sae};

/// What goes back into the forward pass after features are edited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Splice {
    /// The activations plus what the edit changed in the reconstruction: `x + decode(edited) −
    /// decode(features)` — SAELens' `use_error_term`, so an edit that changes nothing leaves the
    /// forward pass as it was, bit for bit.
    KeepError,
    /// The edited reconstruction alone, `decode(edited)`: the model runs on what the SAE
    /// explains.
    Reconstruction,
}

impl<B: Backend> Sae<B> {
    /// The SAE read at another hook than its `cfg.json` names (a TransformerLens hook name or a
    /// module path of the model).
    pub fn at_hook(mut self, hook: &str) -> Sae<B> {
        self.config.hook_name = Some(hook.to_owned());
        self
    }

    /// Where the SAE reads `lm`: its hook through the model's vocabulary.
    ///
    /// # Errors
    /// [`Error::Input`] when the configuration names no hook, or the model has no place for it.
    pub fn location<M: Standardized<B>>(&self, lm: &LanguageModel<B, M>) -> Result<Location> {
        let hook = self.config.hook_name.as_deref().ok_or_else(|| Error::Input {
            problem: "the SAE's cfg.json names no hook; say where it reads with `at_hook`".to_owned(),
        })?;
        lm.model().vocabulary().alias(hook)
    }

    /// The SAE's features of one prompt (text or token ids) at its hook, `[1, tokens, d_sae]`,
    /// from one trace: which features fire on which token.
    ///
    /// # Errors
    /// As [`location`](Self::location); [`Error::Input`] when the hook's activations are not
    /// `d_in` wide; the errors of the prompt and of the trace.
    pub fn features<M: Standardized<B>>(
        &self,
        lm: &LanguageModel<B, M>,
        prompt: impl Into<Prompts>,
    ) -> Result<Tensor<B, 3>> {
        let location = self.location(lm)?;
        let body = async move |root: DynEnvoy<'_>| -> Result<Tensor<B, 3>> {
            let x = location.read::<Tensor<B, 3>>(&root).await?;
            Ok(self.encode(x)?.values)
        };
        let (mut results,) = lm.tracer().invoke_inputs_dyn([(Some(prompt.into()), body)]).run()?;
        Ok(results.pop().expect("one invoke, one result"))
    }

    /// The forward pass of one prompt with the SAE's features at its hook edited by `edit`
    /// (`[1, tokens, d_sae]` in, the same shape out) and spliced back as `splice` says; returns
    /// the logits and the features before the edit.
    ///
    /// # Errors
    /// As [`features`](Self::features); [`Error::Input`] when `edit` changes the features' shape.
    pub fn edited<M: Standardized<B>>(
        &self,
        lm: &LanguageModel<B, M>,
        prompt: impl Into<Prompts>,
        splice: Splice,
        edit: impl FnOnce(Tensor<B, 3>) -> Tensor<B, 3>,
    ) -> Result<(Tensor<B, 3>, Tensor<B, 3>)> {
        let location = self.location(lm)?;
        let body = async move |root: DynEnvoy<'_>| -> Result<(Tensor<B, 3>, Tensor<B, 3>)> {
            let x = location.read::<Tensor<B, 3>>(&root).await?;
            let features = self.encode(x.clone())?;
            let edited: Features<B> = features.with_values(edit(features.values.clone()))?;
            let value = match splice {
                Splice::KeepError => x + (self.decode(&edited)? - self.decode(&features)?),
                Splice::Reconstruction => self.decode(&edited)?,
            };
            location.replace(&root, value).await?;
            Ok((root.output::<Tensor<B, 3>>().await?, features.values))
        };
        let (mut results,) = lm.tracer().invoke_inputs_dyn([(Some(prompt.into()), body)]).run()?;
        Ok(results.pop().expect("one invoke, one result"))
    }
}
