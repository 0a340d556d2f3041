//! GPT-2 (all sizes), module for module as Hugging Face's `GPT2LMHeadModel`, loadable from the
//! Hugging Face Hub or a local directory.

mod block;
mod config;
mod load;
mod model;

pub use block::{Gpt2Attention, Gpt2AttentionEnvoy, Gpt2Block, Gpt2BlockEnvoy, Gpt2Mlp, Gpt2MlpEnvoy};
pub use config::Gpt2Config;
pub use model::{Gpt2LMHeadModel, Gpt2LMHeadModelEnvoy, Gpt2Model, Gpt2ModelEnvoy};
