//! [`LanguageModel`]: a causal language model with its tokenizer and device, traced on text.

use std::fmt;
use std::marker::PhantomData;

use burn::prelude::*;
use tokenizers::Tokenizer;

use nnsight::inspect::Forward;
use nnsight::{Edited, Error, Inspectable, Result, TraceExt};

use crate::gguf::GgufFile;
use crate::hub::ModelFiles;
use crate::prompts::{Batch, Prompts, check_prompts};

/// A causal language model: `forward(input_ids, attention_mask) -> logits [batch, tokens, vocab]`.
pub trait CausalLm<B: Backend>:
    Inspectable + Forward<Inputs = (Tensor<B, 2, Int>, Tensor<B, 2, Int>), Output = Tensor<B, 3>>
{
    /// Vocabulary size: token ids must be below it.
    fn vocab_size(&self) -> usize;
    /// Longest sequence the model accepts.
    fn max_positions(&self) -> usize;

    /// How many of the model's weights its modules also keep as GGUF blocks (0 by default).
    fn weights_in_blocks(&self) -> usize {
        0
    }
}

/// A model that loads from Hugging Face files.
pub trait Pretrained<B: Backend>: CausalLm<B> + Sized {
    /// Loads the model from `config.json` and safetensors weights; returns it and the id of the
    /// token used to pad batches (the checkpoint's pad token, or its end-of-text token).
    fn from_files(files: &ModelFiles, device: &B::Device) -> Result<(Self, Option<u32>)>;
}

/// A model that loads from one llama.cpp GGUF file (weights and configuration in the file; the
/// tokenizer is built from its metadata by [`LanguageModel::from_gguf`]).
pub trait FromGguf<B: Backend>: CausalLm<B> + Sized {
    /// The model of `file`, the id of the token used to pad batches, and the end-of-sequence ids.
    ///
    /// # Errors
    /// [`Error::Load`] for a file of another architecture or unreadable metadata;
    /// [`Error::MissingWeight`] / [`Error::BadWeight`] naming a tensor.
    fn from_gguf_file(file: &GgufFile, device: &B::Device) -> Result<(Self, Option<u32>, Vec<u32>)>;
}

/// A language model with its tokenizer and device, the way nnsight's `LanguageModel` wraps a
/// transformers model: trace it on text, a batch of texts, or token ids.
///
/// ```no_run
/// use burn::backend::Flex;
/// use nnsight_models::gpt2::Gpt2LMHeadModel;
/// use nnsight_models::LanguageModel;
///
/// # fn main() -> nnsight::Result<()> {
/// let lm = LanguageModel::<Flex, Gpt2LMHeadModel<Flex>>::from_pretrained("openai-community/gpt2", &Default::default())?;
/// let hidden = lm.trace("The Eiffel Tower is in the city of").run(async |m| {
///     m.transformer.h[5].output().await
/// })?;
/// # Ok(())
/// # }
/// ```
pub struct LanguageModel<B: Backend, M> {
    model: M,
    tokenizer: Tokenizer,
    pad_id: u32,
    eos_ids: Vec<u32>,
    device: B::Device,
}

impl<B: Backend, M> fmt::Debug for LanguageModel<B, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LanguageModel").field("pad_id", &self.pad_id).finish_non_exhaustive()
    }
}

impl<B: Backend, M: Pretrained<B>> LanguageModel<B, M> {
    /// Loads model and tokenizer from a Hub repository id (`openai-community/gpt2`, from the
    /// hf-hub cache or downloaded) or a local directory.
    pub fn from_pretrained(id: &str, device: &B::Device) -> Result<Self> {
        Self::from_files(&ModelFiles::resolve(id)?, device)
    }

    /// Loads model and tokenizer from files already on disk.
    pub fn from_files(files: &ModelFiles, device: &B::Device) -> Result<Self> {
        let path = files.tokenizer.as_ref().ok_or_else(|| Error::Tokenizer {
            problem: format!("`{}` has no tokenizer.json", files.source),
        })?;
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer { problem: format!("cannot read {}: {e}", path.display()) })?;
        let (model, pad_id) = M::from_files(files, device)?;
        let pad_id = pad_id.ok_or_else(|| Error::Tokenizer {
            problem: format!("`{}` names no pad or end-of-text token to pad batches with", files.source),
        })?;
        let eos_ids = eos_ids(files)?;
        Ok(LanguageModel::new(model, tokenizer, pad_id, device.clone()).with_eos(eos_ids))
    }
}

impl<B: Backend, M: FromGguf<B>> LanguageModel<B, M> {
    /// A language model from one GGUF file: weights, configuration and tokenizer (SmolLM2 and
    /// other Llamas, Gemma 3; see each family's `FromGguf` implementation for what it keeps of
    /// the quantized blocks).
    ///
    /// # Errors
    /// As [`FromGguf::from_gguf_file`] and [`GgufFile::tokenizer`]; [`Error::Tokenizer`] when the
    /// file names no token to pad batches with.
    pub fn from_gguf(path: impl AsRef<std::path::Path>, device: &B::Device) -> Result<Self> {
        let file = GgufFile::open(path)?;
        let tokenizer = file.tokenizer()?;
        let (model, pad, eos) = M::from_gguf_file(&file, device)?;
        let pad = pad.ok_or_else(|| Error::Tokenizer {
            problem: format!(
                "{} names no pad or end-of-sequence token to pad batches with",
                file.path().display()
            ),
        })?;
        Ok(LanguageModel::new(model, tokenizer, pad, device.clone()).with_eos(eos))
    }
}

/// The end-of-sequence ids named by `config.json` (`eos_token_id`: one id or a list).
fn eos_ids(files: &ModelFiles) -> Result<Vec<u32>> {
    let text = std::fs::read_to_string(&files.config).map_err(|e| Error::Load {
        source_name: files.config.display().to_string(),
        problem: format!("cannot read it: {e}"),
    })?;
    let config: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Load {
        source_name: files.config.display().to_string(),
        problem: format!("not valid JSON: {e}"),
    })?;
    let ids = match &config["eos_token_id"] {
        serde_json::Value::Number(n) => n.as_u64().into_iter().collect(),
        serde_json::Value::Array(list) => list.iter().filter_map(serde_json::Value::as_u64).collect(),
        _ => Vec::new(),
    };
    Ok(ids.into_iter().filter_map(|id| u32::try_from(id).ok()).collect())
}

impl<B: Backend, M: CausalLm<B>> LanguageModel<B, M> {
    /// Wraps a model already built; `pad_id` is the token id used for (left) padding.
    pub fn new(model: M, tokenizer: Tokenizer, pad_id: u32, device: B::Device) -> Self {
        LanguageModel { model, tokenizer, pad_id, eos_ids: Vec::new(), device }
    }

    /// How many of the model's weights are read from their GGUF blocks in products with few rows
    /// (decoding steps, short prompts) — 0 unless the model was loaded from a GGUF file with
    /// Q4_0 / Q4_1 / Q8_0 tensors on the `Flex` backend. The blocks hold the same values as the
    /// `f32` weights; a weight changed after loading is read from its `f32` values again.
    pub fn kept_blocks(&self) -> usize {
        self.model.weights_in_blocks()
    }

    /// The same model with `ids` as its end-of-sequence tokens (where generation stops).
    pub fn with_eos(mut self, ids: Vec<u32>) -> Self {
        self.eos_ids = ids;
        self
    }

    /// The end-of-sequence token ids (from `config.json`'s `eos_token_id` when loaded).
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The burn model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The burn model, mutably (e.g. to edit weights).
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }

    /// The model, without tokenizer.
    pub fn into_model(self) -> M {
        self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The device the model runs on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The token id used for padding.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Token ids of `text` (with the special tokens the tokenizer adds, as transformers does).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer
            .encode(text, true)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|e| Error::Tokenizer { problem: format!("cannot encode {text:?}: {e}") })
    }

    /// The text of `ids`.
    ///
    /// # Errors
    /// [`Error::Input`] for an id outside the model's vocabulary (the tokenizer would give `""`);
    /// [`Error::Tokenizer`] when the tokenizer fails.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let vocab = self.model.vocab_size();
        if let Some(id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::Input {
                problem: format!("cannot decode token id {id}: it is outside the vocabulary (size {vocab})"),
            });
        }
        self.tokenizer
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer { problem: format!("cannot decode {ids:?}: {e}") })
    }

    /// The text of each id on its own (e.g. `" Paris"`), for showing top-k tokens.
    pub fn token_text(&self, id: u32) -> Result<String> {
        self.decode(&[id])
    }

    /// The token ids of each prompt (text is encoded, ids are kept as they are).
    pub fn tokenize(&self, prompts: Prompts) -> Result<Vec<Vec<u32>>> {
        match prompts {
            Prompts::Text(texts) => texts.iter().map(|t| self.encode(t)).collect(),
            Prompts::Ids(ids) => Ok(ids),
        }
    }

    /// Tokenizes `prompts` and left-pads them into one batch; checks that no prompt is empty,
    /// every id is in the vocabulary and no prompt is longer than the model's context.
    pub fn batch(&self, prompts: impl Into<Prompts>) -> Result<Batch<B>> {
        let tokens = self.tokenize(prompts.into())?;
        check_prompts(&tokens, self.model.vocab_size(), self.model.max_positions())?;
        Ok(Batch::left_padded(tokens, self.pad_id, &self.device))
    }

    /// Logits `[prompts, columns, vocab]` of `prompts`, without a trace.
    pub fn forward(&self, prompts: impl Into<Prompts>) -> Result<Tensor<B, 3>> {
        let batch = self.batch(prompts)?;
        Ok(self.model.forward_inputs((batch.input_ids, batch.attention_mask)))
    }

    /// A trace of the model on `prompts`; run it with [`LmTracer::run`] (or use `trace!`).
    pub fn trace(&self, prompts: impl Into<Prompts>) -> LmTracer<'_, B, M> {
        let prompts = prompts.into();
        prompts.observe();
        LmTracer {
            tracer: self.batch(prompts).map(|b| self.model.trace((b.input_ids, b.attention_mask))),
            _backend: PhantomData,
        }
    }

    /// A handle on this model that applies `body` first on every later trace (nnsight's
    /// `model.edit()`): the model is unchanged and the handle shares its weights and tokenizer.
    ///
    /// ```no_run
    /// # use burn::backend::Flex;
    /// # use burn::prelude::*;
    /// # use nnsight_models::{LanguageModel, gpt2::Gpt2LMHeadModel};
    /// # fn main() -> nnsight::Result<()> {
    /// # let lm = LanguageModel::<Flex, Gpt2LMHeadModel<Flex>>::from_pretrained("openai-community/gpt2", &Default::default())?;
    /// // Ablate block 3's MLP on every trace of `ablated`.
    /// let ablated = lm.edit(async |m| m.transformer.h[3].mlp.output().edit(|h| h.zeros_like()).await);
    /// let logits = ablated.trace("The Eiffel Tower is in").run(async |m| m.output().await)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn edit<'m, C>(&'m self, body: C) -> EditedLm<'m, B, M>
    where
        C: for<'e, 't> AsyncFn(&'e M::Envoy<'t>) -> Result<()> + 'm,
    {
        EditedLm { lm: self, edited: self.model.edit(body) }
    }
}

/// A trace of a [`LanguageModel`] on tokenized prompts, waiting for its body.
#[must_use = "a trace runs only when `run` is called"]
pub struct LmTracer<'m, B: Backend, M: CausalLm<B>> {
    tracer: Result<nnsight::Tracer<'m, M>>,
    _backend: PhantomData<fn() -> B>,
}

impl<B: Backend, M: CausalLm<B>> fmt::Debug for LmTracer<'_, B, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LmTracer").finish_non_exhaustive()
    }
}

impl<B: Backend, M: CausalLm<B>> LmTracer<'_, B, M> {
    /// Runs the forward pass with `body` interleaved (see `nnsight::Tracer::run`); the model's
    /// output is the logits `[prompts, columns, vocab]`, prompts left-padded.
    pub fn run<R>(self, body: impl for<'e, 't> AsyncFnOnce(&'e M::Envoy<'t>) -> Result<R>) -> Result<R> {
        self.tracer?.run(body)
    }
}

/// A [`LanguageModel`] with persistent edits, made by [`LanguageModel::edit`]: every trace of it
/// runs the edits first, on the whole batch.
pub struct EditedLm<'m, B: Backend, M: CausalLm<B>> {
    lm: &'m LanguageModel<B, M>,
    edited: Edited<'m, M>,
}

impl<B: Backend, M: CausalLm<B>> fmt::Debug for EditedLm<'_, B, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EditedLm").field("edits", &self.edited.edits()).finish_non_exhaustive()
    }
}

impl<'m, B: Backend, M: CausalLm<B>> EditedLm<'m, B, M> {
    /// The same handle with one more edit, applied after the ones already stored.
    pub fn edit<C>(self, body: C) -> Self
    where
        C: for<'e, 't> AsyncFn(&'e M::Envoy<'t>) -> Result<()> + 'm,
    {
        EditedLm { lm: self.lm, edited: self.edited.edit(body) }
    }

    /// Removes the most recent edit; `false` if there was none.
    pub fn undo(&mut self) -> bool {
        self.edited.undo()
    }

    /// The number of stored edits.
    pub fn edits(&self) -> usize {
        self.edited.edits()
    }

    /// The unedited language model.
    pub fn unedited(&self) -> &'m LanguageModel<B, M> {
        self.lm
    }

    /// A trace on `prompts`, the edits applied first (see [`LanguageModel::trace`]).
    pub fn trace(&self, prompts: impl Into<Prompts>) -> LmTracer<'m, B, M> {
        let prompts = prompts.into();
        prompts.observe();
        let edited = &self.edited;
        LmTracer {
            tracer: self.lm.batch(prompts).map(|b| edited.trace((b.input_ids, b.attention_mask))),
            _backend: PhantomData,
        }
    }

    /// The edits, for the invokes of [`EditedLm::tracer`].
    pub(crate) fn edited(&self) -> &Edited<'m, M> {
        &self.edited
    }
}
