//! GPT-2 (all sizes), module for module as Hugging Face's `GPT2LMHeadModel`, loadable from the
//! Hugging Face Hub or a local directory.

mod block;
mod config;
mod load;
mod model;
mod patching_sweep;

pub use block::{Gpt2Attention, Gpt2Block, Gpt2Mlp};
pub use config::Gpt2Config;
pub use model::{Gpt2LMHeadModel, Gpt2Model};
pub use patching_sweep::{LogitDiff, PatchingSweep};
