//! The Gemma 3 language model: `model` (scaled embeddings, rotary embeddings, decoder layers of
//! two attention types, final norm) and `lm_head`.

use burn::prelude::*;
use nnsight::prelude::*;

use super::{Gemma3DecoderLayer, Gemma3RmsNorm, Gemma3RotaryEmbedding, Gemma3ScaledWordEmbedding, LayerType};
use crate::causal::{CausalMask, sliding_window};
use crate::generation::Decoder;
use crate::kv_cache::KvCache;
use crate::language_model::CausalLm;
use crate::lm_head::LmHead;
use crate::vocabulary::{Port, Standardized, Vocabulary};

/// A Gemma 3 text model with its language-model head, module for module as Hugging Face's
/// `Gemma3ForCausalLM`.
///
/// `forward(input_ids, attention_mask)` returns the logits `[batch, tokens, vocab]`. Paths as in
/// nnsight: `model.embed_tokens` (output = scaled embeddings), `model.layers[i]` (output =
/// residual stream), `model.layers[i].self_attn.{q_proj, q_norm, k_norm, attn_probs}`,
/// `model.layers[i].post_attention_layernorm` (output = what attention adds to the residual
/// stream), `model.layers[i].mlp.act_fn`, `model.norm`, `lm_head`.
#[derive(Module, Debug, Inspectable)]
pub struct Gemma3ForCausalLM<B: Backend> {
    /// The decoder: embeddings, layers, final norm.
    pub model: Gemma3TextModel<B>,
    /// Unembedding; shares its weight with `model.embed_tokens` when `tie_word_embeddings`.
    pub lm_head: LmHead<B>,
    /// Logits squashed to `cap · tanh(logits / cap)` when set (`final_logit_softcapping`).
    #[module(skip)]
    pub final_logit_softcapping: Option<f64>,
}

#[inspect]
impl<B: Backend> Gemma3ForCausalLM<B> {
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
        self.softcapped(self.lm_head.forward(hidden))
    }

    /// The logits of the last new position only, `[batch, 1, vocab]`, continuing from (and
    /// extending) `cache`: what a generation step needs (the head runs on that one position, as
    /// transformers' `generate` does).
    pub fn forward_next(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        let hidden = self.model.forward(input_ids, attention_mask, cache);
        let tokens = hidden.dims()[1];
        self.softcapped(self.lm_head.forward(hidden.narrow(1, tokens - 1, 1)))
    }
}

impl<B: Backend> Gemma3ForCausalLM<B> {
    /// `logits` squashed by `final_logit_softcapping`, when the config sets it.
    fn softcapped(&self, logits: Tensor<B, 3>) -> Tensor<B, 3> {
        match self.final_logit_softcapping {
            Some(cap) => logits.div_scalar(cap).tanh().mul_scalar(cap),
            None => logits,
        }
    }
}

/// The decoder body (`model`), as Hugging Face's `Gemma3TextModel`.
#[derive(Module, Debug, Inspectable)]
pub struct Gemma3TextModel<B: Backend> {
    /// Token embedding `[vocab, hidden]`, scaled by `√hidden`.
    pub embed_tokens: Gemma3ScaledWordEmbedding<B>,
    /// The decoder layers.
    pub layers: Vec<Gemma3DecoderLayer<B>>,
    /// Final RMSNorm.
    pub norm: Gemma3RmsNorm<B, 3>,
    /// Rotary position embeddings of both attention types.
    pub rotary_emb: Gemma3RotaryEmbedding<B>,
    /// The window of the sliding layers (each token sees itself and the `window - 1` before it).
    #[inspect(skip)]
    pub sliding_window: usize,
}

#[inspect]
impl<B: Backend> Gemma3TextModel<B> {
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
        let mut x = self.embed_tokens.forward(input_ids);
        let has = |t: LayerType| self.layers.iter().any(|layer| layer.self_attn.layer_type == t);
        // The sliding layers' rotation and window, then the full layers': each made only when a
        // layer uses it.
        let sliding = has(LayerType::SlidingAttention).then(|| {
            let rotation = self.rotary_emb.forward(mask.position_ids.clone(), &LayerType::SlidingAttention);
            (rotation, sliding_window(mask.masked.clone(), self.sliding_window))
        });
        let full = has(LayerType::FullAttention).then(|| {
            let rotation = self.rotary_emb.forward(mask.position_ids.clone(), &LayerType::FullAttention);
            (rotation, mask.masked.clone())
        });
        for (i, layer) in self.layers.iter().enumerate() {
            let (rotation, masked) = match layer.self_attn.layer_type {
                LayerType::SlidingAttention => sliding.as_ref(),
                LayerType::FullAttention => full.as_ref(),
            }
            .expect("made for every type a layer has");
            // `#[inspect]` sees the borrowed arguments by their `&`: written out, not reborrowed.
            #[allow(clippy::borrow_deref_ref)]
            let next = layer.forward(x, &*rotation, &*masked, &mut cache[i]);
            x = next;
        }
        self.norm.forward(x)
    }
}

impl<B: Backend> Decoder<B> for Gemma3ForCausalLM<B> {
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
        Gemma3ForCausalLM::forward_next(self, input_ids, attention_mask, cache)
    }
}

impl<B: Backend> CausalLm<B> for Gemma3ForCausalLM<B> {
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

impl<B: Backend> Standardized<B> for Gemma3ForCausalLM<B> {
    /// Gemma normalises what attention and the MLP add before adding it: their contributions to
    /// the residual stream are the outputs of `post_attention_layernorm` and
    /// `post_feedforward_layernorm` (TransformerLens' `hook_attn_out` / `hook_mlp_out` for Gemma).
    fn vocabulary(&self) -> Vocabulary {
        Vocabulary {
            family: "Gemma 3",
            layers: "model.layers",
            num_layers: self.model.layers.len(),
            hidden_size: self.model.embed_tokens.weight.dims()[1],
            embed: "model.embed_tokens",
            attention: Some("post_attention_layernorm"),
            mlp: Some("post_feedforward_layernorm"),
            attention_probabilities: Some(("self_attn.attn_probs", Port::Output)),
            resid_mid: Some(("pre_feedforward_layernorm", Port::Input)),
            head_values: Some(("self_attn.o_proj", Port::Input)),
            num_heads: self.model.layers.first().map_or(0, |l| l.self_attn.num_heads),
            final_norm: "model.norm",
            unembed: "lm_head",
        }
    }

    fn decode_residual(&self, residual: Tensor<B, 3>) -> Tensor<B, 3> {
        self.softcapped(self.lm_head.forward(self.model.norm.forward(residual)))
    }

    fn linearised_final_norm(&self, final_residual: Tensor<B, 3>) -> crate::vocabulary::LinearisedNorm<B> {
        let norm = &self.model.norm;
        crate::vocabulary::LinearisedNorm::rms(
            final_residual,
            norm.weight.val().add_scalar(1.0),
            norm.epsilon,
        )
    }

    fn unembedding(&self) -> Tensor<B, 2> {
        self.lm_head.weight.val()
    }
}
