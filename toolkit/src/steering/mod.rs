//! Steering vectors: a direction per layer added to the residual stream (each steered layer's
//! output), found as the difference of means of contrasting prompts (ActAdd with one pair, CAA's
//! mean difference with several), applied in generation at chosen layers, steps and tokens with
//! a scale — or a sweep of scales in one batched generation — and kept as safetensors or read from
//! a llama.cpp control vector. Written once for every [`Standardized`] model.
//!
//! ```no_run
//! # use burn::backend::Flex;
//! # use nnsight_models::{LanguageModel, llama::LlamaForCausalLM, generation::GenerateOptions};
//! # use nnsight_toolkit::steering::{Apply, SteeringVector};
//! # fn main() -> nnsight::Result<()> {
//! # let lm = LanguageModel::<Flex, LlamaForCausalLM<Flex>>::from_pretrained("HuggingFaceTB/SmolLM2-135M", &Default::default())?;
//! let vector = SteeringVector::from_pairs(&lm, &[("I love this", "I hate this")], [10, 12])?;
//! let options = GenerateOptions::greedy(20);
//! let steered = vector.generate(&lm, "My day was", options.clone(), &Apply::scaled(4.0))?;
//! let sweep = vector.scale_sweep(&lm, "My day was", options, &[-4.0, 0.0, 4.0], &Apply::scaled(1.0))?;
//! vector.save("love.safetensors")?;
//! # Ok(())
//! # }
//! ```

mod files;

use std::collections::BTreeMap;
use std::ops::Range;

use burn::prelude::*;
use nnsight::{DynEnvoy, Error, Positions, Result};
use nnsight_models::generation::{Decoder, GenerateOptions, Generation};
use nnsight_models::vocabulary::{Standardized, Vocabulary, residual_stream};
use nnsight_models::{LanguageModel, Prompts};

/// A direction `[hidden]` per steered layer, added to that layer's output.
#[derive(Clone, Debug)]
pub struct SteeringVector<B: Backend> {
    directions: BTreeMap<usize, Tensor<B, 1>>,
    model_hint: Option<String>,
}

/// Where, when and how strongly a [`SteeringVector`] is added during generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Apply {
    /// The factor the directions are multiplied by.
    pub scale: f32,
    /// The generation steps it is added at (0: the prompt's prefill; `None`: every step).
    pub steps: Option<Range<u32>>,
    /// Whether only the last token of each step is steered (else every token: the prompt's at
    /// the prefill, the new one at each later step).
    pub last_token_only: bool,
}

impl Apply {
    /// Every token of every step, times `scale`.
    pub fn scaled(scale: f32) -> Apply {
        Apply { scale, steps: None, last_token_only: false }
    }

    /// Only at the generation steps `steps` (0: the prefill).
    pub fn at_steps(mut self, steps: Range<u32>) -> Apply {
        self.steps = Some(steps);
        self
    }

    /// Only the last token of each step.
    pub fn last_token(mut self) -> Apply {
        self.last_token_only = true;
        self
    }
}

impl<B: Backend> SteeringVector<B> {
    /// A vector of the given directions (`layer → [hidden]`).
    ///
    /// # Errors
    /// [`Error::Input`] for no direction, or directions of different widths.
    pub fn new(directions: BTreeMap<usize, Tensor<B, 1>>) -> Result<Self> {
        let mut widths = directions.values().map(|d| d.dims()[0]);
        let Some(width) = widths.next() else {
            return Err(Error::Input {
                problem: "a steering vector needs at least one layer's direction".to_owned(),
            });
        };
        if widths.any(|w| w != width) {
            return Err(Error::Input {
                problem: "the steering vector's directions differ in width".to_owned(),
            });
        }
        Ok(SteeringVector { directions, model_hint: None })
    }

    /// The difference of means at the last token of each layer in `layers`: the mean over
    /// `pairs` of `(positive, negative)` prompts of the positive prompt's layer output minus the
    /// negative one's (one pair: ActAdd's difference; several: CAA's mean difference).
    ///
    /// # Errors
    /// [`Error::Input`] for no pair or no layer, a layer past the last; the errors of the prompts
    /// and traces.
    pub fn from_pairs<M: Standardized<B>>(
        lm: &LanguageModel<B, M>,
        pairs: &[(&str, &str)],
        layers: impl IntoIterator<Item = usize>,
    ) -> Result<Self> {
        let layers: Vec<usize> = layers.into_iter().collect();
        let words = lm.model().vocabulary();
        if pairs.is_empty() || layers.is_empty() {
            return Err(Error::Input {
                problem: "a difference of means needs at least one pair and one layer".to_owned(),
            });
        }
        for &layer in &layers {
            words.layer(layer)?;
        }
        let last = |prompt: &str| -> Result<Vec<Tensor<B, 1>>> {
            let residuals = residual_stream(lm, prompt)?;
            layers.iter().map(|&l| Ok(residuals[l].clone().at_pos(-1)?.reshape([-1]))).collect()
        };
        let mut sums: Option<Vec<Tensor<B, 1>>> = None;
        for (positive, negative) in pairs {
            let differences: Vec<Tensor<B, 1>> =
                last(positive)?.into_iter().zip(last(negative)?).map(|(p, n)| p - n).collect();
            sums = Some(match sums {
                None => differences,
                Some(sums) => sums.into_iter().zip(differences).map(|(s, d)| s + d).collect(),
            });
        }
        let count = pairs.len() as f64;
        let directions =
            layers.into_iter().zip(sums.expect("one pair at least")).map(|(l, s)| (l, s / count)).collect();
        Ok(SteeringVector { directions, model_hint: None })
    }

    /// The layers steered, in order.
    pub fn layers(&self) -> Vec<usize> {
        self.directions.keys().copied().collect()
    }

    /// Layer `layer`'s direction, `[hidden]`.
    pub fn direction(&self, layer: usize) -> Option<&Tensor<B, 1>> {
        self.directions.get(&layer)
    }

    /// The model family the vector was made for, if its file says (llama.cpp's
    /// `controlvector.model_hint`).
    pub fn model_hint(&self) -> Option<&str> {
        self.model_hint.as_deref()
    }

    /// Checks the vector against the model's vocabulary: every layer exists, every direction is the residual
    /// stream's width.
    fn check(&self, words: &Vocabulary) -> Result<()> {
        let hidden = words.hidden_size;
        for (&layer, direction) in &self.directions {
            words.layer(layer)?;
            if direction.dims()[0] != hidden {
                return Err(Error::Input {
                    problem: format!(
                        "layer {layer}'s direction is {} wide; the {} residual stream is {hidden}",
                        direction.dims()[0],
                        words.family
                    ),
                });
            }
        }
        Ok(())
    }

    /// Registers the vector, times `apply.scale`, as standing edits in a body on the root envoy.
    fn install(&self, root: &DynEnvoy<'_>, words: &Vocabulary, apply: &Apply, scale: f32) -> Result<()> {
        let steps = apply.steps.clone().unwrap_or(0..u32::MAX);
        for (&layer, direction) in &self.directions {
            let delta = direction.clone() * scale;
            let last_only = apply.last_token_only;
            words.layer(layer)?.edit_steps(root, steps.clone(), move |h: Tensor<B, 3>| {
                if last_only {
                    // The shapes were checked: the last token always exists.
                    h.clone().add_at_pos(-1, delta.clone()).unwrap_or(h)
                } else {
                    let [_, _, hidden] = h.dims();
                    h + delta.clone().reshape([1, 1, hidden])
                }
            })?;
        }
        Ok(())
    }

    /// A generation of `prompt` with the vector added as `apply` says.
    ///
    /// # Errors
    /// [`Error::Input`] for a layer past the model's or a direction of another width; the errors
    /// of generation.
    pub fn generate<M: Standardized<B> + Decoder<B>>(
        &self,
        lm: &LanguageModel<B, M>,
        prompt: impl Into<Prompts>,
        options: GenerateOptions,
        apply: &Apply,
    ) -> Result<Generation> {
        Ok(self.scale_sweep(lm, prompt, options, &[1.0], apply)?.pop().expect("one scale"))
    }

    /// One generation of `prompt` per scale in `scales` (each times `apply.scale`), all in one
    /// batched generation: the prompt is a row per scale, each row steered by its own scale.
    ///
    /// # Errors
    /// As [`generate`](Self::generate); [`Error::Input`] for no scale or one prompt not given.
    pub fn scale_sweep<M: Standardized<B> + Decoder<B>>(
        &self,
        lm: &LanguageModel<B, M>,
        prompt: impl Into<Prompts>,
        options: GenerateOptions,
        scales: &[f32],
        apply: &Apply,
    ) -> Result<Vec<Generation>> {
        let tokens = crate::prompt::one_prompt(lm, prompt.into(), "steered generation's prompt")?;
        if scales.is_empty() {
            return Err(Error::Input { problem: "a scale sweep needs at least one scale".to_owned() });
        }
        let words = lm.model().vocabulary();
        self.check(&words)?;
        let bodies: Vec<_> = scales
            .iter()
            .map(|&s| {
                let words = &words;
                async move |root: DynEnvoy<'_>| -> Result<()> {
                    self.install(&root, words, apply, s * apply.scale)
                }
            })
            .collect();
        let rows = vec![tokens; scales.len()];
        let (_, generation) = lm.generator(Prompts::Ids(rows), options).run_each_dyn(bodies)?;
        Ok(split(generation))
    }
}

/// A generation of several rows as one generation per row.
fn split(generation: Generation) -> Vec<Generation> {
    let Generation { prompt_tokens, tokens, texts, logits, scores } = generation;
    let (mut logits, mut scores) = (logits.into_iter(), scores.into_iter());
    prompt_tokens
        .into_iter()
        .zip(tokens)
        .zip(texts)
        .map(|((prompt, new), text)| Generation {
            prompt_tokens: vec![prompt],
            tokens: vec![new],
            texts: vec![text],
            logits: logits.next().map(|l| vec![l]).unwrap_or_default(),
            scores: scores.next().map(|s| vec![s]).unwrap_or_default(),
        })
        .collect()
}
