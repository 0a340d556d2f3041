//! Gemma's token embedding, scaled by `√hidden_size`.

use std::any::Any;

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::module::embedding;
use nnsight::ModuleEnvoy;
use nnsight::inspect::{Inspectable, NodeId, Signature, TraceState, check_token_ids};
use nnsight::prelude::*;

/// The token embedding (`model.embed_tokens`), as Hugging Face's `Gemma3TextScaledWordEmbedding`:
/// the looked-up rows multiplied by `embed_scale` (`√hidden_size` in `f32`). Its output, the
/// start of the residual stream, is the scaled embedding.
#[derive(Module, Debug)]
pub struct Gemma3ScaledWordEmbedding<B: Backend> {
    /// `[vocab, hidden]`, as `model.embed_tokens.weight` (also the tied head's weight).
    pub weight: Param<Tensor<B, 2>>,
    /// The factor applied to every row.
    pub embed_scale: f32,
}

#[inspect]
impl<B: Backend> Gemma3ScaledWordEmbedding<B> {
    /// The rows of `input_ids` (`[batch, tokens]`), scaled: `[batch, tokens, hidden]`.
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        embedding(self.weight.val(), input_ids).mul_scalar(self.embed_scale)
    }
}

impl<B: Backend> Gemma3ScaledWordEmbedding<B> {
    /// An embedding holding `weight` (`[vocab, hidden]`), scaled by `embed_scale`.
    pub fn new(weight: Tensor<B, 2>, embed_scale: f32) -> Self {
        Gemma3ScaledWordEmbedding { weight: Param::from_tensor(weight), embed_scale }
    }

    /// Number of rows (the vocabulary size).
    pub fn num_embeddings(&self) -> usize {
        self.weight.val().dims()[0]
    }
}

impl<B: Backend> Inspectable for Gemma3ScaledWordEmbedding<B> {
    type Envoy<'t> = ModuleEnvoy<'t, Gemma3ScaledWordEmbedding<B>>;

    fn envoy(state: &TraceState, node: NodeId) -> Self::Envoy<'_> {
        ModuleEnvoy::new(state, node)
    }

    /// Token ids outside `0..vocab` (written by a body) would panic in the lookup.
    fn check_inputs(&self, inputs: &dyn Any) -> Result<(), String> {
        let Some((ids,)) = inputs.downcast_ref::<<Self as Signature>::Inputs>() else { return Ok(()) };
        check_token_ids(ids, self.num_embeddings())
    }
}
