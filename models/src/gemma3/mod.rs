//! Gemma 3's text models (`google/gemma-3-270m`, `gemma-3-1b`, and the text tower of the larger
//! ones) module for module as Hugging Face's `Gemma3ForCausalLM`: sliding-window and
//! full-attention layers with their own rotary bases, RMS-normed queries and keys, scores scaled
//! by `query_pre_attn_scalar`, norms before and after attention and MLP, a GeGLU MLP, and token
//! embeddings scaled by `√hidden_size` and tied to the head. Loadable from safetensors (the Hub,
//! a directory) or llama.cpp's GGUF files.
//!
//! Papers: Gemma Team 2025, *Gemma 3 Technical Report*; Gemma Team 2024, *Gemma 2* (the norms
//! around each sublayer, logit soft-capping); Shazeer 2020, *GLU Variants Improve Transformer*
//! (GeGLU). Reference implementation, whose numerics the tests match: Hugging Face transformers
//! `models/gemma3/modeling_gemma3.py` (eager attention) and its GGUF loader.

mod attention;
mod block;
mod config;
mod embedding;
mod gguf;
mod load;
mod mlp;
mod model;
mod norm;
mod rope;

pub use crate::gelu_tanh::{GeluTanh, GeluTanhEnvoy};
pub use attention::{Gemma3Attention, Gemma3AttentionEnvoy};
pub use block::{Gemma3DecoderLayer, Gemma3DecoderLayerEnvoy};
pub use config::{Gemma3Config, LayerType};
pub use embedding::Gemma3ScaledWordEmbedding;
pub use gguf::{gguf_name, hf_name};
pub use mlp::{Gemma3Mlp, Gemma3MlpEnvoy};
pub use model::{Gemma3ForCausalLM, Gemma3ForCausalLMEnvoy, Gemma3TextModel, Gemma3TextModelEnvoy};
pub use norm::{Gemma3RmsNorm, Gemma3RmsNormEnvoy};
pub use rope::{Gemma3RotaryEmbedding, Gemma3RotaryEmbeddingEnvoy};
