//! CLIP's text tower: token and position embeddings, a causal encoder, the final LayerNorm, and the
//! end-of-text position's state as the text's summary.

use burn::nn::{Embedding, LayerNorm};
use burn::prelude::*;
use nnsight::prelude::*;

use super::ClipEncoder;
use crate::causal::CausalMask;

/// `text_model.embeddings`, as Hugging Face's `CLIPTextEmbeddings`: token plus position
/// embeddings (positions `0..tokens`).
#[derive(Module, Debug, Inspectable)]
pub struct ClipTextEmbeddings<B: Backend> {
    /// `[vocab, hidden]`.
    pub token_embedding: Embedding<B>,
    /// `[max_position_embeddings, hidden]`.
    pub position_embedding: Embedding<B>,
}

#[inspect]
impl<B: Backend> ClipTextEmbeddings<B> {
    /// `[batch, tokens, hidden]` of `input_ids` `[batch, tokens]`.
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [batch, tokens] = input_ids.dims();
        let positions = Tensor::<B, 1, Int>::arange(0..tokens as i64, &input_ids.device())
            .reshape([1, tokens])
            .expand([batch, tokens]);
        self.token_embedding.forward(input_ids) + self.position_embedding.forward(positions)
    }
}

/// The text tower (`text_model`), as Hugging Face's `CLIPTextModel`. Its output is the final
/// normalised states `[batch, tokens, hidden]` and the pooled `[batch, hidden]`: the state at each
/// text's end-of-text token.
#[derive(Module, Debug, Inspectable)]
pub struct ClipTextModel<B: Backend> {
    /// Token and position embeddings.
    pub embeddings: ClipTextEmbeddings<B>,
    /// Causal self-attention layers.
    pub encoder: ClipEncoder<B>,
    /// The last LayerNorm.
    pub final_layer_norm: LayerNorm<B>,
    /// The id whose (first) position pools a text; `2` means the largest id's position.
    #[inspect(skip)]
    pub eos_token_id: u32,
}

#[inspect]
impl<B: Backend> ClipTextModel<B> {
    /// `(last_hidden_state, pooled)` of `input_ids` (`[batch, tokens]`, right-padded: 1 in
    /// `attention_mask` for a token, 0 for padding).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
    ) -> (Tensor<B, 3>, Tensor<B, 2>) {
        let [batch, tokens] = input_ids.dims();
        let masked = CausalMask::new(&attention_mask, tokens).masked;
        let pool_at = self.pool_positions(&input_ids);
        let x = self.embeddings.forward(input_ids);
        let x = self.final_layer_norm.forward(self.encoder.forward(x, &masked));
        let hidden = x.dims()[2];
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(pool_at, [batch]), &x.device())
            .reshape([batch, 1, 1])
            .expand([batch, 1, hidden]);
        let pooled = x.clone().gather(1, index).reshape([batch, hidden]);
        (x, pooled)
    }
}

impl<B: Backend> ClipTextModel<B> {
    /// Where each text is pooled, as transformers: the first end-of-text token, or (for configs
    /// whose `eos_token_id` is 2, older checkpoints) the largest id; position 0 when absent.
    pub fn pool_positions(&self, input_ids: &Tensor<B, 2, Int>) -> Vec<i64> {
        let tokens = input_ids.dims()[1];
        let ids: Vec<i64> = input_ids.to_data().iter::<i64>().collect();
        ids.chunks_exact(tokens.max(1))
            .map(|row| {
                let at = if self.eos_token_id == 2 {
                    // torch's argmax: the first of the largest.
                    row.iter()
                        .enumerate()
                        .fold((0, i64::MIN), |best, (i, &id)| if id > best.1 { (i, id) } else { best })
                        .0
                } else {
                    row.iter().position(|&id| id == i64::from(self.eos_token_id)).unwrap_or(0)
                };
                at as i64
            })
            .collect()
    }
}
