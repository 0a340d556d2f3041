//! Llama models from llama.cpp's GGUF files: the configuration from the file's metadata, the
//! weights dequantized to `f32` in Hugging Face's layout, the tokenizer from the metadata — as
//! transformers' `from_pretrained(dir, gguf_file=..)` builds them.

use burn::prelude::*;
use nnsight::{Error, Result};
use serde_json::json;

use super::gguf_names::gguf_name;
use super::{LlamaConfig, LlamaForCausalLM};
use crate::gguf::GgufFile;
use crate::kept_blocks::{self, layer_projections};
use crate::language_model::FromGguf;

impl LlamaConfig {
    /// The configuration that the metadata of a `general.architecture = llama` GGUF file
    /// describes (`llama.block_count`, `llama.embedding_length`, ...). The head is tied when the
    /// file has no `output.weight`.
    ///
    /// # Errors
    /// [`Error::Load`] naming the file and the missing or unsupported key.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let source = file.path().display().to_string();
        let bad = |problem: String| Error::Load { source_name: source.clone(), problem };
        match file.get_str("general.architecture")? {
            Some("llama") => {}
            other => return Err(bad(format!("architecture {other:?} is not llama"))),
        }
        let need = |key: &str| -> Result<u32> {
            file.get_u32(key)?.ok_or_else(|| bad(format!("the metadata has no `{key}`")))
        };
        if file.tensor_info("rope_freqs.weight").is_some() {
            return Err(bad(
                "per-dimension rope frequencies (`rope_freqs.weight`) are not supported yet".into()
            ));
        }
        let heads = need("llama.attention.head_count")?;
        let vocab = match file.get_u32("llama.vocab_size")? {
            Some(n) => n as usize,
            None => file
                .get_str_array("tokenizer.ggml.tokens")?
                .map(|tokens| tokens.len())
                .ok_or_else(|| bad("the metadata gives no vocabulary size".into()))?,
        };
        let eos = file.get_u32("tokenizer.ggml.eos_token_id")?;
        let config = json!({
            "model_type": "llama",
            "vocab_size": vocab,
            "hidden_size": need("llama.embedding_length")?,
            "intermediate_size": need("llama.feed_forward_length")?,
            "num_hidden_layers": need("llama.block_count")?,
            "num_attention_heads": heads,
            "num_key_value_heads": file.get_u32("llama.attention.head_count_kv")?.unwrap_or(heads),
            "max_position_embeddings": need("llama.context_length")?,
            "rms_norm_eps": file.get_f32("llama.attention.layer_norm_rms_epsilon")?.map_or(1e-5, f64::from),
            "rope_theta": file.get_f32("llama.rope.freq_base")?.map_or(10_000.0, f64::from),
            "tie_word_embeddings": file.tensor_info("output.weight").is_none(),
            "bos_token_id": file.get_u32("tokenizer.ggml.bos_token_id")?,
            "eos_token_id": eos,
            "pad_token_id": file.get_u32("tokenizer.ggml.padding_token_id")?,
        });
        LlamaConfig::from_json(&config.to_string()).map_err(|e| e.in_source(file.path().display()))
    }
}

impl<B: Backend> LlamaForCausalLM<B> {
    /// Loads a model from a GGUF file: every tensor dequantized to `f32` (Q4_0, Q4_1, Q8_0, the
    /// K-quants, F16, BF16, F32), llama.cpp's names and Q/K row order mapped back to Hugging
    /// Face's.
    ///
    /// # Errors
    /// [`Error::Load`] for a file that is not a readable Llama GGUF; [`Error::MissingWeight`] /
    /// [`Error::BadWeight`] naming a tensor.
    pub fn from_gguf(file: &GgufFile, device: &B::Device) -> Result<(Self, LlamaConfig)> {
        let config = LlamaConfig::from_gguf(file)?;
        let model =
            LlamaForCausalLM::from_tensors(&config, |name, _shape| Ok(file.hf_tensor_f32(name)?.1), device)?;
        Ok((model, config))
    }
}

/// On the `Flex` backend a Llama from a GGUF file also keeps the quantized blocks of its Q4_0 /
/// Q4_1 / Q8_0 projections and head, and products with few rows (decoding steps, short prompts)
/// read those instead of the `f32` weights — the same values, several times fewer bytes
/// ([`LanguageModel::kept_blocks`](crate::LanguageModel::kept_blocks) counts them; see
/// [`nnsight_kernels::matmul`]).
impl<B: Backend> FromGguf<B> for LlamaForCausalLM<B> {
    fn from_gguf_file(file: &GgufFile, device: &B::Device) -> Result<(Self, Option<u32>, Vec<u32>)> {
        let (mut model, config) = LlamaForCausalLM::from_gguf(file, device)?;
        keep_blocks(&mut model, file)?;
        Ok((model, config.pad_id(), config.eos_token_id))
    }
}

/// Gives every projection and the head their GGUF blocks (see [`crate::kept_blocks`]); q and k
/// rows back in Hugging Face's order.
fn keep_blocks<B: Backend>(model: &mut LlamaForCausalLM<B>, file: &GgufFile) -> Result<()> {
    let projections = model.model.layers.iter_mut().enumerate().flat_map(|(i, layer)| {
        let (attn, mlp) = (&mut layer.self_attn, &mut layer.mlp);
        layer_projections(
            i,
            [&mut attn.q_proj, &mut attn.k_proj, &mut attn.v_proj, &mut attn.o_proj],
            [&mut mlp.gate_proj, &mut mlp.up_proj, &mut mlp.down_proj],
        )
    });
    // A tied head is the token embedding.
    let untied = gguf_name("lm_head.weight").is_some_and(|name| file.tensor_info(&name).is_some());
    let head = if untied { "lm_head.weight" } else { "model.embed_tokens.weight" };
    kept_blocks::keep_blocks(projections, (head, &mut model.lm_head), |name| file.hf_tensor_blocks(name))
}
