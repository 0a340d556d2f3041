//! The Llama architecture — Llama 2, Llama 3/3.x, SmolLM2, and Mistral-style models (same
//! modules, optional sliding-window attention) — module for module as Hugging Face's
//! `LlamaForCausalLM`, loadable from the Hugging Face Hub, a local directory, or tensors by name.
//!
//! Papers: Touvron et al. 2023, *LLaMA* and *Llama 2*; Grattafiori et al. 2024, *The Llama 3 Herd
//! of Models* (the `llama3` rotary scaling); Su et al. 2021, *RoFormer* (rotary embeddings);
//! Ainslie et al. 2023, *GQA*; Jiang et al. 2023, *Mistral 7B* (sliding window).
//! Reference implementation, whose numerics the tests match: Hugging Face transformers
//! `models/llama/modeling_llama.py` and `modeling_rope_utils.py` (eager attention).

mod attention;
mod block;
mod config;
mod gguf;
mod gguf_names;
mod load;
mod mlp;
mod model;
mod rope;

pub use crate::silu::{Silu, SiluEnvoy};
pub use attention::{LlamaAttention, LlamaAttentionEnvoy};
pub use block::{LlamaDecoderLayer, LlamaDecoderLayerEnvoy};
pub(crate) use config::resolve_rope_scaling;
pub use config::{LlamaConfig, RopeParameters, RopeScaling};
pub use gguf_names::{gguf_name, hf_name, unpermute_qk};
pub use mlp::{LlamaMlp, LlamaMlpEnvoy};
pub use model::{LlamaForCausalLM, LlamaForCausalLMEnvoy, LlamaModel, LlamaModelEnvoy};
pub use rope::{LlamaRotaryEmbedding, LlamaRotaryEmbeddingEnvoy, apply_rotary_pos_emb, rotate_half};
pub(crate) use rope::{inv_freq, rotate_rows};
