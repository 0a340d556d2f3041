//! The decoding loop, with or without a trace body interleaved.

use std::cell::RefCell;
use std::fmt;

use burn::prelude::*;
use nnsight::invoke::Root;
use nnsight::{Error, Result};

use super::decoder::Decoder;
use super::options::GenerateOptions;
use super::sampler::Sampler;
use crate::language_model::LanguageModel;
use crate::lm_invokes::LmInvokes;
use crate::prompts::Prompts;

/// What a generation produced.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// Each prompt's token ids.
    pub prompt_tokens: Vec<Vec<u32>>,
    /// Each prompt's new tokens, up to and including its end-of-sequence token (if it stopped).
    pub tokens: Vec<Vec<u32>>,
    /// Each prompt's new tokens as text.
    pub texts: Vec<String>,
    /// With [`GenerateOptions::with_logits`]: `logits[prompt][step]` are the logits (a
    /// vocabulary-sized row, before temperature and filtering) `tokens[prompt][step]` was chosen
    /// from — transformers' `output_logits`. Empty otherwise.
    pub logits: Vec<Vec<Vec<f32>>>,
    /// With [`GenerateOptions::with_scores`]: `scores[prompt][step]`, the processed scores the
    /// token was chosen from (the logits for greedy search; divided by the temperature, filtered
    /// tokens at −∞, when sampling) — transformers' `output_scores`. Empty otherwise.
    pub scores: Vec<Vec<Vec<f32>>>,
}

impl Generation {
    /// The log-probability of each new token under the logits it was chosen from
    /// (`[prompt][step]`, log-softmax of [`logits`](Self::logits) at the token): how sure the
    /// model was, step by step.
    ///
    /// # Errors
    /// [`Error::Input`] when the generation kept no logits ([`GenerateOptions::with_logits`]).
    pub fn token_log_probs(&self) -> Result<Vec<Vec<f32>>> {
        if self.logits.len() != self.tokens.len() {
            return Err(Error::Input {
                problem: "this generation kept no logits; generate with `GenerateOptions::with_logits()`"
                    .to_owned(),
            });
        }
        Ok(self
            .tokens
            .iter()
            .zip(&self.logits)
            .map(|(tokens, steps)| {
                tokens
                    .iter()
                    .zip(steps)
                    .map(|(&id, row)| {
                        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
                        (f64::from(row[id as usize] - max) - sum.ln()) as f32
                    })
                    .collect()
            })
            .collect())
    }
}

/// One token as it is generated, for streaming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// Which prompt it continues.
    pub prompt: usize,
    /// The decoding step (0: the token after the prompt).
    pub step: usize,
    /// The token id.
    pub id: u32,
    /// The token's text.
    pub text: String,
}

/// A streaming callback.
type OnToken<'m> = Box<dyn FnMut(&Token) + 'm>;

/// Generation entry points of a language model whose architecture can decode step by step.
impl<B: Backend, M: Decoder<B>> LanguageModel<B, M> {
    /// Generates a continuation of each of `prompts` (left-padded into one batch) with a KV
    /// cache; no trace.
    ///
    /// # Errors
    /// [`Error::Input`] for prompts or options the model cannot take.
    pub fn generate(&self, prompts: impl Into<Prompts>, options: GenerateOptions) -> Result<Generation> {
        let ((), generation) = self.generator(prompts, options).run(async |_| Ok(()))?;
        Ok(generation)
    }

    /// A generation with a trace body interleaved (see [`Generator::run`]):
    /// every decoding step is a new visit of every site.
    ///
    /// ```no_run
    /// # use burn::backend::Flex;
    /// # use burn::prelude::*;
    /// # use nnsight_models::{LanguageModel, gpt2::Gpt2LMHeadModel, generation::GenerateOptions};
    /// # fn main() -> nnsight::Result<()> {
    /// # let lm = LanguageModel::<Flex, Gpt2LMHeadModel<Flex>>::from_pretrained("openai-community/gpt2", &Default::default())?;
    /// # let steering = Tensor::<Flex, 1>::zeros([768], &Default::default());
    /// // Add a steering vector to layer 6's output at every step.
    /// let ((), steered) = lm.generator("The weather today is", GenerateOptions::greedy(20)).run(async |m| {
    ///     let v = steering.clone().reshape([1, 1, 768]);
    ///     m.transformer.h[6].output().every(move |h| h.clone() + v.clone())
    /// })?;
    /// println!("{}", steered.texts[0]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn generator(&self, prompts: impl Into<Prompts>, options: GenerateOptions) -> Generator<'_, B, M> {
        Generator::new(self, prompts.into(), options)
    }
}

/// A generation waiting to run: [`run`](Self::run) with a trace body, or
/// [`LanguageModel::generate`] without.
#[must_use = "a generation runs only when `run` is called"]
pub struct Generator<'m, B: Backend, M: Decoder<B>> {
    lm: &'m LanguageModel<B, M>,
    prompts: Prompts,
    options: GenerateOptions,
    on_token: Option<OnToken<'m>>,
}

impl<B: Backend, M: Decoder<B>> fmt::Debug for Generator<'_, B, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Generator").field("prompts", &self.prompts).field("options", &self.options).finish()
    }
}

impl<'m, B: Backend, M: Decoder<B>> Generator<'m, B, M> {
    pub(crate) fn new(lm: &'m LanguageModel<B, M>, prompts: Prompts, options: GenerateOptions) -> Self {
        Generator { lm, prompts, options, on_token: None }
    }

    /// Calls `f` with every token as soon as it is chosen (streaming).
    pub fn on_token(mut self, f: impl FnMut(&Token) + 'm) -> Self {
        self.on_token = Some(Box::new(f));
        self
    }

    /// Generates with `body` interleaved: every decoding step is a new visit of every site
    /// (visit 0 = the prefill). Each step runs the model's `forward_next`: the head sees the last
    /// position only (`lm_head`'s output is `[batch, 1, vocab]`, as with transformers' `generate`).
    /// Returns the body's result and the generation.
    ///
    /// # Errors
    /// [`Error::Input`] for prompts or options the model cannot take; the body's first error.
    pub fn run<R>(
        self,
        body: impl for<'e, 't> AsyncFnOnce(&'e M::Envoy<'t>) -> Result<R>,
    ) -> Result<(R, Generation)> {
        let Generator { lm, prompts, options, on_token } = self;
        let prompt_tokens = lm.tokenize(prompts)?;
        let tracer = lm.tracer().invoke(Prompts::Ids(prompt_tokens.clone()), body);
        let ((result,), generation) = generate(lm, prompt_tokens, &options, on_token, tracer)?;
        Ok((result, generation))
    }

    /// Generates with one body per prompt, each an invoke of its prompt's rows, on the model's
    /// untyped root envoy (a [`DynEnvoy`](nnsight::DynEnvoy) that reaches modules by path): for
    /// bodies that learn what to touch at run time, as the IR's interpreter. Returns the bodies'
    /// results in prompt order and the generation.
    ///
    /// # Errors
    /// [`Error::Input`] when there is not one body per prompt; as [`run`](Self::run).
    pub fn run_each_dyn<C, R>(self, bodies: Vec<C>) -> Result<(Vec<R>, Generation)>
    where
        C: for<'t> AsyncFnOnce(nnsight::DynEnvoy<'t>) -> Result<R>,
    {
        let Generator { lm, prompts, options, on_token } = self;
        let prompt_tokens = lm.tokenize(prompts)?;
        if bodies.len() != prompt_tokens.len() {
            return Err(Error::Input {
                problem: format!(
                    "{} bodies for {} prompts: one per prompt",
                    bodies.len(),
                    prompt_tokens.len()
                ),
            });
        }
        let invokes = prompt_tokens.iter().map(|t| Some(Prompts::Ids(vec![t.clone()]))).zip(bodies);
        let tracer = lm.tracer().invoke_inputs_dyn(invokes);
        let ((results,), generation) = generate(lm, prompt_tokens, &options, on_token, tracer)?;
        Ok((results, generation))
    }
}

/// Runs the decoding loop under `tracer`'s bodies: checks the budget against the context, then
/// prefill and one step per token (see [`Decode`]).
fn generate<'m, B: Backend, M: Decoder<B>, G: nnsight::invoke::Groups<M>>(
    lm: &'m LanguageModel<B, M>,
    prompt_tokens: Vec<Vec<u32>>,
    options: &GenerateOptions,
    mut on_token: Option<OnToken<'m>>,
    tracer: LmInvokes<'m, B, M, G>,
) -> Result<(G::Output, Generation)> {
    nnsight::observe::generation(options);
    let longest = prompt_tokens.iter().map(Vec::len).max().unwrap_or(0);
    let context = lm.model().max_positions();
    // `checked_add`: a `max_new_tokens` near `usize::MAX` must not wrap past the check.
    if longest.checked_add(options.max_new_tokens).is_none_or(|total| total > context) {
        return Err(Error::Input {
            problem: format!(
                "{longest} prompt tokens + {} new tokens exceed the model's context of {context}",
                options.max_new_tokens
            ),
        });
    }
    let mut sampler = Sampler::new(options.sampling.clone())?;
    let generated = RefCell::new(vec![Vec::new(); prompt_tokens.len()]);
    let kept = RefCell::new(vec![Vec::new(); if options.output_logits { prompt_tokens.len() } else { 0 }]);
    let scored = RefCell::new(vec![Vec::new(); if options.output_scores { prompt_tokens.len() } else { 0 }]);
    let (results, outcome) = tracer.run_loop(|inputs, root| {
        let mut decode = Decode {
            lm,
            options,
            sampler: &mut sampler,
            generated: &generated,
            logits: &kept,
            scores: &scored,
            on_token: on_token.as_deref_mut(),
        };
        decode.run(inputs, root)
    })?;
    if let Some(outcome) = outcome {
        outcome?;
    }
    let tokens = generated.into_inner();
    let texts = tokens.iter().map(|t| lm.decode(t)).collect::<Result<Vec<_>>>()?;
    let (logits, scores) = (kept.into_inner(), scored.into_inner());
    Ok((results, Generation { prompt_tokens, tokens, texts, logits, scores }))
}

/// The state of one decoding loop.
struct Decode<'a, 'm, B: Backend, M: Decoder<B>> {
    lm: &'m LanguageModel<B, M>,
    options: &'a GenerateOptions,
    sampler: &'a mut Sampler,
    generated: &'a RefCell<Vec<Vec<u32>>>,
    /// Each prompt's logits per step, when the options keep them (else no rows).
    logits: &'a RefCell<Vec<Vec<Vec<f32>>>>,
    /// Each prompt's processed scores per step, when the options keep them (else no rows).
    scores: &'a RefCell<Vec<Vec<Vec<f32>>>>,
    on_token: Option<&'a mut (dyn FnMut(&Token) + 'm)>,
}

impl<B: Backend, M: Decoder<B>> Decode<'_, '_, B, M> {
    /// Prefill, then one step per new token until every prompt stopped, the budget is spent or the
    /// trace failed.
    fn run(
        &mut self,
        (ids, mask): (Tensor<B, 2, Int>, Tensor<B, 2, Int>),
        root: &Root<'_, '_, '_>,
    ) -> Result<()> {
        let model = self.lm.model();
        let device = self.lm.device();
        let [rows, _] = ids.dims();
        let mut cache = model.new_cache();
        let mut done = vec![false; rows];
        let (mut input, mut mask) = (ids, mask);
        let progress = crate::progress::Progress::new(self.options.max_new_tokens as u64, "generating");
        for step in 0..self.options.max_new_tokens {
            progress.advance(1);
            let logits =
                root.call((input, mask.clone()), |(ids, mask)| model.forward_next(ids, mask, &mut cache));
            // A failed body fails the generation: its remaining steps would be computed for nothing
            // (a cancelled remote job would hold its worker until the budget ran out).
            if root.failed() {
                break;
            }
            let vocab = logits.dims()[2];
            let last = logits.reshape([rows, vocab]);
            let last: Vec<f32> = last.into_data().convert::<f32>().to_vec().map_err(|e| Error::Input {
                problem: format!("cannot read the logits back from the device: {e:?}"),
            })?;
            let mut next = Vec::with_capacity(rows);
            for (row, logits) in last.chunks_exact(vocab).enumerate() {
                if done[row] {
                    next.push(self.lm.pad_id());
                    continue;
                }
                if let Some(kept) = self.scores.borrow_mut().get_mut(row) {
                    kept.push(self.sampler.scores(logits));
                }
                let id = self.sampler.choose(logits);
                next.push(id);
                self.generated.borrow_mut()[row].push(id);
                if let Some(kept) = self.logits.borrow_mut().get_mut(row) {
                    kept.push(logits.to_vec());
                }
                if let Some(on_token) = self.on_token.as_mut() {
                    on_token(&Token { prompt: row, step, id, text: self.lm.token_text(id)? });
                }
                if self.options.stop_at_eos && self.lm.eos_ids().contains(&id) {
                    done[row] = true;
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
            let next: Vec<i64> = next.into_iter().map(i64::from).collect();
            input = Tensor::from_data(TensorData::new(next, [rows, 1]), device);
            mask = Tensor::cat(vec![mask, Tensor::ones([rows, 1], device)], 1);
        }
        Ok(())
    }
}
