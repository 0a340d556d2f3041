//! Text generation with a KV cache, traceable step by step.
//!
//! [`LanguageModel::generate`](crate::LanguageModel::generate) runs the decoding loop;
//! [`LanguageModel::generator`](crate::LanguageModel::generator) runs it with a trace body
//! interleaved. Every decoding step is one call of the model, so every site has one visit per
//! step: visit 0 is the prefill (`[batch, prompt, ..]`), visit `n` the `n`-th new token
//! (`[batch, 1, ..]`). A body intervenes at one step with `.at(n)`, or at every step (or a range
//! of steps) with the standing edits `Site::every` / `Site::steps`, without waiting for each.

mod decoder;
mod generator;
mod options;
mod sampler;

pub use decoder::Decoder;
pub use generator::{Generation, Generator, Token};
pub use options::{GenerateOptions, Sampling};
