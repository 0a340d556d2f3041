//! `config.json` of a Hugging Face ViT checkpoint (`google/vit-base-patch16-224`, …).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use nnsight::{Error, Result};

/// The hyper-parameters of a ViT, read from a Hugging Face `config.json` (field names as
/// transformers' `ViTConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViTConfig {
    /// `vit`.
    #[serde(default)]
    pub model_type: Option<String>,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Number of encoder layers (`layers`).
    pub num_hidden_layers: usize,
    /// Number of attention heads.
    pub num_attention_heads: usize,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: usize,
    /// MLP activation: `gelu` (exact) or `gelu_pytorch_tanh` / `gelu_new` (tanh approximation).
    #[serde(default = "default_activation")]
    pub hidden_act: String,
    /// Epsilon of every LayerNorm.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Side of the (square) input image, or `[height, width]`.
    #[serde(default = "default_image_size")]
    pub image_size: Size,
    /// Side of a patch, or `[height, width]`.
    #[serde(default = "default_patch_size")]
    pub patch_size: Size,
    /// Channels of the input image.
    #[serde(default = "default_channels")]
    pub num_channels: usize,
    /// Whether the query, key and value projections have biases.
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
    /// Width of the pooler's output (`hidden_size` when absent).
    #[serde(default)]
    pub pooler_output_size: Option<usize>,
    /// The pooler's activation; only `tanh` is computed here.
    #[serde(default = "default_pooler_act")]
    pub pooler_act: String,
    /// Class names by class index (a classification head has one output per entry).
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    /// Standard deviation of the random initialisation ([`init`](Self::init)).
    #[serde(default = "default_initializer_range")]
    pub initializer_range: f64,
}

/// An image or patch size: one side, or `[height, width]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    /// A square.
    Square(usize),
    /// `[height, width]`.
    HeightWidth([usize; 2]),
}

impl Size {
    /// `(height, width)`.
    pub fn hw(self) -> (usize, usize) {
        match self {
            Size::Square(side) => (side, side),
            Size::HeightWidth([h, w]) => (h, w),
        }
    }
}

fn default_activation() -> String {
    "gelu".to_owned()
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

fn default_image_size() -> Size {
    Size::Square(224)
}

fn default_patch_size() -> Size {
    Size::Square(16)
}

fn default_channels() -> usize {
    3
}

fn default_true() -> bool {
    true
}

fn default_pooler_act() -> String {
    "tanh".to_owned()
}

fn default_initializer_range() -> f64 {
    0.02
}

impl ViTConfig {
    /// Reads and checks a `config.json`.
    ///
    /// # Errors
    /// [`Error::Load`] naming the file when it cannot be read, is not a ViT config, or its
    /// numbers do not fit together (see [`validate`](Self::validate)).
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::config_json::read(path, Self::from_json)
    }

    /// Parses and checks the text of a `config.json`.
    ///
    /// # Errors
    /// [`Error::Config`] when the text is not a ViT config or fails [`validate`](Self::validate).
    pub fn from_json(text: &str) -> Result<Self> {
        crate::config_json::parse(text, "ViT", Self::validate)
    }

    /// Patches per image: `(height / patch) · (width / patch)`.
    pub fn num_patches(&self) -> usize {
        let ((h, w), (ph, pw)) = (self.image_size.hw(), self.patch_size.hw());
        (h / ph) * (w / pw)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Number of classes of a classification head (entries of `id2label`).
    pub fn num_labels(&self) -> usize {
        self.id2label.len()
    }

    /// The class names in class order (`id2label`'s values; `LABEL_i` where an index is missing).
    pub fn labels(&self) -> Vec<String> {
        (0..self.num_labels())
            .map(|i| self.id2label.get(&i.to_string()).cloned().unwrap_or_else(|| format!("LABEL_{i}")))
            .collect()
    }

    /// Whether the MLP's GELU is the tanh approximation.
    pub fn approximate_gelu(&self) -> bool {
        self.hidden_act != "gelu"
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
            && model_type != "vit"
        {
            return Err(format!("model_type is `{model_type}`, not `vit`"));
        }
        let ((h, w), (ph, pw)) = (self.image_size.hw(), self.patch_size.hw());
        let positive = [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("num_channels", self.num_channels),
            ("image_size", h.min(w)),
            ("patch_size", ph.min(pw)),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be positive, it is 0"));
        }
        if !h.is_multiple_of(ph) || !w.is_multiple_of(pw) {
            return Err(format!("image_size {h}×{w} is not a whole number of {ph}×{pw} patches"));
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !matches!(self.hidden_act.as_str(), "gelu" | "gelu_pytorch_tanh" | "gelu_new") {
            return Err(format!(
                "hidden_act `{}` is not supported (gelu, gelu_pytorch_tanh, gelu_new are)",
                self.hidden_act
            ));
        }
        if self.pooler_act != "tanh" {
            return Err(format!("pooler_act `{}` is not supported (only tanh is)", self.pooler_act));
        }
        if let Some(key) = self.id2label.keys().find(|k| k.parse::<usize>().is_err()) {
            return Err(format!("id2label has the key `{key}`, not a class index"));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(format!("layer_norm_eps must be positive, it is {}", self.layer_norm_eps));
        }
        Ok(())
    }
}
