//! An SAE's `cfg.json` as SAELens writes it: version 6 (`architecture`, `metadata.hook_name`, `k`)
//! or version 5 (top-level `hook_name`, `activation_fn_str`, `activation_fn_kwargs`).

use std::path::Path;

use nnsight::{Error, Result};
use serde_json::Value;

/// How an SAE turns pre-activations into features.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Architecture {
    /// `relu(h)`.
    Standard,
    /// The `k` largest pre-activations of each token, then `relu`; the others 0.
    /// `rescale` (SAELens' `rescale_acts_by_decoder_norm`): pre-activations are multiplied by
    /// the norms of the decoder's rows, features divided by them before decoding.
    TopK {
        /// How many features a token keeps.
        k: usize,
        /// Whether activations are scaled by the decoder rows' norms.
        rescale: bool,
    },
    /// `relu(h)` where `h > threshold` (a threshold per feature, the tensor `threshold`), else 0.
    JumpRelu,
}

/// How activations are normalised before encoding and restored after decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalization {
    /// None (also SAELens' `expected_average_only_in`, whose scale SAELens folds into the weights
    /// only when loading from its registry; `load_from_disk` applies nothing either).
    None,
    /// `x · √d_in / ‖x‖` per token; decoded values divided by the same factor.
    ConstantNormRescale,
    /// `(x − μ) / (σ + 1e-5)` per token (σ: the unbiased standard deviation); decoded values
    /// multiplied by σ and shifted by μ.
    LayerNorm,
}

/// What an SAE's `cfg.json` says.
#[derive(Clone, Debug, PartialEq)]
pub struct SaeConfig {
    /// The width of the activations it reads.
    pub d_in: usize,
    /// The number of features.
    pub d_sae: usize,
    /// How features are computed.
    pub architecture: Architecture,
    /// Whether `b_dec` is subtracted from the input before encoding.
    pub apply_b_dec_to_input: bool,
    /// The normalisation of activations.
    pub normalization: Normalization,
    /// The TransformerLens hook it was trained on (`blocks.8.hook_resid_pre`), if the config
    /// names one.
    pub hook_name: Option<String>,
    /// The model it was trained on, if the config names one.
    pub model_name: Option<String>,
}

impl SaeConfig {
    /// Reads `path` (a `cfg.json`).
    ///
    /// # Errors
    /// [`Error::Load`] naming the file for a file that cannot be read, is not JSON, or holds a
    /// configuration this crate cannot run (a missing or zero width, an architecture other than
    /// standard, top-k and JumpReLU, `hook_z` reshaping, an unknown normalisation).
    pub fn from_file(path: &Path) -> Result<SaeConfig> {
        let load = |problem: String| Error::Load { source_name: path.display().to_string(), problem };
        let text = std::fs::read_to_string(path).map_err(|e| load(format!("cannot read it: {e}")))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| load(format!("not JSON: {e}")))?;
        SaeConfig::from_json(&json).map_err(load)
    }

    /// The configuration in a parsed `cfg.json`; why it cannot be run otherwise.
    pub(crate) fn from_json(json: &Value) -> std::result::Result<SaeConfig, String> {
        let width = |key: &str| match json.get(key).and_then(Value::as_u64) {
            Some(0) | None => Err(format!("`{key}` must be a positive integer (found {:?})", json.get(key))),
            Some(n) => Ok(n as usize),
        };
        let (d_in, d_sae) = (width("d_in")?, width("d_sae")?);
        let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
        let metadata = json.get("metadata");
        // SAELens 6 keeps the hook in `metadata`; 5 at the top level.
        let hook_name =
            text(metadata.and_then(|m| m.get("hook_name"))).or_else(|| text(json.get("hook_name")));
        let model_name =
            text(metadata.and_then(|m| m.get("model_name"))).or_else(|| text(json.get("model_name")));
        let activation = text(json.get("activation_fn_str").or_else(|| json.get("activation_fn")));
        let architecture = match text(json.get("architecture")).as_deref() {
            // SAELens 5 spelled top-k as a standard SAE with a top-k activation.
            Some("standard") | None if activation.as_deref() == Some("topk") => {
                let k = json.pointer("/activation_fn_kwargs/k").and_then(Value::as_u64);
                Architecture::TopK {
                    k: k.ok_or("a top-k activation without `activation_fn_kwargs.k`")? as usize,
                    rescale: false,
                }
            }
            Some("standard") | None => match activation.as_deref() {
                None | Some("relu") => Architecture::Standard,
                Some(other) => {
                    return Err(format!("the activation `{other}` is not supported (relu, topk are)"));
                }
            },
            Some("topk") => {
                let k =
                    json.get("k").or_else(|| json.pointer("/activation_fn_kwargs/k")).and_then(Value::as_u64);
                let rescale =
                    json.get("rescale_acts_by_decoder_norm").and_then(Value::as_bool).unwrap_or(false);
                Architecture::TopK { k: k.ok_or("a top-k SAE without `k`")? as usize, rescale }
            }
            Some("jumprelu") => Architecture::JumpRelu,
            Some(other) => {
                return Err(format!(
                    "the architecture `{other}` is not supported (standard, topk, jumprelu are)"
                ));
            }
        };
        if let Architecture::TopK { k, .. } = architecture
            && (k == 0 || k > d_sae)
        {
            return Err(format!("top-k SAE with k = {k} of {d_sae} features"));
        }
        let normalization = match json.get("normalize_activations") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => Normalization::None,
            Some(Value::Bool(true)) => Normalization::None,
            Some(Value::String(mode)) => match mode.as_str() {
                "none" | "expected_average_only_in" => Normalization::None,
                "constant_norm_rescale" => Normalization::ConstantNormRescale,
                "layer_norm" => Normalization::LayerNorm,
                other => return Err(format!("`normalize_activations` `{other}` is not supported")),
            },
            Some(other) => return Err(format!("`normalize_activations` is {other}")),
        };
        let hook_z = text(json.get("reshape_activations")).as_deref() == Some("hook_z")
            || hook_name.as_deref().is_some_and(|h| h.ends_with("hook_z"));
        if hook_z {
            return Err(
                "SAEs on attention heads' `hook_z` are not supported (no hook name maps to it)".to_owned()
            );
        }
        let apply_b_dec_to_input = json.get("apply_b_dec_to_input").and_then(Value::as_bool).unwrap_or(true);
        Ok(SaeConfig {
            d_in,
            d_sae,
            architecture,
            apply_b_dec_to_input,
            normalization,
            hook_name,
            model_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_sae_lens_versions_read_and_what_cannot_run_is_refused() {
        let v6 = json!({"d_in": 4, "d_sae": 8, "architecture": "topk", "k": 2,
            "rescale_acts_by_decoder_norm": true, "normalize_activations": "layer_norm",
            "metadata": {"hook_name": "blocks.1.hook_resid_pre"}});
        let c = SaeConfig::from_json(&v6).unwrap();
        assert_eq!(c.architecture, Architecture::TopK { k: 2, rescale: true });
        assert_eq!(
            (c.normalization, c.hook_name.as_deref()),
            (Normalization::LayerNorm, Some("blocks.1.hook_resid_pre"))
        );
        let v5 = json!({"d_in": 4, "d_sae": 8, "hook_name": "blocks.0.hook_mlp_out",
            "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 3}, "normalize_activations": true});
        let c = SaeConfig::from_json(&v5).unwrap();
        assert_eq!(c.architecture, Architecture::TopK { k: 3, rescale: false });
        assert_eq!(c.hook_name.as_deref(), Some("blocks.0.hook_mlp_out"));
        for (bad, message) in [
            (json!({"d_in": 0, "d_sae": 8}), "`d_in` must be a positive"),
            (json!({"d_in": 4}), "`d_sae` must be"),
            (json!({"d_in": 4, "d_sae": 8, "architecture": "gated"}), "`gated` is not supported"),
            (json!({"d_in": 4, "d_sae": 8, "architecture": "topk", "k": 9}), "k = 9 of 8"),
            (json!({"d_in": 4, "d_sae": 8, "architecture": "topk"}), "without `k`"),
            (
                json!({"d_in": 4, "d_sae": 8, "activation_fn_str": "tanh-relu"}),
                "`tanh-relu` is not supported",
            ),
            (json!({"d_in": 4, "d_sae": 8, "reshape_activations": "hook_z"}), "hook_z"),
            (json!({"d_in": 4, "d_sae": 8, "normalize_activations": "whiten"}), "`whiten` is not supported"),
        ] {
            let error = SaeConfig::from_json(&bad).unwrap_err();
            assert!(error.contains(message), "{bad}: {error}");
        }
    }
}
