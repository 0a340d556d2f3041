//! llama.cpp's tensor names mapped to a family's Hugging Face parameter names and back: whole-model
//! tensors by table, per-layer tensors as `blk.{i}.<name>` ↔ `model.layers.{i}.<module>`.

/// A family's table of names: llama.cpp's module name and Hugging Face's, for whole-model and
/// per-layer tensors; the parameter suffix (`weight`, `bias`) is the same on both sides.
pub(crate) struct NameMap {
    /// Whole-model tensors (`token_embd` ↔ `model.embed_tokens`).
    pub(crate) global: &'static [(&'static str, &'static str)],
    /// Per-layer tensors after `blk.{i}.` ↔ after `model.layers.{i}.` (`attn_q` ↔ `self_attn.q_proj`).
    pub(crate) layer: &'static [(&'static str, &'static str)],
}

impl NameMap {
    /// The Hugging Face name of llama.cpp tensor `gguf_name`; `None` outside the table.
    pub(crate) fn hf_name(&self, gguf_name: &str) -> Option<String> {
        let (module, param) = split_param(gguf_name)?;
        if let Some((_, hf)) = self.global.iter().find(|(gguf, _)| *gguf == module) {
            return Some(format!("{hf}.{param}"));
        }
        let (layer, module) = module.strip_prefix("blk.")?.split_once('.')?;
        let layer = layer_index(layer)?;
        let (_, hf) = self.layer.iter().find(|(gguf, _)| *gguf == module)?;
        Some(format!("model.layers.{layer}.{hf}.{param}"))
    }

    /// The llama.cpp name of Hugging Face parameter `hf_name`: the inverse of
    /// [`hf_name`](Self::hf_name).
    pub(crate) fn gguf_name(&self, hf_name: &str) -> Option<String> {
        let (module, param) = split_param(hf_name)?;
        if let Some((gguf, _)) = self.global.iter().find(|(_, hf)| *hf == module) {
            return Some(format!("{gguf}.{param}"));
        }
        let (layer, module) = module.strip_prefix("model.layers.")?.split_once('.')?;
        let layer = layer_index(layer)?;
        let (gguf, _) = self.layer.iter().find(|(_, hf)| *hf == module)?;
        Some(format!("blk.{layer}.{gguf}.{param}"))
    }
}

/// `("blk.0.attn_q", "weight")` from `"blk.0.attn_q.weight"`.
fn split_param(name: &str) -> Option<(&str, &str)> {
    name.rsplit_once('.').filter(|(_, param)| matches!(*param, "weight" | "bias"))
}

/// A layer index written the canonical way (`"0"`, `"12"`; not `"01"` or `"+1"`).
fn layer_index(text: &str) -> Option<usize> {
    text.parse::<usize>().ok().filter(|i| i.to_string() == text)
}
