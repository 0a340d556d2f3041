//! `config.json` of a Hugging Face GPT-2 checkpoint.

use std::path::Path;

use serde::{Deserialize, Serialize};

use nnsight::{Error, Result};

/// The hyper-parameters of a GPT-2 model, read from a Hugging Face `config.json` (field names as
/// transformers' `GPT2Config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    /// Vocabulary size (rows of `wte`).
    pub vocab_size: usize,
    /// Longest sequence the position embedding covers (rows of `wpe`).
    pub n_positions: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Number of blocks (`transformer.h`).
    pub n_layer: usize,
    /// Number of attention heads.
    pub n_head: usize,
    /// Width of the MLP; `4 * n_embd` when absent.
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// MLP activation: `gelu_new` (GPT-2's tanh approximation), `gelu_pytorch_tanh` or `gelu`.
    #[serde(default = "default_activation")]
    pub activation_function: String,
    /// Epsilon of every LayerNorm.
    #[serde(default = "default_epsilon")]
    pub layer_norm_epsilon: f64,
    /// Divide attention scores by `sqrt(head_dim)`.
    #[serde(default = "default_true")]
    pub scale_attn_weights: bool,
    /// Also divide attention scores by `layer_index + 1`.
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    /// Whether `lm_head` shares its weight with `wte` (true for every released GPT-2).
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// Id of `<|endoftext|>`, also used as padding.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    /// Id of the padding token, when the checkpoint names one.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// The architecture transformers reads this config as (`gpt2`); another one (a Llama's
    /// config.json in the wrong directory) is an error, not a GPT-2 with odd weights.
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_activation() -> String {
    "gelu_new".to_owned()
}

fn default_epsilon() -> f64 {
    1e-5
}

fn default_true() -> bool {
    true
}

impl Gpt2Config {
    /// GPT-2 small (124M): 12 layers, width 768, 12 heads, vocabulary 50257, context 1024.
    pub fn gpt2_small() -> Self {
        Gpt2Config {
            vocab_size: 50257,
            n_positions: 1024,
            n_embd: 768,
            n_layer: 12,
            n_head: 12,
            n_inner: None,
            activation_function: default_activation(),
            layer_norm_epsilon: default_epsilon(),
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            tie_word_embeddings: true,
            eos_token_id: Some(50256),
            pad_token_id: None,
            model_type: Some("gpt2".to_owned()),
        }
    }

    /// Reads and checks a `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let load_error = |problem: String| Error::Load { source_name: path.display().to_string(), problem };
        let text = std::fs::read_to_string(path).map_err(|e| load_error(format!("cannot read it: {e}")))?;
        let config: Gpt2Config =
            serde_json::from_str(&text).map_err(|e| load_error(format!("not a GPT-2 config.json: {e}")))?;
        config.validate().map_err(|e| e.in_source(path.display()))?;
        Ok(config)
    }

    /// Width of the MLP's hidden layer.
    pub fn inner_dim(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Whether the MLP uses the tanh approximation of GELU.
    pub(crate) fn approximate_gelu(&self) -> bool {
        self.activation_function != "gelu"
    }

    /// Checks that the numbers fit together and the activation is one GPT-2 uses.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field.
    pub fn validate(&self) -> Result<()> {
        self.problems().map_err(|problem| Error::Config { problem })
    }

    fn problems(&self) -> Result<(), String> {
        if let Some(model_type) = self.model_type.as_deref()
            && model_type != "gpt2"
        {
            return Err(format!("model_type `{model_type}` is not GPT-2's (`gpt2`)"));
        }
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(format!("`{name}` is 0"));
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(format!("n_embd {} is not a multiple of n_head {}", self.n_embd, self.n_head));
        }
        if !matches!(self.activation_function.as_str(), "gelu_new" | "gelu_pytorch_tanh" | "gelu") {
            return Err(format!(
                "activation_function `{}` is not supported (gelu_new, gelu_pytorch_tanh, gelu are)",
                self.activation_function
            ));
        }
        for (name, id) in [("eos_token_id", self.eos_token_id), ("pad_token_id", self.pad_token_id)] {
            if let Some(id) = id
                && id as usize >= self.vocab_size
            {
                return Err(format!(
                    "`{name}` {id} is outside the vocabulary (vocab_size {})",
                    self.vocab_size
                ));
            }
        }
        Ok(())
    }
}
