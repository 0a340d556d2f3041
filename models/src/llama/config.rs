//! `config.json` of a Hugging Face Llama checkpoint (Llama 2/3/3.x, SmolLM2, Mistral).

use std::path::Path;

use serde::{Deserialize, Serialize};

use nnsight::{Error, Result};

/// The hyper-parameters of a Llama model, read from a Hugging Face `config.json` (field names as
/// transformers' `LlamaConfig`; Mistral's `MistralConfig` adds `sliding_window`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// `llama` or `mistral` (other architectures with these module names differ in details).
    #[serde(default)]
    pub model_type: Option<String>,
    /// Vocabulary size (rows of `embed_tokens` and `lm_head`).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP's gated hidden layer.
    pub intermediate_size: usize,
    /// Number of decoder layers (`model.layers`).
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention); `num_attention_heads` when absent.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Width of one head; `hidden_size / num_attention_heads` when absent.
    #[serde(default)]
    pub head_dim: Option<usize>,
    /// MLP activation; only `silu` is used by these models.
    #[serde(default = "default_activation")]
    pub hidden_act: String,
    /// Longest sequence the model is meant for.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Standard deviation of the random initialisation ([`init`](Self::init)).
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
    /// Epsilon of every RMSNorm.
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// Base of the rotary frequencies (older configs; newer ones put it in `rope_parameters`).
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Rotary scaling (`rope_type` `llama3`, `linear`), as most Hub configs spell it; `null` for none.
    #[serde(default)]
    pub rope_scaling: Option<RopeParameters>,
    /// Rotary parameters as transformers ≥ 5 writes them (`rope_theta` included).
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    /// Whether `q_proj`, `k_proj`, `v_proj` and `o_proj` have biases.
    #[serde(default)]
    pub attention_bias: bool,
    /// Whether `gate_proj`, `up_proj` and `down_proj` have biases.
    #[serde(default)]
    pub mlp_bias: bool,
    /// Mistral's sliding attention window: each token attends to itself and the
    /// `sliding_window - 1` tokens before it. `None`: full causal attention.
    #[serde(default)]
    pub sliding_window: Option<usize>,
    /// Whether `lm_head` shares its weight with `model.embed_tokens`.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Id of the beginning-of-sequence token.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// Ids of the end-of-sequence tokens (`eos_token_id`: one id or a list; empty when absent).
    #[serde(default, deserialize_with = "crate::token_ids::one_or_many")]
    pub eos_token_id: Vec<u32>,
    /// Id of the padding token, when the checkpoint names one.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

/// Rotary position embedding parameters: `rope_scaling` or `rope_parameters` of a `config.json`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RopeParameters {
    /// `default`, `linear` or `llama3` (older configs spell the key `type`).
    #[serde(default, alias = "type")]
    pub rope_type: Option<String>,
    /// Base of the frequencies (transformers ≥ 5 keeps it here).
    #[serde(default)]
    pub rope_theta: Option<f64>,
    /// Scaling factor (`linear`, `llama3`).
    #[serde(default)]
    pub factor: Option<f64>,
    /// `llama3`: wavelengths above `original_max_position_embeddings / low_freq_factor` are scaled.
    #[serde(default)]
    pub low_freq_factor: Option<f64>,
    /// `llama3`: wavelengths below `original_max_position_embeddings / high_freq_factor` are kept.
    #[serde(default)]
    pub high_freq_factor: Option<f64>,
    /// `llama3`: the context length of pre-training; `max_position_embeddings` when absent.
    #[serde(default)]
    pub original_max_position_embeddings: Option<usize>,
}

/// The rotary scaling a config asks for, resolved and checked (see [`LlamaConfig::rope_scaling`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// The original RoPE: `inv_freq[i] = theta^(-2i / head_dim)`.
    Default,
    /// Every frequency divided by `factor`.
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3.1's frequency-dependent scaling (transformers' `_compute_llama3_parameters`).
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f64,
        /// Sets the longest wavelength left unscaled-or-smoothed: `original / low_freq_factor`.
        low_freq_factor: f64,
        /// Sets the shortest wavelength that is smoothed: `original / high_freq_factor`.
        high_freq_factor: f64,
        /// The pre-training context length.
        original_max_position_embeddings: usize,
    },
}

fn default_activation() -> String {
    "silu".to_owned()
}

fn default_max_positions() -> usize {
    2048
}

fn default_initializer_range() -> f64 {
    0.02
}

fn default_rms_norm_eps() -> f64 {
    1e-6
}

/// The default `rope_theta` of transformers.
const DEFAULT_THETA: f64 = 10_000.0;

impl LlamaConfig {
    /// Reads and checks a `config.json`.
    ///
    /// # Errors
    /// [`Error::Load`] naming the file when it cannot be read, is not a Llama config, or its
    /// numbers do not fit together (see [`validate`](Self::validate)).
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config_json::read(path, Self::from_json)
    }

    /// Parses and checks the text of a `config.json`; the error says what is wrong.
    ///
    /// # Errors
    /// [`Error::Config`] when the text is not a Llama config or fails [`validate`](Self::validate).
    pub fn from_json(text: &str) -> Result<Self> {
        crate::config_json::parse(text, "Llama", Self::validate)
    }

    /// Number of key/value heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// The token id used to pad batches: `pad_token_id`, else the first `eos_token_id`.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_token_id.or(self.eos_token_id.first().copied())
    }

    /// The rotary parameters: `rope_scaling` when set, else `rope_parameters`.
    pub fn rope_parameters(&self) -> Option<&RopeParameters> {
        self.rope_scaling.as_ref().or(self.rope_parameters.as_ref())
    }

    /// Base of the rotary frequencies: from the rotary parameters, else `rope_theta`, else 10000.
    pub fn rope_theta(&self) -> f64 {
        self.rope_parameters().and_then(|p| p.rope_theta).or(self.rope_theta).unwrap_or(DEFAULT_THETA)
    }

    /// The rotary scaling, resolved as transformers does (missing `original_max_position_embeddings`
    /// falls back to `max_position_embeddings`).
    ///
    /// # Errors
    /// [`Error::Config`] for an unsupported `rope_type` or a missing or invalid parameter.
    pub fn rope_scaling(&self) -> Result<RopeScaling> {
        self.rope_scaling_or_problem().map_err(|problem| Error::Config { problem })
    }

    fn rope_scaling_or_problem(&self) -> Result<RopeScaling, String> {
        resolve_rope_scaling(self.rope_parameters(), self.max_position_embeddings)
    }

    /// Checks that the numbers fit together and the model is one this implementation computes
    /// exactly (SiLU MLP, supported rotary scaling, `llama`/`mistral` model type).
    ///
    /// # Errors
    /// [`Error::Config`] naming the offending field.
    pub fn validate(&self) -> Result<()> {
        self.problems().map_err(|problem| Error::Config { problem })
    }

    fn problems(&self) -> Result<(), String> {
        if let Some(model_type) = self.model_type.as_deref()
            && !matches!(model_type, "llama" | "mistral")
        {
            return Err(format!("model_type `{model_type}` is not supported (llama, mistral are)"));
        }
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.kv_heads()),
            ("head_dim", self.head_dim()),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(format!("`{name}` is 0"));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not a multiple of num_attention_heads {} (and no head_dim is given)",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.kv_heads()) {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.kv_heads()
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!("head_dim {} is odd; rotary embeddings need it even", self.head_dim()));
        }
        if self.hidden_act != "silu" {
            return Err(format!("hidden_act `{}` is not supported (silu is)", self.hidden_act));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err(format!("rms_norm_eps must be positive, it is {}", self.rms_norm_eps));
        }
        let theta = self.rope_theta();
        if !(theta.is_finite() && theta > 0.0) {
            return Err(format!("rope_theta must be positive, it is {theta}"));
        }
        if self.sliding_window == Some(0) {
            return Err("`sliding_window` is 0".to_owned());
        }
        let ids = self.eos_token_id.iter().map(|&id| ("eos_token_id", id));
        if let Some((name, id)) = ids
            .chain(self.pad_token_id.map(|id| ("pad_token_id", id)))
            .find(|&(_, id)| id as usize >= self.vocab_size)
        {
            return Err(format!("`{name}` {id} is outside the vocabulary (vocab_size {})", self.vocab_size));
        }
        self.rope_scaling_or_problem()?;
        Ok(())
    }
}

/// The rotary scaling `params` ask for (none: [`RopeScaling::Default`]), resolved as transformers
/// does (a missing `original_max_position_embeddings` falls back to `max_positions`); the
/// problem when it is unsupported or a parameter is missing or invalid.
pub(crate) fn resolve_rope_scaling(
    params: Option<&RopeParameters>,
    max_positions: usize,
) -> Result<RopeScaling, String> {
    let Some(params) = params else { return Ok(RopeScaling::Default) };
    let required = |name: &str, value: Option<f64>| {
        let value = value.ok_or_else(|| format!("rope_type `{}` needs `{name}`", rope_type(params)))?;
        if value.is_finite() && value > 0.0 {
            Ok(value)
        } else {
            Err(format!("rope `{name}` must be positive, it is {value}"))
        }
    };
    match rope_type(params) {
        "default" => Ok(RopeScaling::Default),
        "linear" => Ok(RopeScaling::Linear { factor: required("factor", params.factor)? }),
        "llama3" => {
            let low_freq_factor = required("low_freq_factor", params.low_freq_factor)?;
            let high_freq_factor = required("high_freq_factor", params.high_freq_factor)?;
            if high_freq_factor <= low_freq_factor {
                let (high, low) = (high_freq_factor, low_freq_factor);
                return Err(format!("rope high_freq_factor {high} must exceed low_freq_factor {low}"));
            }
            let original = params.original_max_position_embeddings.unwrap_or(max_positions);
            if original == 0 {
                return Err("rope `original_max_position_embeddings` is 0".to_owned());
            }
            Ok(RopeScaling::Llama3 {
                factor: required("factor", params.factor)?,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: original,
            })
        }
        other => Err(format!("rope_type `{other}` is not supported (default, linear, llama3 are)")),
    }
}

fn rope_type(params: &RopeParameters) -> &str {
    params.rope_type.as_deref().unwrap_or("default")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of `meta-llama/Llama-3.2-1B`'s config.json.
    const LLAMA_3_2: &str = r#"{
        "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
        "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu",
        "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
        "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
        "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
        "use_cache": true, "vocab_size": 128256
    }"#;

    /// The shape of `HuggingFaceTB/SmolLM2-135M-Instruct`'s config.json.
    const SMOLLM2: &str = r#"{
        "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
        "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 576,
        "initializer_range": 0.041666666666666664, "intermediate_size": 1536, "is_llama_config": true,
        "max_position_embeddings": 8192, "model_type": "llama", "num_attention_heads": 9,
        "num_hidden_layers": 30, "num_key_value_heads": 3, "pad_token_id": 2, "pretraining_tp": 1,
        "rms_norm_eps": 1e-05, "rope_interleaved": false, "rope_scaling": null, "rope_theta": 100000,
        "tie_word_embeddings": true, "torch_dtype": "bfloat16", "vocab_size": 49152
    }"#;

    #[test]
    fn a_llama_3_config_reads_with_its_scaling() {
        let config = LlamaConfig::from_json(LLAMA_3_2).unwrap();
        assert_eq!((config.kv_heads(), config.head_dim()), (8, 64));
        assert_eq!(config.rope_theta(), 500000.0);
        assert_eq!(
            config.rope_scaling().unwrap(),
            RopeScaling::Llama3 {
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192
            }
        );
        assert!(config.tie_word_embeddings);
        assert_eq!(config.pad_id(), Some(128001), "no pad token: the end-of-text token pads");
    }

    #[test]
    fn a_smollm2_config_reads_with_defaults() {
        let config = LlamaConfig::from_json(SMOLLM2).unwrap();
        assert_eq!((config.num_attention_heads, config.kv_heads(), config.head_dim()), (9, 3, 64));
        assert_eq!(config.rope_theta(), 100000.0);
        assert_eq!(config.rope_scaling().unwrap(), RopeScaling::Default);
        assert_eq!(config.pad_id(), Some(2));
        assert!(!config.attention_bias && !config.mlp_bias && config.sliding_window.is_none());
    }

    #[test]
    fn end_of_text_ids_may_be_a_list_or_absent() {
        let list =
            LLAMA_3_2.replace("\"eos_token_id\": 128001", "\"eos_token_id\": [128001, 128008, 128009]");
        let config = LlamaConfig::from_json(&list).unwrap();
        assert_eq!(config.eos_token_id, [128001, 128008, 128009]);
        assert_eq!(config.pad_id(), Some(128001));
        let none = LLAMA_3_2.replace("\"eos_token_id\": 128001", "\"eos_token_id\": null");
        assert_eq!(LlamaConfig::from_json(&none).unwrap().pad_id(), None);
    }

    #[test]
    fn transformers_5_rope_parameters_read_too() {
        let text = LLAMA_3_2
            .replace("\"rope_scaling\"", "\"rope_parameters\"")
            .replace("\"rope_type\": \"llama3\"}", "\"rope_type\": \"llama3\", \"rope_theta\": 250000.0}");
        let config = LlamaConfig::from_json(&text).unwrap();
        assert_eq!(config.rope_theta(), 250000.0, "the parameters' theta comes first");
        assert!(matches!(config.rope_scaling().unwrap(), RopeScaling::Llama3 { factor: 32.0, .. }));
    }

    #[test]
    fn problems_are_named() {
        let cases = [
            (
                SMOLLM2.replace("\"num_key_value_heads\": 3", "\"num_key_value_heads\": 4"),
                "not a multiple of",
            ),
            (SMOLLM2.replace("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\""), "hidden_act `gelu`"),
            (SMOLLM2.replace("\"model_type\": \"llama\"", "\"model_type\": \"qwen2\""), "model_type `qwen2`"),
            (SMOLLM2.replace("\"rope_scaling\": null", "\"rope_scaling\": {\"type\": \"yarn\"}"), "yarn"),
            (LLAMA_3_2.replace("\"factor\": 32.0, ", ""), "needs `factor`"),
            (SMOLLM2.replace("\"hidden_size\": 576", "\"hidden_size\": 0"), "`hidden_size` is 0"),
            (SMOLLM2.replace("\"vocab_size\"", "\"vocab\""), "missing field `vocab_size`"),
        ];
        for (text, expected) in cases {
            let error = LlamaConfig::from_json(&text).expect_err(expected);
            assert!(matches!(error, Error::Config { .. }), "{error:?}");
            assert!(error.to_string().contains(expected), "`{error}` does not say `{expected}`");
        }
    }
}
