//! The Mamba architecture (selective state-space model) — module for module as Hugging Face's
//! `MambaForCausalLM`, loadable from the Hugging Face Hub or a local directory, with the
//! recurrent cache for generation (each decoding step one call, a new visit of every site).
//!
//! Paper: Gu & Dao 2023, *Mamba: Linear-Time Sequence Modeling with Selective State Spaces*.
//! Reference implementation, whose numerics the tests match: Hugging Face transformers
//! `models/mamba/modeling_mamba.py` (`MambaMixer.slow_forward`, the path without CUDA kernels).

mod block;
mod cache;
mod config;
mod conv;
mod load;
mod mixer;
mod model;

pub use block::{MambaBlock, MambaBlockEnvoy};
pub use cache::{MambaCache, MambaLayerCache, MixerState};
pub use config::MambaConfig;
pub use conv::{MambaConv1d, MambaConv1dEnvoy};
pub use mixer::{MambaMixer, MambaMixerEnvoy};
pub use model::{MambaForCausalLM, MambaForCausalLMEnvoy, MambaModel, MambaModelEnvoy};
