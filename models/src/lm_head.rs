//! The unembedding of a language model: hidden states to vocabulary logits.

use burn::module::Param;
use burn::prelude::*;
use nnsight::prelude::*;

use nnsight_kernels::matmul::{WeightBlocks, matmul_last_transposed_with};

/// The language-model head (`lm_head`): logits = hidden · weightᵀ, with the weight in Hugging
/// Face's layout `[vocab, hidden]`, so a head tied to the token embedding shares its storage.
#[derive(Module, Debug, Inspectable)]
pub struct LmHead<B: Backend> {
    /// `[vocab, hidden]`, as `lm_head.weight` in a Hugging Face checkpoint.
    pub weight: Param<Tensor<B, 2>>,
    /// The weight's GGUF blocks, read by few-rows products while the weight is unchanged (see
    /// [`Projection`](crate::projection::Projection)).
    #[module(skip)]
    blocks: Option<WeightBlocks>,
}

#[inspect]
impl<B: Backend> LmHead<B> {
    /// Logits `[batch, tokens, vocab]` of hidden states `[batch, tokens, hidden]`.
    pub fn forward(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        // One 2-D product against the weight as stored: no copy of the (large) transposed weight.
        matmul_last_transposed_with(hidden, self.weight.val(), self.blocks.as_ref())
    }
}

impl<B: Backend> LmHead<B> {
    /// A head with weight `[vocab, hidden]` (for a tied head: the token embedding's weight).
    pub fn new(weight: Tensor<B, 2>) -> Self {
        LmHead { weight: Param::from_tensor(weight), blocks: None }
    }

    /// Gives the head its weight's GGUF blocks (stored `[out, in]`, as the weight).
    pub fn keep_blocks(&mut self, blocks: WeightBlocks) {
        self.blocks = Some(blocks);
    }

    /// Whether the head has GGUF blocks.
    pub fn has_blocks(&self) -> bool {
        self.blocks.is_some()
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        self.weight.val().dims()[0]
    }
}
