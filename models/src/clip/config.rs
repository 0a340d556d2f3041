//! `config.json` of a Hugging Face CLIP checkpoint (`CLIPConfig`: a text and a vision config).

use std::path::Path;

use serde::{Deserialize, Serialize};

use nnsight::{Error, Result};

/// The hyper-parameters of a CLIP model (field names and defaults as transformers' `CLIPConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    /// The text tower.
    #[serde(default)]
    pub text_config: ClipTextConfig,
    /// The vision tower.
    #[serde(default)]
    pub vision_config: ClipVisionConfig,
    /// Width of the shared embedding space (`text_projection`, `visual_projection`).
    #[serde(default = "d512")]
    pub projection_dim: usize,
    /// `logit_scale`'s initial value (the checkpoint stores the trained one).
    #[serde(default = "logit_scale")]
    pub logit_scale_init_value: f64,
}

/// The text tower (`CLIPTextConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipTextConfig {
    /// Vocabulary size.
    #[serde(default = "vocab")]
    pub vocab_size: usize,
    /// Width of the residual stream.
    #[serde(default = "d512")]
    pub hidden_size: usize,
    /// Width of the MLP.
    #[serde(default = "d2048")]
    pub intermediate_size: usize,
    /// Number of encoder layers.
    #[serde(default = "twelve")]
    pub num_hidden_layers: usize,
    /// Number of heads.
    #[serde(default = "eight")]
    pub num_attention_heads: usize,
    /// Longest text (77 tokens for OpenAI's CLIP).
    #[serde(default = "positions")]
    pub max_position_embeddings: usize,
    /// The MLP's activation: `quick_gelu` or `gelu`.
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    /// Epsilon of every LayerNorm.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    /// The end-of-text id, whose position pools the text (`2`: the largest id's position, as
    /// checkpoints older than transformers' PR 24773 say).
    #[serde(default = "eos")]
    pub eos_token_id: u32,
    /// The padding id.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

/// The vision tower (`CLIPVisionConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipVisionConfig {
    /// Width of the residual stream.
    #[serde(default = "d768")]
    pub hidden_size: usize,
    /// Width of the MLP.
    #[serde(default = "d3072")]
    pub intermediate_size: usize,
    /// Number of encoder layers.
    #[serde(default = "twelve")]
    pub num_hidden_layers: usize,
    /// Number of heads.
    #[serde(default = "twelve")]
    pub num_attention_heads: usize,
    /// Input channels.
    #[serde(default = "three")]
    pub num_channels: usize,
    /// Side of the (square) input image.
    #[serde(default = "image")]
    pub image_size: usize,
    /// Side of a (square) patch.
    #[serde(default = "patch")]
    pub patch_size: usize,
    /// The MLP's activation: `quick_gelu` or `gelu`.
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    /// Epsilon of every LayerNorm.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
}

fn d512() -> usize {
    512
}
fn d768() -> usize {
    768
}
fn d2048() -> usize {
    2048
}
fn d3072() -> usize {
    3072
}
fn vocab() -> usize {
    49408
}
fn twelve() -> usize {
    12
}
fn eight() -> usize {
    8
}
fn three() -> usize {
    3
}
fn positions() -> usize {
    77
}
fn image() -> usize {
    224
}
fn patch() -> usize {
    32
}
fn quick_gelu() -> String {
    "quick_gelu".to_owned()
}
fn eps() -> f64 {
    1e-5
}
fn eos() -> u32 {
    49407
}
fn logit_scale() -> f64 {
    2.6592
}

impl Default for ClipTextConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every field has a default")
    }
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every field has a default")
    }
}

impl ClipConfig {
    /// Reads and checks a `config.json`.
    ///
    /// # Errors
    /// [`Error::Load`] naming the file when it cannot be read, is not a CLIP config, or fails
    /// [`validate`](Self::validate).
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config_json::read(path, Self::from_json)
    }

    /// Parses and checks the text of a `config.json`.
    ///
    /// # Errors
    /// [`Error::Config`] saying what is wrong.
    pub fn from_json(text: &str) -> Result<Self> {
        crate::config_json::parse(text, "CLIP", Self::validate)
    }

    /// Checks that the numbers fit together and the activations are ones this implementation
    /// computes.
    ///
    /// # Errors
    /// [`Error::Config`] naming the offending field.
    pub fn validate(&self) -> Result<()> {
        self.problems().map_err(|problem| Error::Config { problem })
    }

    fn problems(&self) -> Result<(), String> {
        let (t, v) = (&self.text_config, &self.vision_config);
        let sizes = [
            ("projection_dim", self.projection_dim),
            ("text_config.vocab_size", t.vocab_size),
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.intermediate_size", t.intermediate_size),
            ("text_config.num_hidden_layers", t.num_hidden_layers),
            ("text_config.num_attention_heads", t.num_attention_heads),
            ("text_config.max_position_embeddings", t.max_position_embeddings),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.intermediate_size", v.intermediate_size),
            ("vision_config.num_hidden_layers", v.num_hidden_layers),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.num_channels", v.num_channels),
            ("vision_config.image_size", v.image_size),
            ("vision_config.patch_size", v.patch_size),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, n)| *n == 0) {
            return Err(format!("`{name}` is 0"));
        }
        for (tower, hidden, heads) in
            [("text", t.hidden_size, t.num_attention_heads), ("vision", v.hidden_size, v.num_attention_heads)]
        {
            if !hidden.is_multiple_of(heads) {
                return Err(format!(
                    "{tower}_config.hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
                ));
            }
        }
        if !v.image_size.is_multiple_of(v.patch_size) {
            return Err(format!(
                "vision_config.image_size {} is not a multiple of patch_size {}",
                v.image_size, v.patch_size
            ));
        }
        for (name, act) in [("text_config", &t.hidden_act), ("vision_config", &v.hidden_act)] {
            if !matches!(act.as_str(), "quick_gelu" | "gelu") {
                return Err(format!("{name}.hidden_act `{act}` is not supported (quick_gelu and gelu are)"));
            }
        }
        for (name, e) in [("text_config", t.layer_norm_eps), ("vision_config", v.layer_norm_eps)] {
            if !(e.is_finite() && e > 0.0) {
                return Err(format!("{name}.layer_norm_eps must be positive, it is {e}"));
            }
        }
        if t.eos_token_id as usize >= t.vocab_size && t.eos_token_id != 2 {
            return Err(format!(
                "text_config.eos_token_id {} is outside the vocabulary ({})",
                t.eos_token_id, t.vocab_size
            ));
        }
        Ok(())
    }
}
