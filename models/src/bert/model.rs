//! The BERT encoder (`BertModel`): embeddings, encoder layers, optional pooler; and sentence
//! embeddings by mean pooling, as sentence-transformers computes them.

use burn::prelude::*;
use burn::tensor::activation::tanh;
use nnsight::prelude::*;

use super::{BertEmbeddings, BertLayer};
use crate::projection::Projection;

/// A BERT encoder, as Hugging Face's `BertModel`.
///
/// `forward(input_ids, token_type_ids, attention_mask)` (each `[batch, tokens]`, right padding,
/// mask 1 for tokens) returns `(last_hidden_state, pooler_output)`: `[batch, tokens, hidden]` and,
/// with a pooler, `tanh(dense(CLS))` `[batch, hidden]`. Paths as in nnsight:
/// `embeddings.{word_embeddings, position_embeddings, token_type_embeddings, LayerNorm}`,
/// `encoder.layer[i].attention.self.{query, key, value, attn_probs}` (the Rust field is `self_`),
/// `encoder.layer[i].attention.output.{dense, LayerNorm}`, `encoder.layer[i].intermediate.dense`,
/// `encoder.layer[i].output.{dense, LayerNorm}`, `pooler.dense`.
#[derive(Module, Debug, Inspectable)]
pub struct BertModel<B: Backend> {
    /// Word, token-type and position embeddings.
    pub embeddings: BertEmbeddings<B>,
    /// The encoder layers.
    pub encoder: BertEncoder<B>,
    /// The pooler, when the checkpoint has one.
    pub pooler: Option<BertPooler<B>>,
    /// Rows of `position_embeddings`: the longest input.
    #[inspect(skip)]
    pub max_positions: usize,
}

#[inspect]
impl<B: Backend> BertModel<B> {
    /// `(last_hidden_state, pooler_output)`; see the type's docs.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        token_type_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
    ) -> (Tensor<B, 3>, Option<Tensor<B, 2>>) {
        let [batch, tokens] = attention_mask.dims();
        let masked = attention_mask.equal_elem(0).reshape([batch, 1, 1, tokens]);
        let x = self.embeddings.forward(input_ids, token_type_ids);
        let sequence = self.encoder.forward(x, &masked);
        let pooled = self.pooler.as_ref().map(|pooler| pooler.forward(sequence.clone()));
        (sequence, pooled)
    }
}

/// `encoder`, as Hugging Face's `BertEncoder`.
#[derive(Module, Debug, Inspectable)]
pub struct BertEncoder<B: Backend> {
    /// The layers (`encoder.layer[i]`).
    pub layer: Vec<BertLayer<B>>,
}

#[inspect]
impl<B: Backend> BertEncoder<B> {
    /// Runs every layer; `masked` marks the padding keys `[batch, 1, 1, tokens]`.
    pub fn forward(&self, mut x: Tensor<B, 3>, masked: &Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        for layer in &self.layer {
            x = layer.forward(x, masked);
        }
        x
    }
}

/// `pooler`, as Hugging Face's `BertPooler`: `tanh(dense(CLS))`.
#[derive(Module, Debug, Inspectable)]
pub struct BertPooler<B: Backend> {
    /// `hidden → hidden`.
    pub dense: Projection<B>,
}

#[inspect]
impl<B: Backend> BertPooler<B> {
    /// `[batch, hidden]` from the first token of `hidden`.
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 2> {
        let [batch, _, width] = hidden.dims();
        tanh(self.dense.forward(hidden.narrow(1, 0, 1).reshape([batch, width])))
    }
}

/// Mean pooling as sentence-transformers' `Pooling(pooling_mode_mean_tokens=True)`: the average
/// of the token vectors of `hidden` (`[batch, tokens, width]`) where `attention_mask` is 1, the
/// count clamped below at 1e-9: `[batch, width]`.
pub fn mean_pool<B: Backend>(hidden: Tensor<B, 3>, attention_mask: Tensor<B, 2, Int>) -> Tensor<B, 2> {
    let [batch, tokens, width] = hidden.dims();
    let mask = attention_mask.float().reshape([batch, tokens, 1]);
    let summed = (hidden * mask.clone()).sum_dim(1).reshape([batch, width]);
    let counts = mask.sum_dim(1).reshape([batch, 1]).clamp_min(1e-9);
    summed / counts
}

/// Each row of `x` divided by its Euclidean norm (at least 1e-12), as sentence-transformers'
/// `Normalize` (`torch.nn.functional.normalize`).
pub fn normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norms = x.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norms
}
