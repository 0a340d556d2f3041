//! Gemma 3 models from llama.cpp's GGUF files (`general.architecture = gemma3`): the
//! configuration from the metadata, the weights dequantized to `f32` under Hugging Face's names,
//! and the tokenizer — as transformers' `from_pretrained(dir, gguf_file=..)` builds them.
//!
//! llama.cpp's `convert_hf_to_gguf.py` stores Gemma's norm weights as the scale itself
//! (`weight + 1`); transformers' GGUF loader (`Gemma2TensorProcessor`) subtracts the one again,
//! and so do we. Gemma's q/k rows are not permuted (its rotation already uses the halves layout).

use burn::prelude::*;
use nnsight::{Error, Result};
use serde_json::json;

use super::{Gemma3Config, Gemma3ForCausalLM};
use crate::gguf::{GgufFile, NameMap};
use crate::kept_blocks::{self, layer_projections};
use crate::language_model::FromGguf;

/// llama.cpp's names of a Gemma 3's tensors and Hugging Face's.
const NAMES: NameMap = NameMap {
    layer: &[
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("attn_q_norm", "self_attn.q_norm"),
        ("attn_k_norm", "self_attn.k_norm"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
        ("attn_norm", "input_layernorm"),
        ("post_attention_norm", "post_attention_layernorm"),
        ("ffn_norm", "pre_feedforward_layernorm"),
        ("post_ffw_norm", "post_feedforward_layernorm"),
    ],
    global: &[("token_embd", "model.embed_tokens"), ("output_norm", "model.norm"), ("output", "lm_head")],
};

/// The Hugging Face Gemma 3 name of llama.cpp tensor `gguf_name` (`blk.3.post_ffw_norm.weight` →
/// `model.layers.3.post_feedforward_layernorm.weight`); `None` outside the Gemma 3 set.
///
/// # Examples
///
/// ```
/// use nnsight_models::gemma3::hf_name;
///
/// assert_eq!(hf_name("blk.0.ffn_norm.weight").as_deref(), Some("model.layers.0.pre_feedforward_layernorm.weight"));
/// assert_eq!(hf_name("blk.0.attn_q_norm.weight").as_deref(), Some("model.layers.0.self_attn.q_norm.weight"));
/// ```
pub fn hf_name(gguf_name: &str) -> Option<String> {
    NAMES.hf_name(gguf_name)
}

/// The llama.cpp name of Hugging Face Gemma 3 parameter `hf_name`: the inverse of [`hf_name`].
///
/// # Examples
///
/// ```
/// use nnsight_models::gemma3::gguf_name;
///
/// assert_eq!(gguf_name("model.layers.5.post_attention_layernorm.weight").as_deref(), Some("blk.5.post_attention_norm.weight"));
/// assert_eq!(gguf_name("model.embed_tokens.weight").as_deref(), Some("token_embd.weight"));
/// ```
pub fn gguf_name(hf_name: &str) -> Option<String> {
    NAMES.gguf_name(hf_name)
}

impl Gemma3Config {
    /// The configuration that the metadata of a `general.architecture = gemma3` GGUF file
    /// describes, as transformers reads it: `gemma3.block_count`, `.embedding_length`,
    /// `.feed_forward_length`, `.attention.{head_count, head_count_kv, key_length,
    /// layer_norm_rms_epsilon, sliding_window}`, `.context_length`, `.rope.freq_base` (the full
    /// layers' base), the vocabulary size from the tokens; everything else (the layer pattern,
    /// `query_pre_attn_scalar`, the sliding layers' base) takes `Gemma3TextConfig`'s defaults.
    ///
    /// # Errors
    /// [`Error::Load`] naming the file and the missing or unsupported key.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let source = file.path().display().to_string();
        let bad = |problem: String| Error::Load { source_name: source.clone(), problem };
        match file.get_str("general.architecture")? {
            Some("gemma3") => {}
            other => return Err(bad(format!("architecture {other:?} is not gemma3"))),
        }
        let need = |key: &str| -> Result<u32> {
            file.get_u32(key)?.ok_or_else(|| bad(format!("the metadata has no `{key}`")))
        };
        let vocab = match file.get_u32("gemma3.vocab_size")? {
            Some(n) => n as usize,
            None => file
                .get_str_array("tokenizer.ggml.tokens")?
                .map(|tokens| tokens.len())
                .ok_or_else(|| bad("the metadata gives no vocabulary size".into()))?,
        };
        let mut config = json!({
            "model_type": "gemma3_text",
            "vocab_size": vocab,
            "hidden_size": need("gemma3.embedding_length")?,
            "intermediate_size": need("gemma3.feed_forward_length")?,
            "num_hidden_layers": need("gemma3.block_count")?,
            "num_attention_heads": need("gemma3.attention.head_count")?,
            "num_key_value_heads": need("gemma3.attention.head_count_kv")?,
            "max_position_embeddings": need("gemma3.context_length")?,
            "tie_word_embeddings": file.tensor_info("output.weight").is_none(),
            "bos_token_id": file.get_u32("tokenizer.ggml.bos_token_id")?,
            "eos_token_id": file.get_u32("tokenizer.ggml.eos_token_id")?,
            "pad_token_id": file.get_u32("tokenizer.ggml.padding_token_id")?,
        });
        let optional = [
            ("head_dim", file.get_u32("gemma3.attention.key_length")?.map(f64::from)),
            ("sliding_window", file.get_u32("gemma3.attention.sliding_window")?.map(f64::from)),
            ("rms_norm_eps", file.get_f32("gemma3.attention.layer_norm_rms_epsilon")?.map(f64::from)),
            ("rope_theta", file.get_f32("gemma3.rope.freq_base")?.map(f64::from)),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                config[key] = if key == "rms_norm_eps" || key == "rope_theta" {
                    json!(value)
                } else {
                    json!(value as u64)
                };
            }
        }
        Gemma3Config::from_json(&config.to_string()).map_err(|e| e.in_source(file.path().display()))
    }
}

impl GgufFile {
    /// Parameter `hf_name` of a Gemma 3 model (Hugging Face's name) as `f32` values with its
    /// Hugging Face shape: read from the llama.cpp tensor [`gguf_name`] gives, dequantized; norm
    /// weights with llama.cpp's `+ 1` taken off again.
    ///
    /// # Errors
    /// [`Error::MissingWeight`] when the name is not a Gemma 3 parameter or the file lacks its
    /// tensor; the errors of [`tensor_f32`](Self::tensor_f32).
    pub fn gemma3_tensor_f32(&self, hf_name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let name = gguf_name(hf_name).ok_or_else(|| Error::MissingWeight {
            name: hf_name.to_owned(),
            file: format!("{} (not a Gemma 3 parameter name)", self.path().display()),
        })?;
        let (shape, mut values) = self.tensor_f32(&name)?;
        if hf_name.contains("norm.weight") {
            values.iter_mut().for_each(|v| *v -= 1.0);
        }
        Ok((shape, values))
    }
}

impl<B: Backend> Gemma3ForCausalLM<B> {
    /// Loads a model from a GGUF file: every tensor dequantized to `f32` (Q4_0, Q4_1, Q5_0, Q8_0,
    /// the K-quants, F16, BF16, F32) under Hugging Face's names.
    ///
    /// # Errors
    /// [`Error::Load`] for a file that is not a readable Gemma 3 GGUF; [`Error::MissingWeight`] /
    /// [`Error::BadWeight`] naming a tensor.
    pub fn from_gguf(file: &GgufFile, device: &B::Device) -> Result<(Self, Gemma3Config)> {
        let config = Gemma3Config::from_gguf(file)?;
        let model = Gemma3ForCausalLM::from_tensors(
            &config,
            |name, _shape| Ok(file.gemma3_tensor_f32(name)?.1),
            device,
        )?;
        Ok((model, config))
    }
}

/// On the `Flex` backend a Gemma 3 from a GGUF file also keeps the quantized blocks of its Q4_0 /
/// Q4_1 / Q8_0 projections and of the (tied) head, which products with few rows read instead of
/// the `f32` weights ([`LanguageModel::kept_blocks`](crate::LanguageModel::kept_blocks) counts
/// them).
impl<B: Backend> FromGguf<B> for Gemma3ForCausalLM<B> {
    fn from_gguf_file(file: &GgufFile, device: &B::Device) -> Result<(Self, Option<u32>, Vec<u32>)> {
        let (mut model, config) = Gemma3ForCausalLM::from_gguf(file, device)?;
        keep_blocks(&mut model, file)?;
        Ok((model, config.pad_id(), config.eos_token_id))
    }
}

/// Gives every projection and the head their GGUF blocks where the file stores them in a
/// 32-value block type (see [`crate::kept_blocks`]).
fn keep_blocks<B: Backend>(model: &mut Gemma3ForCausalLM<B>, file: &GgufFile) -> Result<()> {
    let projections = model.model.layers.iter_mut().enumerate().flat_map(|(i, layer)| {
        let (attn, mlp) = (&mut layer.self_attn, &mut layer.mlp);
        layer_projections(
            i,
            [&mut attn.q_proj, &mut attn.k_proj, &mut attn.v_proj, &mut attn.o_proj],
            [&mut mlp.gate_proj, &mut mlp.up_proj, &mut mlp.down_proj],
        )
    });
    let untied = file.tensor_info("output.weight").is_some();
    let head = if untied { "lm_head.weight" } else { "model.embed_tokens.weight" };
    kept_blocks::keep_blocks(projections, (head, &mut model.lm_head), |name| match gguf_name(name) {
        Some(name) => file.tensor_blocks(&name),
        None => Ok(None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for (gguf, hf) in [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output_norm.weight", "model.norm.weight"),
            ("blk.0.attn_k_norm.weight", "model.layers.0.self_attn.k_norm.weight"),
            ("blk.17.post_ffw_norm.weight", "model.layers.17.post_feedforward_layernorm.weight"),
            ("blk.3.ffn_norm.weight", "model.layers.3.pre_feedforward_layernorm.weight"),
            ("blk.2.post_attention_norm.weight", "model.layers.2.post_attention_layernorm.weight"),
        ] {
            assert_eq!(hf_name(gguf).as_deref(), Some(hf), "{gguf}");
            assert_eq!(gguf_name(hf).as_deref(), Some(gguf), "{hf}");
        }
        for bad in ["blk.01.attn_q.weight", "blk.0.attn_qq.weight", "output", "blk.0.attn_q.scale"] {
            assert_eq!(hf_name(bad), None, "{bad}");
        }
    }
}
