//! Texts to the text tower's inputs: token ids closed by the end-of-text token, right-padded
//! into one batch with its attention mask — what `CLIPProcessor(text=.., padding=True)` gives.

use burn::prelude::*;
use tokenizers::Tokenizer;

use nnsight::{Error, Result};

use super::ClipTextConfig;

/// `(input_ids, attention_mask)` `[texts, longest]` of `texts` under `tokenizer`: each text's ids
/// (with the special tokens the tokenizer adds — OpenAI's CLIP tokenizer adds
/// `<|startoftext|>` and `<|endoftext|>`), the end-of-text id appended when the tokenizer did
/// not, right-padded with `pad_token_id` (else the end-of-text id), the mask 1 on the real tokens.
///
/// # Errors
/// [`Error::Input`] for no text, a text longer than `max_position_embeddings` tokens, or an id
/// outside the vocabulary; [`Error::Tokenizer`] when the tokenizer fails.
pub fn encode_texts<B: Backend>(
    tokenizer: &Tokenizer,
    texts: &[&str],
    config: &ClipTextConfig,
    device: &B::Device,
) -> Result<(Tensor<B, 2, Int>, Tensor<B, 2, Int>)> {
    if texts.is_empty() {
        return Err(Error::Input { problem: "no text to encode".to_owned() });
    }
    let eos = config.eos_token_id;
    let mut rows = Vec::with_capacity(texts.len());
    for text in texts {
        let encoding = tokenizer
            .encode(*text, true)
            .map_err(|e| Error::Tokenizer { problem: format!("cannot encode {text:?}: {e}") })?;
        let mut ids = encoding.get_ids().to_vec();
        if ids.last() != Some(&eos) && eos != 2 {
            ids.push(eos);
        }
        if ids.len() > config.max_position_embeddings {
            return Err(Error::Input {
                problem: format!(
                    "{text:?} is {} tokens; the text tower takes at most {}",
                    ids.len(),
                    config.max_position_embeddings
                ),
            });
        }
        if let Some(id) = ids.iter().find(|&&id| id as usize >= config.vocab_size) {
            return Err(Error::Input {
                problem: format!(
                    "{text:?} has token id {id}, outside the vocabulary (0..{})",
                    config.vocab_size
                ),
            });
        }
        rows.push(ids);
    }
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let pad = i64::from(config.pad_token_id.unwrap_or(eos));
    let (mut ids, mut mask) =
        (Vec::with_capacity(rows.len() * width), Vec::with_capacity(rows.len() * width));
    for row in &rows {
        ids.extend(row.iter().map(|&id| i64::from(id)).chain(std::iter::repeat_n(pad, width - row.len())));
        mask.extend(std::iter::repeat_n(1i64, row.len()).chain(std::iter::repeat_n(0, width - row.len())));
    }
    let shape = [rows.len(), width];
    Ok((
        Tensor::from_data(TensorData::new(ids, shape), device),
        Tensor::from_data(TensorData::new(mask, shape), device),
    ))
}
