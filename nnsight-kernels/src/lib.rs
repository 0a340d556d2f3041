//! The CPU kernels of nnsight-rs: the hot products and activations of the models in
//! `nnsight-models`, on burn's default CPU backend (`Flex`), and the GGUF block formats they read.
//! The models' `unsafe` lives here (nnsight-models has none besides two memory maps), each block
//! with a `// SAFETY:` comment.
//!
//! - [`matmul`]: a projection's product as one 2-D product — a multi-threaded few-rows kernel
//!   (streaming each weight once, from its GGUF blocks when a model keeps them), a register-tiled
//!   AVX2 + FMA kernel for many rows, `gemm` elsewhere; burn's `matmul` on other backends;
//! - [`activation`]: GPT-2's tanh-GELU and Llama's SiLU as one vectorized pass;
//! - [`quantized`]: llama.cpp's tensor types (F32 … Q6_K) and their dequantization to `f32`;
//! - [`flex`]: reading a `Flex` tensor's values in place and making one from values.
//!
//! On a backend other than `Flex` (or a tensor that is not contiguous `f32`) every kernel gives
//! way to burn's own operations, so models written against these functions stay generic.

pub mod activation;
pub mod flex;
pub mod matmul;
pub mod quantized;
