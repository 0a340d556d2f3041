//! `config.json` of a Hugging Face Mamba checkpoint (`state-spaces/mamba-130m-hf`, …).

use std::path::Path;

use serde::{Deserialize, Serialize};

use nnsight::{Error, Result};

/// The hyper-parameters of a Mamba model, read from a Hugging Face `config.json` (field names as
/// transformers' `MambaConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MambaConfig {
    /// `mamba` (Mamba2's `mamba2` has other modules).
    #[serde(default)]
    pub model_type: Option<String>,
    /// Vocabulary size (rows of `backbone.embeddings` and `lm_head`).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of one channel's SSM state (`N` in the paper).
    #[serde(default = "default_state_size")]
    pub state_size: usize,
    /// Number of Mamba blocks (`backbone.layers`).
    pub num_hidden_layers: usize,
    /// Epsilon of every RMSNorm.
    #[serde(default = "default_layer_norm_epsilon")]
    pub layer_norm_epsilon: f64,
    /// The mixer's inner width is `expand · hidden_size` (transformers ignores a saved
    /// `intermediate_size` and recomputes it so).
    #[serde(default = "default_expand")]
    pub expand: usize,
    /// Kernel width of the depthwise causal convolution.
    #[serde(default = "default_conv_kernel")]
    pub conv_kernel: usize,
    /// Whether `in_proj` and `out_proj` have biases.
    #[serde(default)]
    pub use_bias: bool,
    /// Whether `conv1d` has a bias.
    #[serde(default = "default_true")]
    pub use_conv_bias: bool,
    /// The mixer's activation; only `silu` is computed here.
    #[serde(default = "default_activation")]
    pub hidden_act: String,
    /// Rank of the time-step projection: a number, or `"auto"` for `ceil(hidden_size / 16)`.
    #[serde(default)]
    pub time_step_rank: Option<serde_json::Value>,
    /// Standard deviation of the random initialisation ([`init`](Self::init)).
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
    /// Whether `lm_head` shares its weight with `backbone.embeddings`.
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// Id of the beginning-of-sequence token.
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// Ids of the end-of-sequence tokens (`eos_token_id`: one id or a list; empty when absent).
    #[serde(default, deserialize_with = "crate::token_ids::one_or_many")]
    pub eos_token_id: Vec<u32>,
    /// Id of the padding token.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_state_size() -> usize {
    16
}

fn default_layer_norm_epsilon() -> f64 {
    1e-5
}

fn default_expand() -> usize {
    2
}

fn default_conv_kernel() -> usize {
    4
}

fn default_true() -> bool {
    true
}

fn default_activation() -> String {
    "silu".to_owned()
}

fn default_initializer_range() -> f64 {
    0.1
}

impl MambaConfig {
    /// Reads and checks a `config.json`.
    ///
    /// # Errors
    /// [`Error::Load`] naming the file when it cannot be read, is not a Mamba config, or its
    /// numbers do not fit together (see [`validate`](Self::validate)).
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config_json::read(path, Self::from_json)
    }

    /// Parses and checks the text of a `config.json`.
    ///
    /// # Errors
    /// [`Error::Config`] when the text is not a Mamba config or fails [`validate`](Self::validate).
    pub fn from_json(text: &str) -> Result<Self> {
        crate::config_json::parse(text, "Mamba", Self::validate)
    }

    /// Width of the mixer's inner channels, `expand · hidden_size`.
    pub fn inner(&self) -> usize {
        self.expand * self.hidden_size
    }

    /// Rank of the time-step projection (`dt_proj`'s input width).
    pub fn dt_rank(&self) -> usize {
        self.time_step_rank().unwrap_or(0)
    }

    fn time_step_rank(&self) -> Result<usize, String> {
        match &self.time_step_rank {
            None => Ok(self.hidden_size.div_ceil(16)),
            Some(serde_json::Value::String(s)) if s == "auto" => Ok(self.hidden_size.div_ceil(16)),
            Some(serde_json::Value::Number(n)) => n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| format!("time_step_rank must be a positive integer or \"auto\", it is {n}")),
            Some(other) => {
                Err(format!("time_step_rank must be a positive integer or \"auto\", it is {other}"))
            }
        }
    }

    /// The token id used to pad batches: `pad_token_id`, else the first `eos_token_id`.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_token_id.or(self.eos_token_id.first().copied())
    }

    /// Checks that the numbers fit together and the model is one this implementation computes
    /// exactly (SiLU, model type `mamba`).
    ///
    /// # Errors
    /// [`Error::Config`] naming the offending field.
    pub fn validate(&self) -> Result<()> {
        self.problems().map_err(|problem| Error::Config { problem })
    }

    fn problems(&self) -> Result<(), String> {
        if let Some(model_type) = self.model_type.as_deref()
            && model_type != "mamba"
        {
            return Err(format!("model_type is `{model_type}`, not `mamba`"));
        }
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("state_size", self.state_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("conv_kernel", self.conv_kernel),
            ("expand", self.expand),
            ("time_step_rank", self.time_step_rank()?),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive, it is 0"));
        }
        if self.hidden_act != "silu" {
            return Err(format!("hidden_act `{}` is not supported (only silu is)", self.hidden_act));
        }
        if !(self.layer_norm_epsilon.is_finite() && self.layer_norm_epsilon > 0.0) {
            return Err(format!("layer_norm_epsilon must be positive, it is {}", self.layer_norm_epsilon));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"{"vocab_size": 32, "hidden_size": 40, "num_hidden_layers": 2}"#;

    #[test]
    fn defaults_follow_transformers() {
        let config = MambaConfig::from_json(TINY).unwrap();
        assert_eq!((config.inner(), config.dt_rank(), config.state_size, config.conv_kernel), (80, 3, 16, 4));
        assert!(config.tie_word_embeddings && config.use_conv_bias && !config.use_bias);
        let ranked = MambaConfig::from_json(&TINY.replace('}', r#", "time_step_rank": 5}"#)).unwrap();
        assert_eq!(ranked.dt_rank(), 5);
    }

    #[test]
    fn bad_configs_name_the_field() {
        for (extra, field) in [
            (r#", "time_step_rank": "big""#, "time_step_rank"),
            (r#", "time_step_rank": -2"#, "time_step_rank"),
            (r#", "conv_kernel": 0"#, "conv_kernel"),
            (r#", "hidden_act": "gelu""#, "hidden_act"),
            (r#", "model_type": "mamba2""#, "model_type"),
            (r#", "layer_norm_epsilon": 0.0"#, "layer_norm_epsilon"),
        ] {
            let text = TINY.replace('}', &format!("{extra}}}"));
            let err = MambaConfig::from_json(&text).unwrap_err().to_string();
            assert!(err.contains(field), "{extra}: {err}");
        }
    }
}
