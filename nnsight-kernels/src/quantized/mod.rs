//! llama.cpp's tensor types ([`GgmlType`]) and their dequantization to `f32`: the block layouts of
//! `ggml-quants.c` (Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q5_K, Q6_K) and the plain F32, F16 and BF16.
//!
//! The GGUF file reader (`nnsight_models::gguf`) finds a tensor's bytes; this module turns them
//! into values, and [`crate::matmul`] computes products from the blocks directly.

mod dequant;
mod ggml_type;

pub use dequant::dequantize;
#[cfg(test)]
pub(crate) use dequant::dequantize_block;
pub use ggml_type::GgmlType;
