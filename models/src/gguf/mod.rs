//! Reading GGUF files, llama.cpp's single-file format for (quantized) models: header, typed
//! metadata, tensors dequantized to `f32`, and the tokenizer the metadata describes. The reader
//! knows no architecture: Llama's tensor names and layout live in [`crate::llama`]
//! ([`hf_name`](crate::llama::hf_name), [`GgufFile::hf_tensor_f32`]), Gemma 3's in [`crate::gemma3`], the block types and their
//! dequantization in `nnsight_kernels::quantized`.
//!
//! The format is specified in llama.cpp's `docs/gguf.md`; block layouts follow `ggml-quants.c`, and
//! the tokenizer follows transformers' GGUF loader (`integrations/gguf/`).
//!
//! - [`GgufFile`]: open (memory-mapped) and parse a GGUF v2/v3 file; metadata accessors
//!   ([`GgufFile::get_u32`], [`GgufFile::get_str_array`], ...); [`GgufFile::tensor_f32`] for any
//!   tensor of a type [`GgmlType::can_dequantize`] accepts (F32, F16, BF16, Q8_0, Q4_0, Q4_1,
//!   Q5_0, Q4_K, Q5_K, Q6_K), shaped in PyTorch order;
//! - [`GgufFile::tokenizer`]: a [`tokenizers::Tokenizer`] for `gpt2` (byte-level BPE) vocabularies
//!   and Gemma's SentencePiece-style `llama` vocabularies.
//!
//! Truncated or corrupt files give [`nnsight::Error::Load`] naming the file and the problem, never a
//! panic.
//!
//! # Examples
//!
//! ```no_run
//! use nnsight_models::gguf::GgufFile;
//!
//! let file = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
//! for info in file.tensors() {
//!     println!("{} {:?} {}", info.name(), info.shape(), info.ggml_type());
//! }
//! let (shape, embedding) = file.hf_tensor_f32("model.embed_tokens.weight")?;
//! let tokenizer = file.tokenizer()?;
//! # Ok::<(), nnsight::Error>(())
//! ```

mod blocks;
mod file;
mod names;
mod reader;
mod sentencepiece;
mod tokenizer;
mod value;

pub(crate) use blocks::TensorBlocks;
pub use file::{GgufFile, TensorInfo};
pub(crate) use names::NameMap;
pub use nnsight_kernels::quantized::GgmlType;
pub use value::{Value, ValueType};
