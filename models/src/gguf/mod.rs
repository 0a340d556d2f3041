//! Reading GGUF files, llama.cpp's single-file format for (quantized) models: header, typed
//! metadata, tensors dequantized to `f32`, Llama tensors under Hugging Face names and layout, and
//! the tokenizer the metadata describes.
//!
//! The format is specified in llama.cpp's `docs/gguf.md`; block layouts follow `ggml-quants.c`, and
//! the Hugging Face conventions (names, the q/k un-permutation, the tokenizer) follow transformers'
//! GGUF loader (`modeling_gguf_pytorch_utils.py`, `integrations/gguf/`).
//!
//! - [`GgufFile`]: open (memory-mapped) and parse a GGUF v2/v3 file; metadata accessors
//!   ([`GgufFile::get_u32`], [`GgufFile::get_str_array`], ...); [`GgufFile::tensor_f32`] for any
//!   tensor of a type [`GgmlType::can_dequantize`] accepts (F32, F16, BF16, Q8_0, Q4_0, Q4_1,
//!   Q4_K, Q5_K, Q6_K), shaped in PyTorch order;
//! - [`hf_name`], [`gguf_name`], [`unpermute_qk`] and [`GgufFile::hf_tensor_f32`]: Llama
//!   parameters as Hugging Face's `LlamaForCausalLM` has them;
//! - [`GgufFile::tokenizer`]: a [`tokenizers::Tokenizer`] for `gpt2` (byte-level BPE) vocabularies.
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

mod file;
mod names;
mod reader;
mod tokenizer;
mod value;

pub use file::{GgufFile, TensorInfo};
pub use names::{gguf_name, hf_name, unpermute_qk};
pub use nnsight_kernels::quantized::GgmlType;
pub use value::{Value, ValueType};
