//! `config.json` of a Hugging Face BERT checkpoint (`bert-base-uncased`, MiniLM, …).

use std::path::Path;

use serde::{Deserialize, Serialize};

use nnsight::{Error, Result};

/// The hyper-parameters of a BERT encoder, read from a Hugging Face `config.json` (field names as
/// transformers' `BertConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// `bert`.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Vocabulary size (rows of `word_embeddings`).
    pub vocab_size: usize,
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Number of encoder layers (`encoder.layer`).
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    pub num_attention_heads: usize,
    /// Width of the intermediate (feed-forward) layer.
    pub intermediate_size: usize,
    /// Activation of the intermediate layer: `gelu` (exact), or `gelu_new` / `gelu_pytorch_tanh`.
    #[serde(default = "default_activation")]
    pub hidden_act: String,
    /// Longest sequence (rows of `position_embeddings`).
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Number of token types (rows of `token_type_embeddings`).
    #[serde(default = "default_type_vocab_size")]
    pub type_vocab_size: usize,
    /// Epsilon of every LayerNorm.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Id of the padding token.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// A decoder (causal) BERT; only encoders are computed here.
    #[serde(default)]
    pub is_decoder: bool,
    /// Standard deviation of the random initialisation.
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
}

fn default_activation() -> String {
    "gelu".to_owned()
}

fn default_max_positions() -> usize {
    512
}

fn default_type_vocab_size() -> usize {
    2
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

fn default_initializer_range() -> f64 {
    0.02
}

impl BertConfig {
    /// Reads and checks a `config.json`.
    ///
    /// # Errors
    /// [`Error::Load`] naming the file when it cannot be read, is not a BERT config, or its
    /// numbers do not fit together (see [`validate`](Self::validate)).
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config_json::read(path, Self::from_json)
    }

    /// Parses and checks the text of a `config.json`.
    ///
    /// # Errors
    /// [`Error::Config`] when the text is not a BERT config or fails [`validate`](Self::validate).
    pub fn from_json(text: &str) -> Result<Self> {
        crate::config_json::parse(text, "BERT", Self::validate)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Whether the intermediate GELU is the tanh approximation.
    pub fn approximate_gelu(&self) -> bool {
        self.hidden_act != "gelu"
    }

    /// Checks that the numbers fit together and the model is one this implementation computes
    /// exactly (an encoder with a GELU).
    ///
    /// # Errors
    /// [`Error::Config`] naming the offending field.
    pub fn validate(&self) -> Result<()> {
        self.problems().map_err(|problem| Error::Config { problem })
    }

    fn problems(&self) -> Result<(), String> {
        if let Some(model_type) = self.model_type.as_deref()
            && model_type != "bert"
        {
            return Err(format!("model_type is `{model_type}`, not `bert`"));
        }
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive, it is 0"));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !matches!(self.hidden_act.as_str(), "gelu" | "gelu_new" | "gelu_pytorch_tanh") {
            return Err(format!(
                "hidden_act `{}` is not supported (gelu, gelu_new, gelu_pytorch_tanh are)",
                self.hidden_act
            ));
        }
        if self.is_decoder {
            return Err("is_decoder is set: only BERT encoders are supported".to_owned());
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(format!("layer_norm_eps must be positive, it is {}", self.layer_norm_eps));
        }
        Ok(())
    }
}
