//! The causal-LM fixtures of the families not in `fixture` / `llama_fixture` (Gemma 3, Mamba), and
//! each family's final norm and head called directly — the hand computation a lens is checked
//! against.

use burn::prelude::*;
use nnsight_models::LanguageModel;
use nnsight_models::gemma3::Gemma3ForCausalLM;
use nnsight_models::mamba::MambaForCausalLM;

use super::B;
use super::fixture::{fixture_dir, tiny_gpt2};
use super::llama_fixture::tiny_llama;

/// The tiny Gemma 3 fixture.
pub fn tiny_gemma3() -> LanguageModel<B, Gemma3ForCausalLM<B>> {
    LanguageModel::from_pretrained(fixture_dir("tiny-gemma3").to_str().unwrap(), &Default::default()).unwrap()
}

/// The tiny Mamba fixture.
pub fn tiny_mamba() -> LanguageModel<B, MambaForCausalLM<B>> {
    LanguageModel::from_pretrained(fixture_dir("tiny-mamba").to_str().unwrap(), &Default::default()).unwrap()
}

/// Each family's final norm and head, called directly.
#[derive(Clone, Copy, Debug)]
pub enum Decoder {
    Gpt2,
    Llama,
    Mamba,
    Gemma3,
}

impl Decoder {
    /// The logits `[batch, tokens, vocab]` of a last-layer output `h`, through the family's
    /// fixture's own modules.
    pub fn decode(&self, h: Tensor<B, 3>) -> Tensor<B, 3> {
        match self {
            Decoder::Gpt2 => {
                let lm = tiny_gpt2();
                let model = lm.model();
                model.lm_head.forward(model.transformer.ln_f.forward(h))
            }
            Decoder::Llama => {
                let lm = tiny_llama();
                let model = lm.model();
                model.lm_head.forward(model.model.norm.forward(h))
            }
            Decoder::Mamba => {
                let lm = tiny_mamba();
                let model = lm.model();
                model.lm_head.forward(model.backbone.norm_f.forward(h))
            }
            Decoder::Gemma3 => {
                let lm = tiny_gemma3();
                let model = lm.model();
                model.lm_head.forward(model.model.norm.forward(h))
            }
        }
    }
}
