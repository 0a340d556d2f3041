//! The GPT-2 language model: `transformer` (embeddings, blocks, final norm) and `lm_head`.

use burn::nn::{Dropout, Embedding, LayerNorm};
use burn::prelude::*;
use nnsight::prelude::*;

use super::Gpt2Block;
use crate::causal::CausalMask;
use crate::kv_cache::KvCache;
use crate::language_model::CausalLm;
use crate::lm_head::LmHead;

/// GPT-2 with its language-model head, module for module as Hugging Face's `GPT2LMHeadModel`.
///
/// `forward(input_ids, attention_mask)` returns the logits `[batch, tokens, vocab]`. Paths as in
/// nnsight: `transformer.h[i]` (output = residual stream), `transformer.h[i].attn.c_attn`,
/// `transformer.h[i].attn.attn_dropout` (input = attention probabilities), `transformer.ln_f`,
/// `lm_head`.
#[derive(Module, Debug, Inspectable)]
pub struct Gpt2LMHeadModel<B: Backend> {
    /// The transformer: embeddings, blocks, final LayerNorm.
    pub transformer: Gpt2Model<B>,
    /// Unembedding; shares its weight with `transformer.wte` when tied (every released GPT-2).
    pub lm_head: LmHead<B>,
}

#[inspect]
impl<B: Backend> Gpt2LMHeadModel<B> {
    /// Logits `[batch, tokens, vocab]` of `input_ids` (`[batch, tokens]`); `attention_mask` has the
    /// same shape, 1 for tokens and 0 for (left) padding.
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>, attention_mask: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let mut cache = KvCache::disabled(self.transformer.h.len());
        self.forward_cached(input_ids, attention_mask, &mut cache)
    }

    /// Like [`forward`](Self::forward), continuing from (and extending) `cache`: `input_ids` are
    /// the new tokens, `attention_mask` covers the cached and the new ones.
    pub fn forward_cached(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        let hidden = self.transformer.forward(input_ids, attention_mask, cache);
        self.lm_head.forward(hidden)
    }

    /// The logits of the last new position only, `[batch, 1, vocab]`, continuing from (and
    /// extending) `cache`: what a generation step needs. The head runs on that one position, as
    /// transformers' `generate` does (`logits_to_keep=1`), so `lm_head`'s output has one position.
    pub fn forward_next(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        let hidden = self.transformer.forward(input_ids, attention_mask, cache);
        let tokens = hidden.dims()[1];
        self.lm_head.forward(hidden.narrow(1, tokens - 1, 1))
    }
}

/// The transformer body (`transformer`), as Hugging Face's `GPT2Model`.
#[derive(Module, Debug, Inspectable)]
pub struct Gpt2Model<B: Backend> {
    /// Token embedding, `[vocab, n_embd]`.
    pub wte: Embedding<B>,
    /// Position embedding, `[n_positions, n_embd]`.
    pub wpe: Embedding<B>,
    /// Dropout on the embeddings (identity at inference).
    pub drop: Dropout,
    /// The blocks.
    pub h: Vec<Gpt2Block<B>>,
    /// Final LayerNorm.
    pub ln_f: LayerNorm<B>,
}

#[inspect]
impl<B: Backend> Gpt2Model<B> {
    /// The final normalised hidden states `[batch, tokens, n_embd]` of `input_ids`, attending to
    /// the cached positions too; position ids come from `attention_mask`.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        let tokens = input_ids.dims()[1];
        let mask = CausalMask::new(&attention_mask, tokens);
        let embedded = self.wte.forward(input_ids) + self.wpe.forward(mask.position_ids);
        let mut x = self.drop.forward(embedded);
        for (i, block) in self.h.iter().enumerate() {
            x = block.forward(x, &mask.masked, &mut cache[i]);
        }
        self.ln_f.forward(x)
    }
}

impl<B: Backend> CausalLm<B> for Gpt2LMHeadModel<B> {
    fn vocab_size(&self) -> usize {
        self.lm_head.vocab_size()
    }

    fn max_positions(&self) -> usize {
        self.transformer.wpe.weight.val().dims()[0]
    }
}

impl<B: Backend> crate::generation::Decoder<B> for Gpt2LMHeadModel<B> {
    type Cache = KvCache<B>;

    fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.transformer.h.len())
    }

    fn forward_next(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        Gpt2LMHeadModel::forward_next(self, input_ids, attention_mask, cache)
    }
}

impl<B: Backend> crate::vocabulary::Standardized<B> for Gpt2LMHeadModel<B> {
    fn vocabulary(&self) -> crate::vocabulary::Vocabulary {
        use crate::vocabulary::Port;
        crate::vocabulary::Vocabulary {
            family: "GPT-2",
            layers: "transformer.h",
            num_layers: self.transformer.h.len(),
            hidden_size: self.transformer.wte.weight.dims()[1],
            embed: "transformer.wte",
            attention: Some("attn"),
            mlp: Some("mlp"),
            attention_probabilities: Some(("attn.attn_dropout", Port::Input)),
            resid_mid: Some(("ln_2", Port::Input)),
            head_values: Some(("attn.c_proj", Port::Input)),
            num_heads: self.transformer.h.first().map_or(0, |b| b.attn.n_head),
            final_norm: "transformer.ln_f",
            unembed: "lm_head",
        }
    }

    fn decode_residual(&self, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        self.lm_head.forward(self.transformer.ln_f.forward(residual))
    }

    fn linearised_final_norm(&self, final_residual: Tensor<B, 3>) -> crate::vocabulary::LinearisedNorm<B> {
        // burn keeps LayerNorm's epsilon private: the scale is recovered from the norm itself,
        // `‖γ ⊙ (x − μ)‖ / ‖ln_f(x) − β‖` per token (exact up to rounding).
        let ln = &self.transformer.ln_f;
        let hidden = final_residual.dims()[2];
        let gamma = ln.gamma.val();
        let centred = final_residual.clone() - final_residual.clone().mean_dim(2);
        let mut normed = ln.forward(final_residual);
        if let Some(beta) = &ln.beta {
            normed = normed - beta.val().reshape([1, 1, hidden]);
        }
        let numerator = (centred * gamma.clone().reshape([1, 1, hidden])).square().sum_dim(2).sqrt();
        let scale = numerator / normed.square().sum_dim(2).sqrt();
        crate::vocabulary::LinearisedNorm { centred: true, scale, weight: gamma }
    }

    fn unembedding(&self) -> Tensor<B, 2> {
        self.lm_head.weight.val()
    }

    fn output_projection(&self, layer: usize) -> Option<Tensor<B, 2>> {
        // burn's Linear keeps its weight as `[in, out]`, HF's Conv1D layout.
        self.transformer.h.get(layer).map(|block| block.attn.c_proj.weight.val())
    }

    fn exact_residual_sweep(
        &self,
        clean: &[u32],
        corrupted: &[u32],
        metric: crate::patching::LogitDiff,
    ) -> Option<Result<crate::patching::PatchingSweep>> {
        Some(self.residual_patching_sweep(clean, corrupted, metric))
    }
}
