//! The Llama language model: `model` (embeddings, rotary embedding, decoder layers, final norm)
//! and `lm_head`.

use burn::nn::{Embedding, RmsNorm};
use burn::prelude::*;
use nnsight::prelude::*;

use super::{LlamaDecoderLayer, LlamaRotaryEmbedding};
use crate::causal::CausalMask;
use crate::generation::Decoder;
use crate::kv_cache::KvCache;
use crate::language_model::CausalLm;
use crate::lm_head::LmHead;

/// A Llama-architecture model with its language-model head, module for module as Hugging Face's
/// `LlamaForCausalLM` (also Mistral's `MistralForCausalLM`, which has the same modules).
///
/// `forward(input_ids, attention_mask)` returns the logits `[batch, tokens, vocab]`. Paths as in
/// nnsight: `model.layers[i]` (output = residual stream), `model.layers[i].self_attn.q_proj`,
/// `model.layers[i].self_attn.attn_probs` (output = attention probabilities
/// `[batch, heads, queries, keys]`), `model.layers[i].mlp.act_fn`, `model.norm`, `lm_head`.
#[derive(Module, Debug, Inspectable)]
pub struct LlamaForCausalLM<B: Backend> {
    /// The decoder: embeddings, layers, final RMSNorm.
    pub model: LlamaModel<B>,
    /// Unembedding; shares its weight with `model.embed_tokens` when `tie_word_embeddings`.
    pub lm_head: LmHead<B>,
}

#[inspect]
impl<B: Backend> LlamaForCausalLM<B> {
    /// Logits `[batch, tokens, vocab]` of `input_ids` (`[batch, tokens]`); `attention_mask` has the
    /// same shape, 1 for tokens and 0 for (left) padding.
    pub fn forward(&self, input_ids: Tensor<B, 2, Int>, attention_mask: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let mut cache = KvCache::disabled(self.model.layers.len());
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
        let hidden = self.model.forward(input_ids, attention_mask, cache);
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
        let hidden = self.model.forward(input_ids, attention_mask, cache);
        let tokens = hidden.dims()[1];
        self.lm_head.forward(hidden.narrow(1, tokens - 1, 1))
    }
}

/// The decoder body (`model`), as Hugging Face's `LlamaModel`.
#[derive(Module, Debug, Inspectable)]
pub struct LlamaModel<B: Backend> {
    /// Token embedding, `[vocab, hidden]`.
    pub embed_tokens: Embedding<B>,
    /// The decoder layers.
    pub layers: Vec<LlamaDecoderLayer<B>>,
    /// Final RMSNorm.
    pub norm: RmsNorm<B>,
    /// Rotary position embedding, computed once per forward pass and shared by the layers.
    pub rotary_emb: LlamaRotaryEmbedding<B>,
    /// Mistral's sliding attention window (each token sees itself and the `window - 1` tokens
    /// before it); `None` for full causal attention.
    #[inspect(skip)]
    pub sliding_window: Option<usize>,
}

#[inspect]
impl<B: Backend> LlamaModel<B> {
    /// The final normalised hidden states `[batch, tokens, hidden]` of `input_ids`, attending to
    /// the cached positions too; position ids come from `attention_mask`.
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        let tokens = input_ids.dims()[1];
        let mask = CausalMask::new(&attention_mask, tokens);
        let masked = self.windowed(mask.masked);
        let mut x = self.embed_tokens.forward(input_ids);
        let position_embeddings = self.rotary_emb.forward(mask.position_ids);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, &position_embeddings, &masked, &mut cache[i]);
        }
        self.norm.forward(x)
    }
}

impl<B: Backend> LlamaModel<B> {
    /// `masked` (`[batch, 1, queries, keys]`, the queries being the last keys) with the keys
    /// outside the sliding window masked too, as transformers' `sliding_window_overlay`: query
    /// `q` sees key `k` only if `q - k < window`, counted over the columns of the batch.
    pub fn windowed(&self, masked: Tensor<B, 4, Bool>) -> Tensor<B, 4, Bool> {
        match self.sliding_window {
            Some(window) => crate::causal::sliding_window(masked, window),
            None => masked,
        }
    }
}

impl<B: Backend> Decoder<B> for LlamaForCausalLM<B> {
    type Cache = KvCache<B>;

    fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.model.layers.len())
    }

    fn forward_next(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        LlamaForCausalLM::forward_next(self, input_ids, attention_mask, cache)
    }
}

impl<B: Backend> CausalLm<B> for LlamaForCausalLM<B> {
    fn vocab_size(&self) -> usize {
        self.lm_head.vocab_size()
    }

    fn max_positions(&self) -> usize {
        self.model.rotary_emb.max_position_embeddings
    }

    fn weights_in_blocks(&self) -> usize {
        let projections = self.model.layers.iter().flat_map(|layer| {
            let (attn, mlp) = (&layer.self_attn, &layer.mlp);
            [
                &attn.q_proj,
                &attn.k_proj,
                &attn.v_proj,
                &attn.o_proj,
                &mlp.gate_proj,
                &mlp.up_proj,
                &mlp.down_proj,
            ]
        });
        projections.filter(|p| p.has_blocks()).count() + usize::from(self.lm_head.has_blocks())
    }
}

impl<B: Backend> crate::vocabulary::Standardized<B> for LlamaForCausalLM<B> {
    fn vocabulary(&self) -> crate::vocabulary::Vocabulary {
        use crate::vocabulary::Port;
        crate::vocabulary::Vocabulary {
            family: "Llama",
            layers: "model.layers",
            num_layers: self.model.layers.len(),
            hidden_size: self.model.embed_tokens.weight.dims()[1],
            embed: "model.embed_tokens",
            attention: Some("self_attn"),
            mlp: Some("mlp"),
            attention_probabilities: Some(("self_attn.attn_probs", Port::Output)),
            resid_mid: Some(("post_attention_layernorm", Port::Input)),
            head_values: Some(("self_attn.o_proj", Port::Input)),
            num_heads: self.model.layers.first().map_or(0, |l| l.self_attn.num_heads),
            final_norm: "model.norm",
            unembed: "lm_head",
        }
    }

    fn decode_residual(&self, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        self.lm_head.forward(self.model.norm.forward(residual))
    }

    fn linearised_final_norm(&self, final_residual: Tensor<B, 3>) -> crate::vocabulary::LinearisedNorm<B> {
        let norm = &self.model.norm;
        crate::vocabulary::LinearisedNorm::rms(final_residual, norm.gamma.val(), norm.epsilon)
    }

    fn unembedding(&self) -> Tensor<B, 2> {
        self.lm_head.weight.val()
    }

    fn output_projection(&self, layer: usize) -> Option<Tensor<B, 2>> {
        // `o_proj.weight` is `[hidden, heads · head_dim]`, as in the checkpoint.
        self.model.layers.get(layer).map(|l| l.self_attn.o_proj.weight.val().transpose())
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
