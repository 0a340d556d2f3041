//! BERT's embeddings: word + token type + position, normalised.

use burn::nn::{Embedding, LayerNorm};
use burn::prelude::*;
use nnsight::prelude::*;

/// `embeddings`, as Hugging Face's `BertEmbeddings`.
#[derive(Module, Debug, Inspectable)]
pub struct BertEmbeddings<B: Backend> {
    /// Token embedding `[vocab, hidden]`.
    pub word_embeddings: Embedding<B>,
    /// Absolute position embedding `[max_positions, hidden]`.
    pub position_embeddings: Embedding<B>,
    /// Token-type (segment) embedding `[type_vocab, hidden]`.
    pub token_type_embeddings: Embedding<B>,
    /// The LayerNorm of the sum (`LayerNorm` in the checkpoint and the path).
    #[inspect(rename = "LayerNorm")]
    pub layer_norm: LayerNorm<B>,
}

#[inspect]
impl<B: Backend> BertEmbeddings<B> {
    /// `[batch, tokens, hidden]` of `input_ids` and `token_type_ids` (`[batch, tokens]`), tokens at
    /// positions `0..tokens` (right padding).
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>, token_type_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [batch, tokens] = input_ids.dims();
        let positions = Tensor::<B, 1, Int>::arange(0..tokens as i64, &input_ids.device())
            .reshape([1, tokens])
            .expand([batch, tokens]);
        let words = self.word_embeddings.forward(input_ids);
        let embedded = words + self.token_type_embeddings.forward(token_type_ids);
        let embedded = embedded + self.position_embeddings.forward(positions);
        self.layer_norm.forward(embedded)
    }
}
