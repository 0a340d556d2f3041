//! The integration tests of nnsight-models, one binary (fewer binaries linking burn make a faster
//! build): GGUF reading against gguf-py and transformers, and the fast residual patching sweeps of
//! GPT-2 and Llama against the naive sweep (one trace per entry, `nnsight_support::sweep`).
//!
//! Every random model here is drawn through `nnsight_support::sweep::seeded`, which serializes
//! the draws from burn's process-wide generator, so that the tests running in parallel draw the
//! same models in every run.

mod gguf;
mod gpt2_sweep;
mod llama_sweep;
