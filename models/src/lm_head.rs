//! The unembedding of a language model: hidden states to vocabulary logits.

use burn::module::Param;
use burn::prelude::*;
use nnsight::prelude::*;

/// The language-model head (`lm_head`): logits = hidden · weightᵀ, with the weight in Hugging
/// Face's layout `[vocab, hidden]`, so a head tied to the token embedding shares its storage.
#[derive(Module, Debug, Inspectable)]
pub struct LmHead<B: Backend> {
    /// `[vocab, hidden]`, as `lm_head.weight` in a Hugging Face checkpoint.
    pub weight: Param<Tensor<B, 2>>,
}

#[inspect]
impl<B: Backend> LmHead<B> {
    /// Logits `[batch, tokens, vocab]` of hidden states `[batch, tokens, hidden]`.
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, tokens, width] = hidden.dims();
        // One 2-D product against the transposed view: no copy of the (large) weight.
        let logits = hidden.reshape([batch * tokens, width]).matmul(self.weight.val().transpose());
        let vocab = logits.dims()[1];
        logits.reshape([batch, tokens, vocab])
    }
}

impl<B: Backend> LmHead<B> {
    /// A head with weight `[vocab, hidden]` (for a tied head: the token embedding's weight).
    pub fn new(weight: Tensor<B, 2>) -> Self {
        LmHead { weight: Param::from_tensor(weight) }
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.weight.val().dims()[0]
    }
}
