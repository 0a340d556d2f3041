//! `config.json` of a Hugging Face Gemma 3 text model (`Gemma3TextConfig`, `model_type`
//! `gemma3_text`), and the attention type of each layer.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use nnsight::{Error, Result};

use crate::llama::{RopeParameters, RopeScaling};

/// How a layer attends: to a sliding window of the latest tokens, or to all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerType {
    /// `sliding_attention`: each token sees itself and the `sliding_window - 1` tokens before it;
    /// rotary base `rope_local_base_freq` (10,000).
    SlidingAttention,
    /// `full_attention`: causal attention over everything; rotary base `rope_theta` (1,000,000).
    FullAttention,
}

impl LayerType {
    /// transformers' name (`sliding_attention`, `full_attention`).
    pub fn name(self) -> &'static str {
        match self {
            LayerType::SlidingAttention => "sliding_attention",
            LayerType::FullAttention => "full_attention",
        }
    }
}

/// The hyper-parameters of a Gemma 3 text model, read from a Hugging Face `config.json` (field
/// names and defaults as transformers 5's `Gemma3TextConfig`; older configs' `rope_theta`,
/// `rope_local_base_freq`, `rope_scaling` and `sliding_window_pattern` are read too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gemma3Config {
    /// `gemma3_text` (a multimodal `gemma3` config keeps this under `text_config`).
    #[serde(default)]
    pub model_type: Option<String>,
    /// Vocabulary size (rows of `embed_tokens`).
    #[serde(default = "default_vocab_size")]
    pub vocab_size: usize,
    /// Width of the residual stream.
    #[serde(default = "default_hidden_size")]
    pub hidden_size: usize,
    /// Width of the MLP's gated hidden layer.
    #[serde(default = "default_intermediate_size")]
    pub intermediate_size: usize,
    /// Number of decoder layers (`model.layers`).
    #[serde(default = "default_layers")]
    pub num_hidden_layers: usize,
    /// Number of query heads.
    #[serde(default = "default_heads")]
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention).
    #[serde(default = "default_kv_heads")]
    pub num_key_value_heads: usize,
    /// Width of one head (Gemma's is not `hidden_size / num_attention_heads`).
    #[serde(default = "default_head_dim")]
    pub head_dim: usize,
    /// MLP activation: `gelu_pytorch_tanh` (GeGLU with the tanh approximation of GELU).
    #[serde(default = "default_activation")]
    pub hidden_activation: String,
    /// Longest sequence the model is meant for.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Standard deviation of the random initialisation ([`init`](Self::init)).
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
    /// Epsilon of every RMSNorm.
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// Id of the padding token.
    #[serde(default = "default_pad")]
    pub pad_token_id: Option<u32>,
    /// Ids of the end-of-sequence tokens (one id or a list).
    #[serde(default = "default_eos", deserialize_with = "crate::token_ids::one_or_many")]
    pub eos_token_id: Vec<u32>,
    /// Id of the beginning-of-sequence token.
    #[serde(default = "default_bos")]
    pub bos_token_id: Option<u32>,
    /// Whether `lm_head` shares its weight with `model.embed_tokens` (Gemma's always do).
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// Rotary parameters per layer type, as transformers 5 writes them
    /// (`{"full_attention": {...}, "sliding_attention": {...}}`).
    #[serde(default)]
    pub rope_parameters: Option<BTreeMap<LayerType, RopeParameters>>,
    /// Older configs: the rotary base of the full-attention layers.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Older configs: the rotary base of the sliding layers.
    #[serde(default)]
    pub rope_local_base_freq: Option<f64>,
    /// Older configs: the rotary scaling of the full-attention layers (`linear` for Gemma 3 4B+).
    #[serde(default)]
    pub rope_scaling: Option<RopeParameters>,
    /// Whether `q_proj`, `k_proj`, `v_proj` and `o_proj` have biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// The scores are scaled by `query_pre_attn_scalar^-0.5` (not `head_dim^-0.5`).
    #[serde(default = "default_query_pre_attn_scalar")]
    pub query_pre_attn_scalar: f64,
    /// The window of the sliding layers: each token sees itself and the `sliding_window - 1`
    /// tokens before it.
    #[serde(default = "default_sliding_window")]
    pub sliding_window: usize,
    /// Each layer's attention; when absent, every `sliding_window_pattern`-th layer (6th) is
    /// full attention and the others slide.
    #[serde(default)]
    pub layer_types: Option<Vec<LayerType>>,
    /// Older configs: the period of the full-attention layers.
    #[serde(default)]
    pub sliding_window_pattern: Option<usize>,
    /// Logits squashed to `cap · tanh(logits / cap)` when set (Gemma 2; `null` in Gemma 3).
    #[serde(default)]
    pub final_logit_softcapping: Option<f64>,
    /// Gemma 2's attention-score soft-capping; transformers' Gemma 3 attention does not apply it,
    /// and neither does this one (read only so that such configs load).
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    /// Bidirectional attention (EmbeddingGemma); not supported.
    #[serde(default)]
    pub use_bidirectional_attention: Option<bool>,
}

fn default_vocab_size() -> usize {
    262_208
}
fn default_hidden_size() -> usize {
    2304
}
fn default_intermediate_size() -> usize {
    9216
}
fn default_layers() -> usize {
    26
}
fn default_heads() -> usize {
    8
}
fn default_kv_heads() -> usize {
    4
}
fn default_head_dim() -> usize {
    256
}
fn default_activation() -> String {
    "gelu_pytorch_tanh".to_owned()
}
fn default_max_positions() -> usize {
    131_072
}
fn default_initializer_range() -> f64 {
    0.02
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_pad() -> Option<u32> {
    Some(0)
}
fn default_eos() -> Vec<u32> {
    vec![1]
}
fn default_bos() -> Option<u32> {
    Some(2)
}
fn default_true() -> bool {
    true
}
fn default_query_pre_attn_scalar() -> f64 {
    256.0
}
fn default_sliding_window() -> usize {
    4096
}

/// transformers' default rotary bases: 1,000,000 for full attention, 10,000 for sliding layers.
const DEFAULT_GLOBAL_THETA: f64 = 1_000_000.0;
const DEFAULT_LOCAL_THETA: f64 = 10_000.0;
/// transformers' default period of the full-attention layers.
const DEFAULT_PATTERN: usize = 6;

impl Gemma3Config {
    /// Reads and checks a `config.json`.
    ///
    /// # Errors
    /// [`Error::Load`] naming the file when it cannot be read, is not a Gemma 3 text config, or its
    /// numbers do not fit together (see [`validate`](Self::validate)).
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config_json::read(path, Self::from_json)
    }

    /// Parses and checks the text of a `config.json`; the error says what is wrong.
    ///
    /// # Errors
    /// [`Error::Config`] when the text is not a Gemma 3 text config or fails
    /// [`validate`](Self::validate).
    pub fn from_json(text: &str) -> Result<Self> {
        crate::config_json::parse(text, "Gemma 3", Self::validate)
    }

    /// The attention type of every layer: `layer_types`, else every `sliding_window_pattern`-th
    /// layer full and the others sliding (transformers' rule).
    pub fn layer_types(&self) -> Vec<LayerType> {
        if let Some(types) = &self.layer_types {
            return types.clone();
        }
        let pattern = self.sliding_window_pattern.unwrap_or(DEFAULT_PATTERN).max(1);
        (0..self.num_hidden_layers)
            .map(
                |i| {
                    if (i + 1) % pattern == 0 {
                        LayerType::FullAttention
                    } else {
                        LayerType::SlidingAttention
                    }
                },
            )
            .collect()
    }

    /// The rotary parameters of the layers of `layer_type`, as transformers 5 resolves them:
    /// `rope_parameters[layer_type]`, else the older fields (`rope_theta` and `rope_scaling` for
    /// full attention, `rope_local_base_freq` for sliding layers), else the defaults.
    pub fn rope_parameters(&self, layer_type: LayerType) -> RopeParameters {
        let mut params = self.rope_parameters.as_ref().and_then(|p| p.get(&layer_type).cloned());
        if params.is_none() && layer_type == LayerType::FullAttention {
            params = self.rope_scaling.clone();
        }
        let mut params = params.unwrap_or_default();
        if params.rope_theta.is_none() {
            params.rope_theta = Some(match layer_type {
                LayerType::FullAttention => self.rope_theta.unwrap_or(DEFAULT_GLOBAL_THETA),
                LayerType::SlidingAttention => self.rope_local_base_freq.unwrap_or(DEFAULT_LOCAL_THETA),
            });
        }
        params
    }

    /// The rotary base and scaling of the layers of `layer_type`.
    ///
    /// # Errors
    /// [`Error::Config`] for an unsupported `rope_type` or a missing or invalid parameter.
    pub fn rope(&self, layer_type: LayerType) -> Result<(f64, RopeScaling)> {
        self.rope_or_problem(layer_type).map_err(|problem| Error::Config { problem })
    }

    fn rope_or_problem(&self, layer_type: LayerType) -> Result<(f64, RopeScaling), String> {
        let params = self.rope_parameters(layer_type);
        let theta = params.rope_theta.unwrap_or(DEFAULT_GLOBAL_THETA);
        if !(theta.is_finite() && theta > 0.0) {
            return Err(format!(
                "the rope_theta of the {} layers must be positive, it is {theta}",
                layer_type.name()
            ));
        }
        let scaling = crate::llama::resolve_rope_scaling(Some(&params), self.max_position_embeddings)
            .map_err(|p| format!("{} layers: {p}", layer_type.name()))?;
        Ok((theta, scaling))
    }

    /// The token id used to pad batches: `pad_token_id`, else the first `eos_token_id`.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_token_id.or(self.eos_token_id.first().copied())
    }

    /// Checks that the numbers fit together and the model is one this implementation computes
    /// exactly.
    ///
    /// # Errors
    /// [`Error::Config`] naming the offending field.
    pub fn validate(&self) -> Result<()> {
        self.problems().map_err(|problem| Error::Config { problem })
    }

    fn problems(&self) -> Result<(), String> {
        if let Some(model_type) = self.model_type.as_deref()
            && model_type != "gemma3_text"
        {
            return Err(format!(
                "model_type `{model_type}` is not supported (gemma3_text is; a multimodal gemma3 config keeps it under `text_config`)"
            ));
        }
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_position_embeddings),
            ("sliding_window", self.sliding_window),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(format!("`{name}` is 0"));
        }
        if !self.num_attention_heads.is_multiple_of(self.num_key_value_heads) {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!("head_dim {} is odd; rotary embeddings need it even", self.head_dim));
        }
        if !matches!(self.hidden_activation.as_str(), "gelu_pytorch_tanh" | "gelu_new") {
            return Err(format!(
                "hidden_activation `{}` is not supported (gelu_pytorch_tanh is)",
                self.hidden_activation
            ));
        }
        let positive = [
            ("rms_norm_eps", Some(self.rms_norm_eps)),
            ("query_pre_attn_scalar", Some(self.query_pre_attn_scalar)),
            ("final_logit_softcapping", self.final_logit_softcapping),
        ];
        if let Some((name, value)) =
            positive.iter().find_map(|(n, v)| v.filter(|v| !(v.is_finite() && *v > 0.0)).map(|v| (n, v)))
        {
            return Err(format!("`{name}` must be positive, it is {value}"));
        }
        if self.use_bidirectional_attention == Some(true) {
            return Err("use_bidirectional_attention (EmbeddingGemma) is not supported".to_owned());
        }
        if self.sliding_window_pattern == Some(0) {
            return Err("`sliding_window_pattern` is 0".to_owned());
        }
        let types = self.layer_types();
        if types.len() != self.num_hidden_layers {
            return Err(format!(
                "layer_types lists {} layers but num_hidden_layers is {}",
                types.len(),
                self.num_hidden_layers
            ));
        }
        for layer_type in [LayerType::SlidingAttention, LayerType::FullAttention] {
            self.rope_or_problem(layer_type)?;
        }
        let ids = self.eos_token_id.iter().map(|&id| ("eos_token_id", id));
        let ids = ids.chain(self.pad_token_id.map(|id| ("pad_token_id", id)));
        if let Some((name, id)) = ids
            .chain(self.bos_token_id.map(|id| ("bos_token_id", id)))
            .find(|&(_, id)| id as usize >= self.vocab_size)
        {
            return Err(format!("`{name}` {id} is outside the vocabulary (vocab_size {})", self.vocab_size));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of `google/gemma-3-270m`'s config.json (transformers 5 spelling).
    const GEMMA3_270M: &str = r#"{
        "architectures": ["Gemma3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
        "attn_logit_softcapping": null, "bos_token_id": 2, "eos_token_id": 1,
        "final_logit_softcapping": null, "head_dim": 256, "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": 640, "initializer_range": 0.02, "intermediate_size": 2048,
        "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
            "sliding_attention", "full_attention", "sliding_attention", "sliding_attention",
            "sliding_attention", "sliding_attention", "sliding_attention", "full_attention",
            "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention",
            "sliding_attention", "full_attention"],
        "max_position_embeddings": 32768, "model_type": "gemma3_text", "num_attention_heads": 4,
        "num_hidden_layers": 18, "num_key_value_heads": 1, "pad_token_id": 0,
        "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06,
        "rope_parameters": {"full_attention": {"rope_theta": 1000000.0, "rope_type": "default"},
                            "sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}},
        "sliding_window": 512, "tie_word_embeddings": true, "use_bidirectional_attention": false,
        "use_cache": true, "vocab_size": 262144
    }"#;

    #[test]
    fn the_270m_config_reads() {
        let config = Gemma3Config::from_json(GEMMA3_270M).unwrap();
        let types = config.layer_types();
        assert_eq!(types.len(), 18);
        let full: Vec<usize> = types
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == LayerType::FullAttention)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(full, [5, 11, 17]);
        assert_eq!(config.rope(LayerType::FullAttention).unwrap(), (1e6, RopeScaling::Default));
        assert_eq!(config.rope(LayerType::SlidingAttention).unwrap(), (1e4, RopeScaling::Default));
        assert_eq!(config.pad_id(), Some(0));
    }

    #[test]
    fn older_configs_give_the_pattern_and_the_bases() {
        let text = r#"{"model_type": "gemma3_text", "num_hidden_layers": 7, "sliding_window_pattern": 3,
            "rope_theta": 500000.0, "rope_local_base_freq": 20000.0,
            "rope_scaling": {"rope_type": "linear", "factor": 8.0}}"#;
        let config = Gemma3Config::from_json(text).unwrap();
        use LayerType::{FullAttention as F, SlidingAttention as S};
        assert_eq!(config.layer_types(), [S, S, F, S, S, F, S]);
        assert_eq!(config.rope(F).unwrap(), (5e5, RopeScaling::Linear { factor: 8.0 }));
        assert_eq!(config.rope(S).unwrap(), (2e4, RopeScaling::Default));
        // transformers' defaults fill what is absent.
        assert_eq!(
            (config.head_dim, config.query_pre_attn_scalar, config.sliding_window),
            (256, 256.0, 4096)
        );
    }

    #[test]
    fn problems_are_named() {
        let cases = [
            (
                GEMMA3_270M.replace("\"num_key_value_heads\": 1", "\"num_key_value_heads\": 3"),
                "not a multiple of",
            ),
            (GEMMA3_270M.replace("gelu_pytorch_tanh", "relu"), "hidden_activation `relu`"),
            (
                GEMMA3_270M.replace("\"model_type\": \"gemma3_text\"", "\"model_type\": \"gemma3\""),
                "text_config",
            ),
            (
                GEMMA3_270M.replace("\"num_hidden_layers\": 18", "\"num_hidden_layers\": 17"),
                "lists 18 layers",
            ),
            (
                GEMMA3_270M.replace("\"sliding_window\": 512", "\"sliding_window\": 0"),
                "`sliding_window` is 0",
            ),
            (
                GEMMA3_270M.replace("\"query_pre_attn_scalar\": 256", "\"query_pre_attn_scalar\": -1"),
                "query_pre_attn_scalar",
            ),
            (
                GEMMA3_270M.replace("\"pad_token_id\": 0", "\"pad_token_id\": 262144"),
                "outside the vocabulary",
            ),
            (GEMMA3_270M.replace("\"rope_type\": \"default\"}}", "\"rope_type\": \"yarn\"}}"), "yarn"),
            (
                GEMMA3_270M.replace(
                    "\"use_bidirectional_attention\": false",
                    "\"use_bidirectional_attention\": true",
                ),
                "bidirectional",
            ),
            (
                GEMMA3_270M.replace(
                    "\"sliding_attention\", \"full_attention\"]",
                    "\"sliding_attention\", \"chunked\"]",
                ),
                "unknown variant",
            ),
        ];
        for (text, expected) in cases {
            let error = Gemma3Config::from_json(&text).expect_err(expected);
            assert!(matches!(error, Error::Config { .. }), "{error:?}");
            assert!(error.to_string().contains(expected), "`{error}` does not say `{expected}`");
        }
    }
}
