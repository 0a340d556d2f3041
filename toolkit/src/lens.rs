//! The logit lens (nostalgebraist 2020) and the tuned lens (Belrose et al. 2023): what each
//! layer's residual stream would predict if it were the last layer's output — through the
//! model's own final norm and unembedding, after a per-layer translator for the tuned lens —
//! per layer and position, from one trace. Written once for every
//! [`Standardized`] model.
//!
//! ```no_run
//! # use burn::backend::Flex;
//! # use nnsight_models::{LanguageModel, llama::LlamaForCausalLM};
//! # use nnsight_toolkit::lens::LogitLens;
//! # fn main() -> nnsight::Result<()> {
//! # let lm = LanguageModel::<Flex, LlamaForCausalLM<Flex>>::from_pretrained("HuggingFaceTB/SmolLM2-135M", &Default::default())?;
//! let paris = lm.encode(" Paris")?[0];
//! let lens = LogitLens::new(5).track(&[paris]).run(&lm, "The Eiffel Tower is in the city of")?;
//! let last = lens.positions() - 1;
//! for layer in 0..lens.layers() {
//!     let (top, p) = lens.top(layer, last)[0];
//!     println!("layer {layer}: {:?} ({p:.2}), p(Paris) = {:.3}", lm.token_text(top)?, lens.probability(layer, last, paris)?);
//! }
//! lens.heatmap(&lm, "logit lens")?.save("lens.png")?;
//! # Ok(())
//! # }
//! ```

use burn::prelude::*;
use burn::tensor::activation::softmax;
use nnsight::{Error, Result};
use nnsight_models::LanguageModel;
use nnsight_models::Prompts;
use nnsight_models::vocabulary::{Standardized, residual_stream};

use crate::plot::{Heatmap, token_label};

/// A tuned-lens translator for one layer: the residual stream `h` becomes `h + h·Wᵀ + b` before
/// the final norm and the unembedding, as the `tuned-lens` library's layer translators (zero
/// weight and bias give the plain logit lens).
#[derive(Clone, Debug)]
pub struct Translator<B: Backend> {
    /// `W`, `[hidden, hidden]`.
    pub weight: Tensor<B, 2>,
    /// `b`, `[hidden]`.
    pub bias: Tensor<B, 1>,
}

impl<B: Backend> Translator<B> {
    /// `h + h·Wᵀ + b` for `h` `[batch, tokens, hidden]`.
    fn apply(&self, h: Tensor<B, 3>) -> Tensor<B, 3> {
        let [hidden, _] = self.weight.dims();
        let delta = h.clone().matmul(self.weight.clone().transpose().unsqueeze::<3>());
        h + delta + self.bias.clone().reshape([1, 1, hidden])
    }
}

/// What a lens reads: how many top tokens, which tokens' probabilities, and the translators of a
/// tuned lens. [`run`](Self::run) reads it on a prompt.
#[derive(Clone, Debug)]
pub struct LogitLens<B: Backend> {
    k: usize,
    tracked: Vec<u32>,
    translators: Option<Vec<Translator<B>>>,
}

impl<B: Backend> LogitLens<B> {
    /// The plain logit lens, keeping the `k` most probable tokens at every layer and position.
    pub fn new(k: usize) -> Self {
        LogitLens { k, tracked: Vec::new(), translators: None }
    }

    /// Also keeps the probability of each of `tokens` at every layer and position.
    pub fn track(mut self, tokens: &[u32]) -> Self {
        self.tracked.extend_from_slice(tokens);
        self
    }

    /// The tuned lens: `translators[i]` maps layer `i`'s residual stream before decoding (one per
    /// layer; checked against the model by [`run`](Self::run)).
    pub fn tuned(mut self, translators: Vec<Translator<B>>) -> Self {
        self.translators = Some(translators);
        self
    }

    /// The lens of `lm` on one prompt (text or token ids), from one trace.
    ///
    /// # Errors
    /// [`Error::Input`] for `k` of 0 or past the vocabulary, a tracked token outside the
    /// vocabulary, not exactly one prompt, translators that are not one per layer or not
    /// `[hidden, hidden]` / `[hidden]`; the errors of the prompt and of the trace.
    pub fn run<M: Standardized<B>>(
        &self,
        lm: &LanguageModel<B, M>,
        prompt: impl Into<Prompts>,
    ) -> Result<Lens> {
        let vocab = lm.model().vocab_size();
        let input = |problem: String| Err(Error::Input { problem });
        if self.k == 0 || self.k > vocab {
            return input(format!(
                "the lens keeps the top k tokens of a vocabulary of {vocab}; k = {}",
                self.k
            ));
        }
        if let Some(id) = self.tracked.iter().find(|&&id| id as usize >= vocab) {
            return input(format!("tracked token {id} is outside the vocabulary (size {vocab})"));
        }
        let tokens = crate::prompt::one_prompt(lm, prompt.into(), "lens' input")?;
        let residuals = residual_stream(lm, tokens.clone())?;
        if let Some(translators) = &self.translators {
            check_translators(translators, &residuals)?;
        }
        let positions = tokens.len();
        let layers = residuals.len();
        let mut top = Vec::with_capacity(layers);
        let mut tracked = Vec::with_capacity(layers);
        // Layers decoded together, as many as keep a chunk's probabilities near 16 M floats: one
        // product through the unembedding per chunk; the top tokens are then picked on the CPU.
        let chunk = (16_000_000 / (positions * vocab).max(1)).clamp(1, layers.max(1));
        let mut residuals = residuals.into_iter().enumerate();
        loop {
            let batch: Vec<Tensor<B, 3>> = residuals
                .by_ref()
                .take(chunk)
                .map(|(layer, h)| match &self.translators {
                    Some(translators) => translators[layer].apply(h),
                    None => h,
                })
                .collect();
            if batch.is_empty() {
                break;
            }
            let count = batch.len();
            let probs = softmax(lm.model().decode_residual(Tensor::cat(batch, 0)), 2);
            let values: Vec<f32> = probs.into_data().convert::<f32>().to_vec().map_err(data_error)?;
            for layer in values.chunks_exact(positions * vocab).take(count) {
                let mut best = Vec::with_capacity(positions * self.k);
                let mut chosen = Vec::with_capacity(positions * self.tracked.len());
                for row in layer.chunks_exact(vocab) {
                    best.extend(top_k(row, self.k));
                    chosen.extend(self.tracked.iter().map(|&id| row[id as usize]));
                }
                top.push(best);
                tracked.push(chosen);
            }
        }
        Ok(Lens { tokens, k: self.k, top, tracked_ids: self.tracked.clone(), tracked })
    }
}

/// The `k` largest of `row` with their indices, largest first (ties: the lower index first).
fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let before = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
    let mut ids: Vec<u32> = (0..row.len() as u32).collect();
    if k < ids.len() {
        ids.select_nth_unstable_by(k - 1, before);
        ids.truncate(k);
    }
    ids.sort_unstable_by(before);
    ids.into_iter().map(|id| (id, row[id as usize])).collect()
}

fn check_translators<B: Backend>(translators: &[Translator<B>], residuals: &[Tensor<B, 3>]) -> Result<()> {
    let input = |problem: String| Err(Error::Input { problem });
    if translators.len() != residuals.len() {
        return input(format!(
            "the tuned lens has {} translators for {} layers (one per layer)",
            translators.len(),
            residuals.len()
        ));
    }
    let hidden = residuals.first().map_or(0, |h| h.dims()[2]);
    for (i, t) in translators.iter().enumerate() {
        let (w, b) = (t.weight.dims(), t.bias.dims());
        if w != [hidden, hidden] || b != [hidden] {
            return input(format!(
                "translator {i} has weight {w:?} and bias {b:?}; the residual stream is {hidden} wide"
            ));
        }
    }
    Ok(())
}

fn data_error(e: burn::tensor::DataError) -> Error {
    Error::Unsupported { what: format!("reading the lens' probabilities: {e:?}") }
}

/// A lens read on one prompt: per layer and position, the top tokens and the tracked tokens'
/// probabilities. Layer `layers() - 1` is the model's own prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct Lens {
    tokens: Vec<u32>,
    k: usize,
    /// `[layer][position * k + rank]`.
    top: Vec<Vec<(u32, f32)>>,
    tracked_ids: Vec<u32>,
    /// `[layer][position * tracked + index]`.
    tracked: Vec<Vec<f32>>,
}

impl Lens {
    /// The prompt's token ids.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The number of layers read.
    pub fn layers(&self) -> usize {
        self.top.len()
    }

    /// The number of positions (the prompt's tokens).
    pub fn positions(&self) -> usize {
        self.tokens.len()
    }

    /// The `k` most probable next tokens at `layer` and `position`, most probable first, with
    /// their probabilities. Panics past the last layer or position, as indexing does.
    pub fn top(&self, layer: usize, position: usize) -> &[(u32, f32)] {
        &self.top[layer][position * self.k..(position + 1) * self.k]
    }

    /// The probability of tracked token `token` at `layer` and `position`.
    ///
    /// # Errors
    /// [`Error::Input`] for a token that was not tracked, or a layer or position past the last.
    pub fn probability(&self, layer: usize, position: usize, token: u32) -> Result<f32> {
        let index = self.tracked_ids.iter().position(|&t| t == token).ok_or_else(|| Error::Input {
            problem: format!("token {token} was not tracked (tracked: {:?})", self.tracked_ids),
        })?;
        if layer >= self.layers() || position >= self.positions() {
            return Err(Error::Input {
                problem: format!(
                    "layer {layer}, position {position} of a lens of {} layers × {} positions",
                    self.layers(),
                    self.positions()
                ),
            });
        }
        Ok(self.tracked[layer][position * self.tracked_ids.len() + index])
    }

    /// A heatmap of the lens: a row per layer (the last on top, as the stream rises), a column
    /// per prompt token, each cell the top token's text coloured by its probability (0 to 1).
    ///
    /// # Errors
    /// The errors of decoding the tokens' texts.
    pub fn heatmap<B: Backend, M: Standardized<B>>(
        &self,
        lm: &LanguageModel<B, M>,
        title: &str,
    ) -> Result<Heatmap> {
        let rows: Vec<String> = (0..self.layers()).rev().map(|l| format!("layer {l}")).collect();
        let columns = self
            .tokens
            .iter()
            .map(|&id| lm.token_text(id).map(|t| token_label(&t)))
            .collect::<Result<_>>()?;
        let mut values = Vec::with_capacity(self.layers() * self.positions());
        let mut texts = Vec::with_capacity(values.capacity());
        for layer in (0..self.layers()).rev() {
            for position in 0..self.positions() {
                let (id, p) = self.top(layer, position)[0];
                values.push(p);
                texts.push(token_label(&lm.token_text(id)?));
            }
        }
        Heatmap::new(title, rows, columns, values)?
            .axes("input token", "layer")
            .range(0.0, 1.0)?
            .cell_texts(texts)
    }
}

#[cfg(test)]
mod tests {
    use super::top_k;

    #[test]
    fn the_top_tokens_are_the_largest_in_order_ties_by_id() {
        let row = [0.1, 0.4, 0.05, 0.4, 0.05];
        assert_eq!(top_k(&row, 3), [(1, 0.4), (3, 0.4), (0, 0.1)]);
        assert_eq!(top_k(&row, 5).len(), 5);
        assert_eq!(top_k(&row, 1), [(1, 0.4)]);
    }
}
