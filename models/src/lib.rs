//! Inspectable burn models for nnsight-rs, with the module names of Hugging Face transformers,
//! loading from the Hugging Face Hub (or a local directory), and [`LanguageModel`]: model +
//! tokenizer + device, the way nnsight's `LanguageModel` wraps a transformers model.
//!
//! - [`bert`]: BERT encoders and sentence embeddings (MiniLM);
//! - [`clip`]: CLIP, text and vision towers in one space;
//! - [`gemma3`]: Gemma 3's text models (sliding and global attention layers, q/k norms, GeGLU);
//! - [`gpt2`]: GPT-2 of every size (`openai-community/gpt2`, `gpt2-medium`, ...);
//! - [`llama`]: the Llama architecture (Llama 2/3/3.x, SmolLM2, Mistral-style);
//! - [`mamba`]: Mamba, the selective state-space model, with its recurrent cache;
//! - [`vit`]: the Vision Transformer (encoder and image classifier), with [`vision`]'s image
//!   preprocessing;
//! - [`hub`]: finding a model's files (hf-hub cache, offline mode, local directories);
//! - [`gguf`]: llama.cpp's GGUF files: metadata, tensors dequantized to `f32`, Llama names, tokenizer;
//! - [`weights`]: safetensors checkpoints, one file or shards;
//! - [`generation`]: text generation with a KV cache, traceable step by step;
//! - [`vocabulary`]: one vocabulary across the causal LMs (residual stream, attention, MLP, final
//!   norm, unembedding; TransformerLens' hook names) and the logit lens written once on it;
//! - [`patching`]: residual-stream activation patching sweeps computed from the causal structure;
//! - [`causal`], [`kv_cache`], [`lm_head`], [`projection`], [`grouped_attention`]: pieces shared
//!   by causal language models.
//!
//! The hot products and activations the models call live in `nnsight-kernels` (re-exported as
//! [`matmul`] and [`activation`]).

// Kernels, and their `unsafe`, live in `nnsight-kernels`; here only the two memory maps of model
// files (safetensors, GGUF) need it.
#![deny(unsafe_code)]

pub mod bert;
mod building;
pub mod causal;
pub mod clip;
mod config_json;
mod fused_attention;
mod gelu_tanh;
pub mod gemma3;
pub mod generation;
pub mod gguf;
pub mod gpt2;
pub mod grouped_attention;
pub mod hub;
mod kept_blocks;
pub mod kv_cache;
mod language_model;
pub mod llama;
pub mod lm_head;
mod lm_invokes;
pub mod mamba;
pub mod patching;
pub mod progress;
pub mod projection;
mod prompts;
mod silu;
mod token_ids;
pub mod vision;
pub mod vit;
pub mod vocabulary;
pub mod weights;

pub use nnsight_kernels::{activation, matmul};

pub use language_model::{CausalLm, EditedLm, FromGguf, LanguageModel, LmTracer, Pretrained};
pub use lm_invokes::LmInvokes;
pub use prompts::{Batch, Prompts};
