//! What a language model is given: prompts as text or token ids, and the left-padded batch made
//! of them.

use burn::prelude::*;
use nnsight::{Error, Result};

/// One prompt or several, as text or as token ids.
///
/// Built with `.into()` from `&str`, `String`, a slice, array or `Vec` of them, token ids
/// (`Vec<u32>`, `&[u32]`, `[u32; N]`, a `[tokens]` Int tensor), or several lists of token ids
/// (`Vec<Vec<u32>>`, `&[Vec<u32>]`, a `[prompts, tokens]` Int tensor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompts {
    /// Texts, tokenized by the model's tokenizer.
    Text(Vec<String>),
    /// Token ids, used as they are.
    Ids(Vec<Vec<u32>>),
}

impl Prompts {
    /// Reports these prompts, as one invoke's input, to the trace observer installed on this
    /// thread (a recorder of the IR), if any.
    pub(crate) fn observe(&self) {
        use nnsight::observe::{ObservedInput, input};
        match self {
            Prompts::Text(texts) if texts.len() == 1 => input(ObservedInput::Text(&texts[0])),
            Prompts::Ids(ids) if ids.len() == 1 => input(ObservedInput::Tokens(&ids[0])),
            _ => input(ObservedInput::Other("several prompts in one invoke")),
        }
    }
}

impl From<&str> for Prompts {
    fn from(prompt: &str) -> Self {
        Prompts::Text(vec![prompt.to_owned()])
    }
}

impl From<String> for Prompts {
    fn from(prompt: String) -> Self {
        Prompts::Text(vec![prompt])
    }
}

impl From<&String> for Prompts {
    fn from(prompt: &String) -> Self {
        Prompts::Text(vec![prompt.clone()])
    }
}

impl From<&[&str]> for Prompts {
    fn from(prompts: &[&str]) -> Self {
        Prompts::Text(prompts.iter().map(|p| (*p).to_owned()).collect())
    }
}

impl From<&[String]> for Prompts {
    fn from(prompts: &[String]) -> Self {
        Prompts::Text(prompts.to_vec())
    }
}

impl<const N: usize> From<[&str; N]> for Prompts {
    fn from(prompts: [&str; N]) -> Self {
        Prompts::from(prompts.as_slice())
    }
}

impl<const N: usize> From<[String; N]> for Prompts {
    fn from(prompts: [String; N]) -> Self {
        Prompts::Text(prompts.to_vec())
    }
}

impl From<Vec<&str>> for Prompts {
    fn from(prompts: Vec<&str>) -> Self {
        Prompts::from(prompts.as_slice())
    }
}

impl From<Vec<String>> for Prompts {
    fn from(prompts: Vec<String>) -> Self {
        Prompts::Text(prompts)
    }
}

impl From<Vec<u32>> for Prompts {
    fn from(ids: Vec<u32>) -> Self {
        Prompts::Ids(vec![ids])
    }
}

impl From<Vec<Vec<u32>>> for Prompts {
    fn from(ids: Vec<Vec<u32>>) -> Self {
        Prompts::Ids(ids)
    }
}

impl From<&[u32]> for Prompts {
    fn from(ids: &[u32]) -> Self {
        Prompts::Ids(vec![ids.to_vec()])
    }
}

impl From<&Vec<u32>> for Prompts {
    fn from(ids: &Vec<u32>) -> Self {
        Prompts::from(ids.as_slice())
    }
}

impl<const N: usize> From<[u32; N]> for Prompts {
    fn from(ids: [u32; N]) -> Self {
        Prompts::Ids(vec![ids.to_vec()])
    }
}

impl From<&[Vec<u32>]> for Prompts {
    fn from(ids: &[Vec<u32>]) -> Self {
        Prompts::Ids(ids.to_vec())
    }
}

/// Token ids `[tokens]`: one prompt. An id that is no `u32` (negative) becomes `u32::MAX`, which
/// the model's vocabulary check rejects.
impl<B: Backend> From<Tensor<B, 1, Int>> for Prompts {
    fn from(ids: Tensor<B, 1, Int>) -> Self {
        Prompts::Ids(vec![tensor_ids(ids.into_data())])
    }
}

/// Token ids `[prompts, tokens]`: one prompt per row (no padding: every row is a whole prompt).
/// Ids as for a `[tokens]` tensor.
impl<B: Backend> From<Tensor<B, 2, Int>> for Prompts {
    fn from(ids: Tensor<B, 2, Int>) -> Self {
        let [rows, tokens] = ids.dims();
        let all = tensor_ids(ids.into_data());
        Prompts::Ids((0..rows).map(|r| all[r * tokens..(r + 1) * tokens].to_vec()).collect())
    }
}

/// The ids of an integer tensor's data, as `u32` (`u32::MAX` for a value that is none).
fn tensor_ids(data: TensorData) -> Vec<u32> {
    data.convert::<i64>().iter::<i64>().map(|id| u32::try_from(id).unwrap_or(u32::MAX)).collect()
}

/// Checks prompts of token ids against a model: at least one prompt, none empty, every id below
/// `vocab`, none longer than `context`.
///
/// # Errors
/// [`Error::Input`] naming the prompt and what is wrong with it.
pub(crate) fn check_prompts(prompts: &[impl AsRef<[u32]>], vocab: usize, context: usize) -> Result<()> {
    let input = |problem: String| Err(Error::Input { problem });
    if prompts.is_empty() {
        return input("no prompt was given".to_owned());
    }
    for (i, prompt) in prompts.iter().enumerate() {
        let prompt = prompt.as_ref();
        if prompt.is_empty() {
            return input(format!("prompt {i} is empty (it has no tokens)"));
        }
        if let Some(id) = prompt.iter().find(|&&id| id as usize >= vocab) {
            return input(format!("token id {id} in prompt {i} is outside the vocabulary (size {vocab})"));
        }
        if prompt.len() > context {
            return input(format!(
                "prompt {i} has {} tokens, the model's context is {context}",
                prompt.len()
            ));
        }
    }
    Ok(())
}

/// Prompts as model input: token ids left-padded to a common length, and the attention mask.
///
/// Left padding keeps every prompt's last token in the last column, and the model derives
/// position ids from the mask, so a prompt gives the same logits alone or in a batch.
#[derive(Debug, Clone)]
pub struct Batch<B: Backend> {
    /// `[prompts, columns]`, padding first.
    pub input_ids: Tensor<B, 2, Int>,
    /// `[prompts, columns]`: 1 for a token, 0 for padding.
    pub attention_mask: Tensor<B, 2, Int>,
    /// Each prompt's token ids, unpadded.
    pub tokens: Vec<Vec<u32>>,
}

impl<B: Backend> Batch<B> {
    /// Left-pads `tokens` with `pad_id` into tensors on `device`.
    pub fn left_padded(tokens: Vec<Vec<u32>>, pad_id: u32, device: &B::Device) -> Self {
        let columns = tokens.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(tokens.len() * columns);
        let mut mask = Vec::with_capacity(tokens.len() * columns);
        for prompt in &tokens {
            let pad = columns - prompt.len();
            ids.extend(
                std::iter::repeat_n(i64::from(pad_id), pad).chain(prompt.iter().map(|&t| i64::from(t))),
            );
            mask.extend(std::iter::repeat_n(0i64, pad).chain(std::iter::repeat_n(1, prompt.len())));
        }
        let shape = [tokens.len(), columns];
        Batch {
            input_ids: Tensor::from_data(TensorData::new(ids, shape), device),
            attention_mask: Tensor::from_data(TensorData::new(mask, shape), device),
            tokens,
        }
    }

    /// Number of prompts.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there is no prompt.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Number of columns (the longest prompt's length).
    pub fn columns(&self) -> usize {
        self.input_ids.dims()[1]
    }

    /// The column of token `token` of prompt `prompt` in the padded tensors.
    pub fn column(&self, prompt: usize, token: usize) -> usize {
        self.columns() - self.tokens[prompt].len() + token
    }
}
