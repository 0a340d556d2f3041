//! [`SentenceEncoder`]: text in, sentence embeddings out, as sentence-transformers computes them
//! with a BERT (`modules.json`: Transformer → mean Pooling → optional Normalize).

use std::path::Path;

use burn::prelude::*;
use tokenizers::Tokenizer;

use nnsight::{Error, Result};

use super::{BertModel, mean_pool, normalize};
use crate::hub::ModelFiles;

/// A BERT with its tokenizer and sentence-transformers' pooling: `embed(texts)` gives one vector
/// per text; `batch(texts)` the model's inputs, to trace the encoder on them.
pub struct SentenceEncoder<B: Backend> {
    model: BertModel<B>,
    tokenizer: Tokenizer,
    pad_id: u32,
    normalize: bool,
    device: B::Device,
}

impl<B: Backend> std::fmt::Debug for SentenceEncoder<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEncoder").field("normalize", &self.normalize).finish_non_exhaustive()
    }
}

/// Tokenized texts, right-padded into one batch: the encoder's three inputs.
#[derive(Debug, Clone)]
pub struct SentenceBatch<B: Backend> {
    /// `[batch, tokens]` token ids (`[CLS] … [SEP]`, then padding).
    pub input_ids: Tensor<B, 2, Int>,
    /// `[batch, tokens]` segment ids.
    pub token_type_ids: Tensor<B, 2, Int>,
    /// `[batch, tokens]`: 1 for tokens, 0 for padding.
    pub attention_mask: Tensor<B, 2, Int>,
}

impl<B: Backend> SentenceBatch<B> {
    /// The three inputs as the tuple a trace of [`BertModel`] takes.
    pub fn inputs(&self) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
        (self.input_ids.clone(), self.token_type_ids.clone(), self.attention_mask.clone())
    }
}

impl<B: Backend> SentenceEncoder<B> {
    /// Loads a sentence-transformers model directory (`config.json`, `model.safetensors`,
    /// `tokenizer.json`, `modules.json`, `1_Pooling/config.json`), e.g. all-MiniLM-L6-v2.
    ///
    /// # Errors
    /// [`Error::Load`] for missing or invalid files, or a pooling other than mean pooling; the
    /// model's loading errors.
    pub fn from_dir(dir: &Path, device: &B::Device) -> Result<Self> {
        let files = ModelFiles::from_dir(dir)?;
        let load_error =
            |path: &Path, problem: String| Error::Load { source_name: path.display().to_string(), problem };
        let json = |path: &Path| -> Result<serde_json::Value> {
            let text = std::fs::read_to_string(path)
                .map_err(|e| load_error(path, format!("cannot read it: {e}")))?;
            serde_json::from_str(&text).map_err(|e| load_error(path, format!("not valid JSON: {e}")))
        };
        let pooling = dir.join("1_Pooling/config.json");
        if pooling.is_file() && json(&pooling)?["pooling_mode_mean_tokens"] != serde_json::Value::Bool(true) {
            return Err(load_error(
                &pooling,
                "only mean pooling (pooling_mode_mean_tokens) is supported".to_owned(),
            ));
        }
        let modules = dir.join("modules.json");
        let normalize = modules.is_file()
            && json(&modules)?.as_array().is_some_and(|list| {
                list.iter().any(|m| m["type"].as_str().is_some_and(|t| t.ends_with("models.Normalize")))
            });
        let path = files.tokenizer.as_ref().ok_or_else(|| Error::Tokenizer {
            problem: format!("`{}` has no tokenizer.json", files.source),
        })?;
        let mut tokenizer = Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer { problem: format!("cannot read {}: {e}", path.display()) })?;
        // Padding and truncation are done here, per batch, so that nothing is cut silently.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| Error::Tokenizer { problem: format!("cannot turn truncation off: {e}") })?;
        let (model, config) = BertModel::from_files(&files, device)?;
        let tokens = tokenizer.get_vocab_size(true);
        if tokens > config.vocab_size {
            return Err(load_error(
                path,
                format!("the tokenizer has {tokens} tokens, the model's vocabulary {}", config.vocab_size),
            ));
        }
        let pad_id = config.pad_token_id.unwrap_or(0);
        if pad_id as usize >= config.vocab_size {
            return Err(load_error(
                &files.config,
                format!("pad_token_id {pad_id} is outside the vocabulary"),
            ));
        }
        Ok(SentenceEncoder { model, tokenizer, pad_id, normalize, device: device.clone() })
    }

    /// The encoder.
    pub fn model(&self) -> &BertModel<B> {
        &self.model
    }

    /// The tokenizer (without padding or truncation: [`batch`](Self::batch) pads).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Tokenizes `texts` (with `[CLS]` and `[SEP]`) and right-pads them into one batch.
    ///
    /// # Errors
    /// [`Error::Input`] for no text or a text longer than the model's positions;
    /// [`Error::Tokenizer`] when the tokenizer fails.
    pub fn batch(&self, texts: &[&str]) -> Result<SentenceBatch<B>> {
        if texts.is_empty() {
            return Err(Error::Input { problem: "no text to encode".to_owned() });
        }
        let encodings = texts
            .iter()
            .map(|t| self.tokenizer.encode(*t, true))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Tokenizer { problem: format!("cannot tokenize: {e}") })?;
        let width = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        if let Some(i) = encodings.iter().position(|e| e.get_ids().len() > self.model.max_positions) {
            return Err(Error::Input {
                problem: format!(
                    "text {i} has {} tokens; the model takes at most {}",
                    encodings[i].get_ids().len(),
                    self.model.max_positions
                ),
            });
        }
        let (mut ids, mut types, mut mask) = (Vec::new(), Vec::new(), Vec::new());
        for e in &encodings {
            let pad = width - e.get_ids().len();
            ids.extend(
                e.get_ids()
                    .iter()
                    .map(|&v| i64::from(v))
                    .chain(std::iter::repeat_n(i64::from(self.pad_id), pad)),
            );
            types.extend(e.get_type_ids().iter().map(|&v| i64::from(v)).chain(std::iter::repeat_n(0, pad)));
            mask.extend(std::iter::repeat_n(1i64, e.get_ids().len()).chain(std::iter::repeat_n(0, pad)));
        }
        let tensor =
            |values: Vec<i64>| Tensor::from_data(TensorData::new(values, [texts.len(), width]), &self.device);
        Ok(SentenceBatch {
            input_ids: tensor(ids),
            token_type_ids: tensor(types),
            attention_mask: tensor(mask),
        })
    }

    /// The sentence embeddings `[texts, hidden]`: mean of the token vectors, normalised when the
    /// model's `modules.json` ends in `Normalize`.
    ///
    /// # Errors
    /// As [`batch`](Self::batch).
    pub fn embed(&self, texts: &[&str]) -> Result<Tensor<B, 2>> {
        let batch = self.batch(texts)?;
        let (hidden, _) =
            self.model.forward(batch.input_ids, batch.token_type_ids, batch.attention_mask.clone());
        Ok(self.pool(hidden, batch.attention_mask))
    }

    /// What [`embed`](Self::embed) does to the encoder's last hidden state: mean pooling, then
    /// the normalisation if the model has one.
    pub fn pool(&self, hidden: Tensor<B, 3>, attention_mask: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        let pooled = mean_pool(hidden, attention_mask);
        if self.normalize { normalize(pooled) } else { pooled }
    }
}
