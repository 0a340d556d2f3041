//! Building a BERT encoder from a safetensors checkpoint (names with or without the `bert.`
//! prefix of a task model) or from random weights.

use burn::nn::Gelu;
use burn::prelude::*;
use nnsight::HookPoint;
use nnsight::Result;

use super::{
    BertAttention, BertConfig, BertEmbeddings, BertEncoder, BertIntermediate, BertLayer, BertModel,
    BertOutput, BertPooler, BertSelfAttention, BertSelfOutput,
};
use crate::building::{check_layer_count, layer_norm, projection};
use crate::hub::ModelFiles;
use crate::weights::{ByName, Kind, Random, Scope, TensorSource, Weights, embedding};

impl BertConfig {
    /// An encoder of this shape (with a pooler) with random weights.
    ///
    /// # Panics
    /// If the config does not pass [`validate`](Self::validate).
    pub fn init<B: Backend>(&self, device: &B::Device) -> BertModel<B> {
        if let Err(problem) = self.validate() {
            panic!("cannot initialise a BERT from an invalid config: {problem}");
        }
        let source = Random::<B> { std: self.initializer_range, device: device.clone() };
        build(self, &Scope::new(&source), true).expect("random initialisation of a valid config cannot fail")
    }
}

impl<B: Backend> BertModel<B> {
    /// Loads an encoder from a Hub repository id (`sentence-transformers/all-MiniLM-L6-v2`) or a
    /// local directory; see [`ModelFiles::resolve`].
    ///
    /// # Errors
    /// As [`from_files`](Self::from_files), and when the files cannot be found or fetched.
    pub fn from_pretrained(id: &str, device: &B::Device) -> Result<(Self, BertConfig)> {
        Self::from_files(&ModelFiles::resolve(id)?, device)
    }

    /// Loads an encoder from `config.json` and safetensors weights (`embeddings.…`,
    /// `encoder.layer.0.…`, optionally under `bert.`; `nn.Linear` weights transposed here), with
    /// the pooler when the checkpoint has `pooler.dense.weight`.
    ///
    /// # Errors
    /// [`Error::Load`](nnsight::Error::Load) for a missing or invalid `config.json`, an unreadable weights file, or
    /// weights with more layers than the config; [`Error::MissingWeight`](nnsight::Error::MissingWeight) / [`Error::BadWeight`](nnsight::Error::BadWeight)
    /// naming a tensor that is absent or has the wrong shape or dtype.
    pub fn from_files(files: &ModelFiles, device: &B::Device) -> Result<(Self, BertConfig)> {
        let config = BertConfig::from_file(&files.config)?;
        let weights = Weights::open(&files.weights)?;
        check_layer_count(
            &weights,
            &["layer"],
            config.num_hidden_layers,
            &files.config,
            "num_hidden_layers",
        )?;
        let prefixed = !weights.contains("embeddings.word_embeddings.weight")
            && weights.contains("bert.embeddings.word_embeddings.weight");
        let pooler =
            weights.contains(if prefixed { "bert.pooler.dense.weight" } else { "pooler.dense.weight" });
        let read = |name: &str, shape: &[usize]| {
            if prefixed { weights.read(&format!("bert.{name}"), shape) } else { weights.read(name, shape) }
        };
        let source = ByName::<_, B> { read, origin: weights.describe(), device: device.clone() };
        Ok((build(&config, &Scope::new(&source), pooler)?, config))
    }
}

fn build<B: Backend, S: TensorSource<B>>(
    config: &BertConfig,
    vb: &Scope<'_, S>,
    pooler: bool,
) -> Result<BertModel<B>> {
    let d = config.hidden_size;
    let emb = vb.pp("embeddings");
    let embeddings = BertEmbeddings {
        word_embeddings: embedding(emb.get(
            "word_embeddings.weight",
            [config.vocab_size, d],
            Kind::Weight,
        )?),
        position_embeddings: embedding(emb.get(
            "position_embeddings.weight",
            [config.max_position_embeddings, d],
            Kind::Weight,
        )?),
        token_type_embeddings: embedding(emb.get(
            "token_type_embeddings.weight",
            [config.type_vocab_size, d],
            Kind::Weight,
        )?),
        layer_norm: layer_norm(&emb.pp("LayerNorm"), d, config.layer_norm_eps)?,
    };
    let layer = (0..config.num_hidden_layers)
        .map(|i| encoder_layer(config, &vb.pp("encoder").pp("layer").pp(i)))
        .collect::<Result<Vec<_>>>()?;
    let pooler = if pooler {
        Some(BertPooler { dense: projection(&vb.pp("pooler").pp("dense"), d, d, true)? })
    } else {
        None
    };
    Ok(BertModel {
        embeddings,
        encoder: BertEncoder { layer },
        pooler,
        max_positions: config.max_position_embeddings,
    })
}

/// An encoder layer, its tensors read in `vb` (`encoder.layer.{i}`).
fn encoder_layer<B: Backend, S: TensorSource<B>>(
    config: &BertConfig,
    vb: &Scope<'_, S>,
) -> Result<BertLayer<B>> {
    let (d, inner, eps) = (config.hidden_size, config.intermediate_size, config.layer_norm_eps);
    let attn = vb.pp("attention");
    let heads = attn.pp("self");
    let gelu = if config.approximate_gelu() { Gelu::new_approximate() } else { Gelu::new() };
    Ok(BertLayer {
        attention: BertAttention {
            self_: BertSelfAttention {
                query: projection(&heads.pp("query"), d, d, true)?,
                key: projection(&heads.pp("key"), d, d, true)?,
                value: projection(&heads.pp("value"), d, d, true)?,
                attn_probs: HookPoint::new(),
                num_heads: config.num_attention_heads,
                head_dim: config.head_dim(),
            },
            output: BertSelfOutput {
                dense: projection(&attn.pp("output").pp("dense"), d, d, true)?,
                layer_norm: layer_norm(&attn.pp("output").pp("LayerNorm"), d, eps)?,
            },
        },
        intermediate: BertIntermediate {
            dense: projection(&vb.pp("intermediate").pp("dense"), d, inner, true)?,
            intermediate_act_fn: gelu,
        },
        output: BertOutput {
            dense: projection(&vb.pp("output").pp("dense"), inner, d, true)?,
            layer_norm: layer_norm(&vb.pp("output").pp("LayerNorm"), d, eps)?,
        },
    })
}
