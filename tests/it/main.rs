//! The integration tests of the facade, as one test binary of many modules (fewer binaries that
//! link burn: a faster build). `memory` and `hub_cache` stay binaries of their own: one counts
//! the heap with a global allocator, the other sets process environment variables.

#[path = "../support/mod.rs"]
mod support;

mod attribution;
mod bert_fidelity;
mod clip_fidelity;
mod clip_invokes;
mod clip_processor;
mod concurrency;
mod control;
mod decomposition;
#[cfg(feature = "tch")]
mod dtypes;
mod erased;
mod ergonomics;
mod fused_attention;
mod gemma3_fidelity;
mod gemma3_real;
mod gpt2_analysis;
mod gpt2_fidelity;
mod gpt2_generation;
mod gpt2_invokes;
mod gpt2_loading;
mod gpt2_patching;
mod gradients;
mod interleaving;
mod invokes;
mod lens;
mod llama_fidelity;
mod mamba_fidelity;
mod misuse;
mod patching;
mod sae;
mod smollm2;
mod steering;
mod trace_macro;
mod unwatched;
mod vit_fidelity;
mod vocabulary;
