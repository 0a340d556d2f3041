//! The Mamba language model: `backbone` (embeddings, Mamba blocks, final norm) and `lm_head`.

use burn::nn::{Embedding, RmsNorm};
use burn::prelude::*;
use nnsight::prelude::*;

use super::block::MambaBlock;
use super::cache::MambaCache;
use crate::generation::Decoder;
use crate::language_model::CausalLm;
use crate::lm_head::LmHead;

/// A Mamba model with its language-model head, module for module as Hugging Face's
/// `MambaForCausalLM`.
///
/// `forward(input_ids, attention_mask)` returns the logits `[batch, tokens, vocab]`. Paths as in
/// nnsight: `backbone.layers[i]` (output = residual stream), `backbone.layers[i].mixer.in_proj`,
/// `.conv1d`, `.x_proj`, `.dt_proj`, `.out_proj`, `.ssm_states` (the SSM state after every
/// token), `.gated_output`; `backbone.norm_f`, `lm_head`.
#[derive(Module, Debug, Inspectable)]
pub struct MambaForCausalLM<B: Backend> {
    /// Embeddings, blocks, final RMSNorm.
    pub backbone: MambaModel<B>,
    /// Unembedding; shares its weight with `backbone.embeddings` when `tie_word_embeddings`.
    pub lm_head: LmHead<B>,
}

#[inspect]
impl<B: Backend> MambaForCausalLM<B> {
    /// Logits `[batch, tokens, vocab]` of `input_ids` (`[batch, tokens]`); `attention_mask` has the
    /// same shape, 1 for tokens and 0 for (left) padding.
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>, attention_mask: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let mut cache = MambaCache::disabled(self.backbone.layers.len());
        self.forward_cached(input_ids, attention_mask, &mut cache)
    }

    /// Like [`forward`](Self::forward), continuing from (and updating) `cache`: `input_ids` are
    /// the new tokens, `attention_mask` covers the cached and the new ones.
    pub fn forward_cached(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        cache: &mut MambaCache<B>,
    ) -> Tensor<B, 3> {
        let hidden = self.backbone.forward(input_ids, attention_mask, cache);
        self.lm_head.forward(hidden)
    }

    /// The logits of the last new position only, `[batch, 1, vocab]`, continuing from (and
    /// updating) `cache`: what a generation step needs (the head runs on that one position).
    pub fn forward_next(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        cache: &mut MambaCache<B>,
    ) -> Tensor<B, 3> {
        let hidden = self.backbone.forward(input_ids, attention_mask, cache);
        let tokens = hidden.dims()[1];
        self.lm_head.forward(hidden.narrow(1, tokens - 1, 1))
    }
}

/// The body (`backbone`), as Hugging Face's `MambaModel`.
#[derive(Module, Debug, Inspectable)]
pub struct MambaModel<B: Backend> {
    /// Token embedding, `[vocab, hidden]`.
    pub embeddings: Embedding<B>,
    /// The Mamba blocks.
    pub layers: Vec<MambaBlock<B>>,
    /// Final RMSNorm.
    pub norm_f: RmsNorm<B>,
}

#[inspect]
impl<B: Backend> MambaModel<B> {
    /// The final normalised hidden states `[batch, tokens, hidden]` of `input_ids`, continuing
    /// from `cache`; `attention_mask`'s last `tokens` columns mark the new tokens' padding.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        cache: &mut MambaCache<B>,
    ) -> Tensor<B, 3> {
        let tokens = input_ids.dims()[1];
        let columns = attention_mask.dims()[1];
        let mask = attention_mask.narrow(1, columns - tokens, tokens).float();
        let mut x = self.embeddings.forward(input_ids);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, &mask, &mut cache[i]);
        }
        self.norm_f.forward(x)
    }
}

impl<B: Backend> Decoder<B> for MambaForCausalLM<B> {
    type Cache = MambaCache<B>;

    fn new_cache(&self) -> MambaCache<B> {
        MambaCache::new(self.backbone.layers.len())
    }

    fn forward_next(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        cache: &mut MambaCache<B>,
    ) -> Tensor<B, 3> {
        MambaForCausalLM::forward_next(self, input_ids, attention_mask, cache)
    }
}

impl<B: Backend> CausalLm<B> for MambaForCausalLM<B> {
    fn vocab_size(&self) -> usize {
        self.lm_head.vocab_size()
    }

    /// A recurrent model has no context limit: as long as memory lasts.
    fn max_positions(&self) -> usize {
        usize::MAX
    }
}

impl<B: Backend> crate::vocabulary::Standardized<B> for MambaForCausalLM<B> {
    fn vocabulary(&self) -> crate::vocabulary::Vocabulary {
        crate::vocabulary::Vocabulary {
            family: "Mamba",
            layers: "backbone.layers",
            num_layers: self.backbone.layers.len(),
            hidden_size: self.backbone.embeddings.weight.dims()[1],
            embed: "backbone.embeddings",
            attention: None,
            mlp: None,
            attention_probabilities: None,
            resid_mid: None,
            head_values: None,
            num_heads: 0,
            final_norm: "backbone.norm_f",
            unembed: "lm_head",
        }
    }

    fn decode_residual(&self, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        self.lm_head.forward(self.backbone.norm_f.forward(residual))
    }

    fn linearised_final_norm(&self, final_residual: Tensor<B, 3>) -> crate::vocabulary::LinearisedNorm<B> {
        let norm = &self.backbone.norm_f;
        crate::vocabulary::LinearisedNorm::rms(final_residual, norm.gamma.val(), norm.epsilon)
    }

    fn unembedding(&self) -> Tensor<B, 2> {
        self.lm_head.weight.val()
    }
}
