//! Building a ViT from a safetensors checkpoint or from random weights. The modules have
//! transformers 5's names (`layers.3.attention.q_proj`); checkpoints on the Hub, and those
//! transformers 5 itself writes, keep transformers 4's (`encoder.layer.3.attention.attention.query`):
//! both load.

use burn::module::Param;
use burn::nn::Gelu;
use burn::prelude::*;
use nnsight::HookPoint;
use nnsight::{Error, Result};

use super::{
    PatchProjection, ViTAttention, ViTConfig, ViTEmbeddings, ViTForImageClassification, ViTLayer, ViTMlp,
    ViTModel, ViTPatchEmbeddings, ViTPooler,
};
use crate::building::{check_layer_count, layer_norm, projection};
use crate::hub::ModelFiles;
use crate::weights::{ByName, Kind, Random, Scope, TensorSource, Weights};

/// transformers 4's name of the tensor transformers 5 calls `name` (the name itself when the two
/// agree).
pub(crate) fn legacy_name(name: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut pieces = name.split('.').peekable();
    while let Some(piece) = pieces.next() {
        match piece {
            "layers" if pieces.peek().is_some_and(|p| p.parse::<usize>().is_ok()) => {
                parts.extend(["encoder".to_owned(), "layer".to_owned()]);
            }
            "q_proj" => parts.extend(["attention".to_owned(), "query".to_owned()]),
            "k_proj" => parts.extend(["attention".to_owned(), "key".to_owned()]),
            "v_proj" => parts.extend(["attention".to_owned(), "value".to_owned()]),
            "o_proj" => parts.extend(["output".to_owned(), "dense".to_owned()]),
            "mlp" => {
                let (fc, dense) = match pieces.next() {
                    Some("fc1") => ("intermediate", "dense"),
                    Some("fc2") => ("output", "dense"),
                    other => {
                        parts.push("mlp".to_owned());
                        parts.extend(other.map(str::to_owned));
                        continue;
                    }
                };
                parts.extend([fc.to_owned(), dense.to_owned()]);
            }
            other => parts.push(other.to_owned()),
        }
    }
    parts.join(".")
}

/// The checkpoint's tensors by transformers 5 name: as written, or under transformers 4's name;
/// with or without the `vit.` prefix of a classifier's encoder.
fn reader<'w>(weights: &'w Weights) -> impl Fn(&str, &[usize]) -> Result<TensorData> + 'w {
    move |name: &str, shape: &[usize]| {
        let legacy = legacy_name(name);
        // A classifier's encoder is under `vit.`; an encoder alone has no prefix.
        let other_prefix = |n: &str| n.strip_prefix("vit.").map_or_else(|| format!("vit.{n}"), str::to_owned);
        let candidates = [name.to_owned(), legacy.clone(), other_prefix(name), other_prefix(&legacy)];
        match candidates.into_iter().find(|n| weights.contains(n)) {
            Some(found) => weights.read(&found, shape),
            None => Err(Error::MissingWeight { name: legacy, file: weights.describe() }),
        }
    }
}

impl ViTConfig {
    /// A classifier of this shape with random weights (normal with std `initializer_range`, norms
    /// 1, biases 0).
    ///
    /// # Panics
    /// If the config does not pass [`validate`](Self::validate).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ViTForImageClassification<B> {
        if let Err(problem) = self.validate() {
            panic!("cannot initialise a ViT from an invalid config: {problem}");
        }
        let source = Random::<B> { std: self.initializer_range, device: device.clone() };
        classifier(self, &source).expect("random initialisation of a valid config cannot fail")
    }
}

impl<B: Backend> ViTForImageClassification<B> {
    /// Loads a classifier from a Hub repository id (`google/vit-base-patch16-224`) or a local
    /// directory; see [`ModelFiles::resolve`].
    ///
    /// # Errors
    /// As [`from_files`](Self::from_files), and when the files cannot be found or fetched.
    pub fn from_pretrained(id: &str, device: &B::Device) -> Result<(Self, ViTConfig)> {
        Self::from_files(&ModelFiles::resolve(id)?, device)
    }

    /// Loads a classifier from `config.json` and safetensors weights (`nn.Linear` weights
    /// `[out, in]`, transposed here; F32, F16 or BF16).
    ///
    /// # Errors
    /// [`Error::Load`] for a missing or invalid `config.json`, an unreadable weights file, a
    /// config without `id2label`, or weights with more layers than the config;
    /// [`Error::MissingWeight`] / [`Error::BadWeight`] naming a tensor that is absent or has the
    /// wrong shape or dtype.
    pub fn from_files(files: &ModelFiles, device: &B::Device) -> Result<(Self, ViTConfig)> {
        let (config, weights) = open(files)?;
        if config.num_labels() == 0 {
            return Err(Error::Load {
                source_name: files.config.display().to_string(),
                problem: "id2label is empty: a classifier needs its classes (load the encoder with ViTModel)"
                    .to_owned(),
            });
        }
        let source =
            ByName::<_, B> { read: reader(&weights), origin: weights.describe(), device: device.clone() };
        Ok((classifier(&config, &source)?, config))
    }
}

impl<B: Backend> ViTModel<B> {
    /// Loads the encoder from a Hub repository id (`google/vit-base-patch16-224-in21k`) or a
    /// local directory; see [`ModelFiles::resolve`]. A classifier's checkpoint loads too (its
    /// encoder, without pooler).
    ///
    /// # Errors
    /// As [`from_files`](Self::from_files), and when the files cannot be found or fetched.
    pub fn from_pretrained(id: &str, device: &B::Device) -> Result<(Self, ViTConfig)> {
        Self::from_files(&ModelFiles::resolve(id)?, device)
    }

    /// Loads the encoder from `config.json` and safetensors weights; the pooler when the
    /// checkpoint has `pooler.dense.weight`.
    ///
    /// # Errors
    /// As [`ViTForImageClassification::from_files`], but without the `id2label` requirement.
    pub fn from_files(files: &ModelFiles, device: &B::Device) -> Result<(Self, ViTConfig)> {
        let (config, weights) = open(files)?;
        let pooler = weights.contains("pooler.dense.weight") || weights.contains("vit.pooler.dense.weight");
        let source =
            ByName::<_, B> { read: reader(&weights), origin: weights.describe(), device: device.clone() };
        Ok((encoder(&config, &Scope::new(&source), pooler)?, config))
    }
}

fn open(files: &ModelFiles) -> Result<(ViTConfig, Weights)> {
    let config = ViTConfig::from_file(&files.config)?;
    let weights = Weights::open(&files.weights)?;
    check_layer_count(
        &weights,
        &["layer", "layers"],
        config.num_hidden_layers,
        &files.config,
        "num_hidden_layers",
    )?;
    Ok((config, weights))
}

fn classifier<B: Backend, S: TensorSource<B>>(
    config: &ViTConfig,
    source: &S,
) -> Result<ViTForImageClassification<B>> {
    let root = Scope::new(source);
    Ok(ViTForImageClassification {
        vit: encoder(config, &root.pp("vit"), false)?,
        classifier: projection(&root.pp("classifier"), config.hidden_size, config.num_labels(), true)?,
        labels: config.labels(),
    })
}

/// The encoder, its tensors read in `vb` (`vit` of a classifier, the root of an encoder).
fn encoder<B: Backend, S: TensorSource<B>>(
    config: &ViTConfig,
    vb: &Scope<'_, S>,
    pooler: bool,
) -> Result<ViTModel<B>> {
    let d = config.hidden_size;
    let (ph, pw) = config.patch_size.hw();
    let channels = config.num_channels;
    let emb = vb.pp("embeddings");
    let conv = emb.pp("patch_embeddings").pp("projection");
    let kernel: Tensor<B, 4> = conv.get("weight", [d, channels, ph, pw], Kind::Weight)?;
    let patch_projection = PatchProjection {
        weight: Param::from_tensor(kernel.reshape([d, channels * ph * pw]).transpose()),
        bias: Some(Param::from_tensor(conv.get("bias", [d], Kind::Bias)?)),
        patch: (ph, pw),
    };
    let embeddings = ViTEmbeddings {
        cls_token: Param::from_tensor(emb.get("cls_token", [1, 1, d], Kind::Weight)?),
        patch_embeddings: ViTPatchEmbeddings { projection: patch_projection },
        position_embeddings: Param::from_tensor(emb.get(
            "position_embeddings",
            [1, config.num_patches() + 1, d],
            Kind::Weight,
        )?),
    };
    let layers = (0..config.num_hidden_layers)
        .map(|i| layer(config, &vb.pp("layers").pp(i)))
        .collect::<Result<Vec<_>>>()?;
    let pooler = if pooler {
        let width = config.pooler_output_size.unwrap_or(d);
        Some(ViTPooler { dense: projection(&vb.pp("pooler").pp("dense"), d, width, true)? })
    } else {
        None
    };
    Ok(ViTModel {
        embeddings,
        layers,
        layernorm: layer_norm(&vb.pp("layernorm"), config.hidden_size, config.layer_norm_eps)?,
        pooler,
        image_size: config.image_size.hw(),
        num_channels: channels,
    })
}

/// An encoder layer, its tensors read in `vb` (`layers.{i}`).
fn layer<B: Backend, S: TensorSource<B>>(config: &ViTConfig, vb: &Scope<'_, S>) -> Result<ViTLayer<B>> {
    let (d, inner) = (config.hidden_size, config.intermediate_size);
    let attn = vb.pp("attention");
    let qkv = |name: &str| projection(&attn.pp(name), d, d, config.qkv_bias);
    let gelu = if config.approximate_gelu() { Gelu::new_approximate() } else { Gelu::new() };
    Ok(ViTLayer {
        attention: ViTAttention {
            q_proj: qkv("q_proj")?,
            k_proj: qkv("k_proj")?,
            v_proj: qkv("v_proj")?,
            o_proj: projection(&attn.pp("o_proj"), d, d, true)?,
            attn_probs: HookPoint::new(),
            num_heads: config.num_attention_heads,
            head_dim: config.head_dim(),
        },
        layernorm_before: layer_norm(&vb.pp("layernorm_before"), config.hidden_size, config.layer_norm_eps)?,
        layernorm_after: layer_norm(&vb.pp("layernorm_after"), config.hidden_size, config.layer_norm_eps)?,
        mlp: ViTMlp {
            fc1: projection(&vb.pp("mlp").pp("fc1"), d, inner, true)?,
            activation_fn: gelu,
            fc2: projection(&vb.pp("mlp").pp("fc2"), inner, d, true)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::legacy_name;

    #[test]
    fn transformers_5_names_map_to_the_checkpoints_names() {
        for (new, old) in [
            ("vit.layers.3.attention.q_proj.weight", "vit.encoder.layer.3.attention.attention.query.weight"),
            ("layers.0.attention.v_proj.bias", "encoder.layer.0.attention.attention.value.bias"),
            ("vit.layers.1.attention.o_proj.weight", "vit.encoder.layer.1.attention.output.dense.weight"),
            ("vit.layers.1.mlp.fc1.bias", "vit.encoder.layer.1.intermediate.dense.bias"),
            ("vit.layers.11.mlp.fc2.weight", "vit.encoder.layer.11.output.dense.weight"),
            ("vit.layers.2.layernorm_before.weight", "vit.encoder.layer.2.layernorm_before.weight"),
            ("vit.embeddings.cls_token", "vit.embeddings.cls_token"),
            ("pooler.dense.weight", "pooler.dense.weight"),
        ] {
            assert_eq!(legacy_name(new), old);
        }
    }
}
