//! Building a CLIP model from a safetensors checkpoint (Hugging Face names and layouts) or from
//! random weights.

use burn::module::Param;
use burn::prelude::*;
use nnsight::HookPoint;
use nnsight::Result;

use super::{
    ClipActivation, ClipAttention, ClipConfig, ClipEncoder, ClipEncoderLayer, ClipMlp, ClipModel,
    ClipTextEmbeddings, ClipTextModel, ClipVisionEmbeddings, ClipVisionModel,
};
use crate::building::{check_layer_count, layer_norm, projection};
use crate::hub::ModelFiles;
use crate::vit::PatchProjection;
use crate::weights::{ByName, Kind, Random, Scope, TensorSource, Weights, embedding};

impl ClipConfig {
    /// A model of this shape with random weights (normal with std 0.02, norms 1, biases 0).
    ///
    /// # Panics
    /// If the config does not pass [`validate`](Self::validate).
    pub fn init<B: Backend>(&self, device: &B::Device) -> ClipModel<B> {
        if let Err(problem) = self.validate() {
            panic!("cannot initialise a CLIP model from an invalid config: {problem}");
        }
        let source = Random::<B> { std: 0.02, device: device.clone() };
        build(self, &source).expect("random initialisation of a valid config cannot fail")
    }
}

impl<B: Backend> ClipModel<B> {
    /// Loads a model from a Hub repository id (`openai/clip-vit-base-patch32`) or a local
    /// directory; see [`ModelFiles::resolve`].
    ///
    /// # Errors
    /// As [`from_files`](Self::from_files), and when the files cannot be found or fetched.
    pub fn from_pretrained(id: &str, device: &B::Device) -> Result<(Self, ClipConfig)> {
        Self::from_files(&ModelFiles::resolve(id)?, device)
    }

    /// Loads a model from `config.json` and safetensors weights with Hugging Face's names
    /// (`text_model.encoder.layers.0.self_attn.q_proj.weight`, `vision_model.pre_layrnorm.weight`,
    /// `logit_scale`, …), in F32, F16 or BF16.
    ///
    /// # Errors
    /// [`Error::Load`](nnsight::Error::Load) for a missing or invalid `config.json` or weights
    /// file; [`Error::MissingWeight`](nnsight::Error::MissingWeight) /
    /// [`Error::BadWeight`](nnsight::Error::BadWeight) naming a tensor.
    pub fn from_files(files: &ModelFiles, device: &B::Device) -> Result<(Self, ClipConfig)> {
        let config = ClipConfig::from_file(&files.config)?;
        let weights = Weights::open(&files.weights)?;
        for (tower, count) in [
            ("text_model.encoder.layers", config.text_config.num_hidden_layers),
            ("vision_model.encoder.layers", config.vision_config.num_hidden_layers),
        ] {
            check_layer_count(&weights, &[tower], count, &files.config, "num_hidden_layers")?;
        }
        let source = ByName::<_, B> {
            // `logit_scale` is a 0-dimensional tensor in the checkpoint, `[1]` here.
            read: |name: &str, shape: &[usize]| match (shape, weights.shape(name)) {
                ([1], Some([])) => {
                    let data = weights.read(name, &[])?.convert::<f32>();
                    Ok(TensorData::new(data.to_vec::<f32>().unwrap_or_default(), [1]))
                }
                _ => weights.read(name, shape),
            },
            origin: weights.describe(),
            device: device.clone(),
        };
        Ok((build(&config, &source)?, config))
    }
}

fn build<B: Backend, S: TensorSource<B>>(config: &ClipConfig, source: &S) -> Result<ClipModel<B>> {
    let root = Scope::new(source);
    let (t, v) = (&config.text_config, &config.vision_config);
    let text = root.pp("text_model");
    let temb = text.pp("embeddings");
    let text_model = ClipTextModel {
        embeddings: ClipTextEmbeddings {
            token_embedding: embedding(temb.get(
                "token_embedding.weight",
                [t.vocab_size, t.hidden_size],
                Kind::Weight,
            )?),
            position_embedding: embedding(temb.get(
                "position_embedding.weight",
                [t.max_position_embeddings, t.hidden_size],
                Kind::Weight,
            )?),
        },
        encoder: encoder(
            &text.pp("encoder"),
            t.num_hidden_layers,
            t.hidden_size,
            t.intermediate_size,
            t.num_attention_heads,
            t.layer_norm_eps,
            t.hidden_act == "quick_gelu",
        )?,
        final_layer_norm: layer_norm(&text.pp("final_layer_norm"), t.hidden_size, t.layer_norm_eps)?,
        eos_token_id: t.eos_token_id,
    };
    let vision = root.pp("vision_model");
    let vemb = vision.pp("embeddings");
    let (d, c, p) = (v.hidden_size, v.num_channels, v.patch_size);
    let kernel: Tensor<B, 4> = vemb.get("patch_embedding.weight", [d, c, p, p], Kind::Weight)?;
    let patches = (v.image_size / p) * (v.image_size / p);
    let vision_model = ClipVisionModel {
        embeddings: ClipVisionEmbeddings {
            class_embedding: Param::from_tensor(vemb.get("class_embedding", [d], Kind::Weight)?),
            patch_embedding: PatchProjection {
                weight: Param::from_tensor(kernel.reshape([d, c * p * p]).transpose()),
                bias: None,
                patch: (p, p),
            },
            position_embedding: embedding(vemb.get(
                "position_embedding.weight",
                [1 + patches, d],
                Kind::Weight,
            )?),
        },
        pre_layrnorm: layer_norm(&vision.pp("pre_layrnorm"), d, v.layer_norm_eps)?,
        encoder: encoder(
            &vision.pp("encoder"),
            v.num_hidden_layers,
            d,
            v.intermediate_size,
            v.num_attention_heads,
            v.layer_norm_eps,
            v.hidden_act == "quick_gelu",
        )?,
        post_layernorm: layer_norm(&vision.pp("post_layernorm"), d, v.layer_norm_eps)?,
    };
    let logit_scale = root.get("logit_scale", [1], Kind::Weight)?;
    Ok(ClipModel {
        text_model,
        vision_model,
        visual_projection: projection(&root.pp("visual_projection"), d, config.projection_dim, false)?,
        text_projection: projection(
            &root.pp("text_projection"),
            t.hidden_size,
            config.projection_dim,
            false,
        )?,
        logit_scale: Param::from_tensor(logit_scale),
    })
}

/// An encoder of `layers` layers, its tensors read in `vb` (`…encoder`).
fn encoder<B: Backend, S: TensorSource<B>>(
    vb: &Scope<'_, S>,
    layers: usize,
    d: usize,
    inner: usize,
    heads: usize,
    eps: f64,
    quick: bool,
) -> Result<ClipEncoder<B>> {
    let layers = (0..layers)
        .map(|i| {
            let l = vb.pp("layers").pp(i);
            let (attn, mlp) = (l.pp("self_attn"), l.pp("mlp"));
            Ok(ClipEncoderLayer {
                layer_norm1: layer_norm(&l.pp("layer_norm1"), d, eps)?,
                self_attn: ClipAttention {
                    q_proj: projection(&attn.pp("q_proj"), d, d, true)?,
                    k_proj: projection(&attn.pp("k_proj"), d, d, true)?,
                    v_proj: projection(&attn.pp("v_proj"), d, d, true)?,
                    out_proj: projection(&attn.pp("out_proj"), d, d, true)?,
                    attn_probs: HookPoint::new(),
                    num_heads: heads,
                    head_dim: d / heads,
                },
                layer_norm2: layer_norm(&l.pp("layer_norm2"), d, eps)?,
                mlp: ClipMlp {
                    fc1: projection(&mlp.pp("fc1"), d, inner, true)?,
                    activation_fn: ClipActivation::new(quick),
                    fc2: projection(&mlp.pp("fc2"), inner, d, true)?,
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ClipEncoder { layers })
}
