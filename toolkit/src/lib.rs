//! nnsight-toolkit: the analyses interpretability researchers run, written once over the common
//! vocabulary of causal language models ([`Standardized`](nnsight_models::vocabulary::Standardized)),
//! so each runs on GPT-2, Llama, Gemma 3 and Mamba alike — and their pictures.
//!
//! - [`decomposition`]: the residual stream as a sum of what each part wrote (by layer or by
//!   head), and direct logit attribution;
//! - [`lens`]: the logit lens (and the tuned lens, given its translators): per layer and position,
//!   the top tokens and the probability of chosen tokens, from one trace;
//! - [`patching`]: activation patching at any site, position and metric (exact, batched invokes,
//!   or attribution patching), and its pictures;
//! - [`plot`]: heatmaps and line plots, written as PNG or SVG;
//! - [`sae`]: sparse autoencoders in SAELens' format: features at their hook, edited back into
//!   the forward pass;
//! - [`steering`]: steering vectors from contrasting prompts, applied in generation, kept as
//!   safetensors or read from llama.cpp control vectors.

pub mod decomposition;
pub mod lens;
pub mod patching;
pub mod plot;
mod prompt;
pub mod sae;
pub mod steering;
