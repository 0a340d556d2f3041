//! Programs on a language model: prompts as text (its tokenizer) or token ids, left-padded into
//! one batch; a trace with `generate` runs its decoding loop, every step one more occurrence of
//! every site (standing edits apply at each). TransformerLens' hook names in the program are
//! resolved through the model's vocabulary first, as a host does.

use std::collections::BTreeMap;

use burn::prelude::*;
use nnsight::DynEnvoy;
use nnsight_models::generation::{Decoder, GenerateOptions, Sampling};
use nnsight_models::vocabulary::Standardized;
use nnsight_models::{LanguageModel, Prompts};

use std::rc::Rc;

use super::{Host, Hosted, Outcome, RunError, Value, Watch, run_on, run_watched};
use crate::ir::{Input, Program, Sampler, Trace};

/// Runs `program` on `lm` (see [`run`](super::run)): invokes take text or token-id prompts; a
/// trace with `generate` generates, and its invokes' bodies see every step.
///
/// # Errors
/// As [`run`](super::run); a tensor input is an input error (a language model takes prompts).
pub fn run_language_model<B: Backend, M: Decoder<B> + Standardized<B>>(
    lm: &LanguageModel<B, M>,
    program: &Program,
    tensors: &BTreeMap<String, Value<B>>,
    hosted: &Hosted<'_, B>,
) -> Result<Outcome<B>, RunError> {
    run_on(&Lm(lm), &resolved(lm, program)?, tensors, hosted)
}

/// [`run_language_model`], asking `watch` before every site access whether to go on (a server
/// stops a cancelled or overlong job this way, and reports its progress).
///
/// # Errors
/// As [`run_language_model`]; [`RunError::Stopped`] when `watch` stops it.
pub fn run_language_model_watched<B: Backend, M: Decoder<B> + Standardized<B>>(
    lm: &LanguageModel<B, M>,
    program: &Program,
    tensors: &BTreeMap<String, Value<B>>,
    hosted: &Hosted<'_, B>,
    watch: Rc<dyn Watch>,
) -> Result<Outcome<B>, RunError> {
    run_watched(&Lm(lm), &resolved(lm, program)?, tensors, hosted, watch)
}

/// `program` with TransformerLens' hook names resolved through `lm`'s vocabulary, as a host
/// resolves them at ingress (a program of module paths comes back unchanged).
fn resolved<B: Backend, M: Decoder<B> + Standardized<B>>(
    lm: &LanguageModel<B, M>,
    program: &Program,
) -> Result<Program, RunError> {
    let mut program = program.clone();
    crate::aliases::resolve(&mut program, &lm.model().vocabulary())
        .map_err(|d| RunError::Invalid(vec![d]))?;
    Ok(program)
}

struct Lm<'m, B: Backend, M: Decoder<B>>(&'m LanguageModel<B, M>);

impl<B: Backend, M: Decoder<B>> Lm<'_, B, M> {
    fn tokens(&self, input: &Input) -> nnsight::Result<Vec<u32>> {
        match input {
            Input::Text(text) => self.0.encode(text),
            Input::Tokens(tokens) => Ok(tokens.clone()),
            Input::Tensor(name) => Err(nnsight::Error::Input {
                problem: format!("a language model takes prompts, not the tensor `{name}`"),
            }),
        }
    }
}

impl<B: Backend, M: Decoder<B>> Host for Lm<'_, B, M> {
    fn generates(&self) -> bool {
        true
    }

    fn run_trace<C, R>(&self, trace: &Trace, bodies: Vec<(Option<&Input>, C)>) -> nnsight::Result<Vec<R>>
    where
        C: for<'t> AsyncFnOnce(DynEnvoy<'t>) -> nnsight::Result<R>,
    {
        let Some(generate) = &trace.generate else {
            let mut invokes = Vec::with_capacity(bodies.len());
            for (input, body) in bodies {
                let prompts = input.map(|i| self.tokens(i).map(|t| Prompts::Ids(vec![t]))).transpose()?;
                invokes.push((prompts, body));
            }
            return Ok(self.0.tracer().invoke_inputs_dyn(invokes).run()?.0);
        };
        let mut rows = Vec::with_capacity(bodies.len());
        let mut generation_bodies = Vec::with_capacity(bodies.len());
        for (i, (input, body)) in bodies.into_iter().enumerate() {
            let input = input.ok_or_else(|| nnsight::Error::Input {
                problem: format!("invoke {i} of a generating trace has no prompt: each generates its own"),
            })?;
            rows.push(self.tokens(input)?);
            generation_bodies.push(body);
        }
        let sampling = match &generate.sampler {
            Sampler::Greedy => Sampling::Greedy,
            Sampler::Sample { temperature, top_k, top_p, seed } => Sampling::Sample {
                temperature: *temperature,
                top_k: top_k.map(|k| k as usize),
                top_p: *top_p,
                seed: *seed,
            },
        };
        let options = GenerateOptions {
            max_new_tokens: generate.max_new_tokens as usize,
            sampling,
            stop_at_eos: generate.stop_at_eos,
            output_logits: false,
            output_scores: false,
        };
        let (results, _generation) =
            self.0.generator(Prompts::Ids(rows), options).run_each_dyn(generation_bodies)?;
        Ok(results)
    }
}
