//! Building a GPT-2 from a checkpoint (Hugging Face names and layouts) or from random weights.

use burn::module::Param;
use burn::nn::{Dropout, DropoutConfig, Gelu, Linear};
use burn::prelude::*;

use nnsight::Result;

use super::{Gpt2Attention, Gpt2Block, Gpt2Config, Gpt2LMHeadModel, Gpt2Mlp, Gpt2Model};
use crate::building::{check_layer_count, layer_norm};
use crate::hub::ModelFiles;
use crate::language_model::Pretrained;
use crate::lm_head::LmHead;
use crate::weights::{Kind, Random, Scope, TensorSource, Weights, embedding};

/// A checkpoint's tensors, with or without the `transformer.` prefix.
struct Checkpoint<'w, B: Backend> {
    weights: &'w Weights,
    /// `"transformer."` when the checkpoint spells the body's names with that prefix (transformers'
    /// `save_pretrained`), `""` when it does not (the original OpenAI conversions on the Hub).
    prefix: &'static str,
    device: B::Device,
}

impl<B: Backend> TensorSource<B> for Checkpoint<'_, B> {
    fn get<const D: usize>(&self, name: &str, shape: [usize; D], _: Kind) -> Result<Tensor<B, D>> {
        let full = match name.strip_prefix("transformer.") {
            Some(body) if self.prefix.is_empty() => body.to_owned(),
            _ => name.to_owned(),
        };
        self.weights.tensor(&full, shape, &self.device)
    }
}

impl Gpt2Config {
    /// A model of this shape with random weights (normal, std 0.02, as GPT-2's initialisation).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Gpt2LMHeadModel<B> {
        let source = Random::<B> { std: 0.02, device: device.clone() };
        build(self, &source, None).expect("random initialisation cannot fail")
    }
}

impl<B: Backend> Gpt2LMHeadModel<B> {
    /// Loads a model from a Hub repository id (`openai-community/gpt2`) or a local directory;
    /// see [`ModelFiles::resolve`].
    pub fn from_pretrained(id: &str, device: &B::Device) -> Result<(Self, Gpt2Config)> {
        Self::from_files(&ModelFiles::resolve(id)?, device)
    }

    /// Loads a model from its files: `config.json` and safetensors weights with Hugging Face's
    /// names (with or without the `transformer.` prefix). A missing tensor or one of the wrong
    /// shape is an error naming it.
    pub fn from_files(files: &ModelFiles, device: &B::Device) -> Result<(Self, Gpt2Config)> {
        let config = Gpt2Config::from_file(&files.config)?;
        let weights = Weights::open(&files.weights)?;
        check_layer_count(&weights, &["h"], config.n_layer, &files.config, "n_layer")?;
        let prefix = if weights.contains("transformer.wte.weight") { "transformer." } else { "" };
        let source = Checkpoint::<B> { weights: &weights, prefix, device: device.clone() };
        let untied_head = (!config.tie_word_embeddings).then_some("lm_head.weight");
        let model = build(&config, &source, untied_head)?;
        Ok((model, config))
    }
}

fn build<B: Backend, S: TensorSource<B>>(
    config: &Gpt2Config,
    source: &S,
    untied_head: Option<&str>,
) -> Result<Gpt2LMHeadModel<B>> {
    let d = config.n_embd;
    let root = Scope::new(source);
    let body = root.pp("transformer");
    let wte = embedding(body.get("wte.weight", [config.vocab_size, d], Kind::Weight)?);
    let lm_head = match untied_head {
        Some(name) => LmHead::new(root.get(name, [config.vocab_size, d], Kind::Weight)?),
        None => LmHead::new(wte.weight.val()),
    };
    let h = (0..config.n_layer).map(|i| block(config, &body.pp("h").pp(i), i)).collect::<Result<Vec<_>>>()?;
    Ok(Gpt2LMHeadModel {
        transformer: Gpt2Model {
            wte,
            wpe: embedding(body.get("wpe.weight", [config.n_positions, d], Kind::Weight)?),
            drop: inference_dropout(),
            h,
            ln_f: layer_norm(&body.pp("ln_f"), config.n_embd, config.layer_norm_epsilon)?,
        },
        lm_head,
    })
}

/// Block `i`, its tensors read in `vb` (`transformer.h.{i}`).
fn block<B: Backend, S: TensorSource<B>>(
    config: &Gpt2Config,
    vb: &Scope<'_, S>,
    i: usize,
) -> Result<Gpt2Block<B>> {
    let d = config.n_embd;
    let mut scale = if config.scale_attn_weights { 1.0 / (config.head_dim() as f64).sqrt() } else { 1.0 };
    if config.scale_attn_by_inverse_layer_idx {
        scale /= (i + 1) as f64;
    }
    let (attn, mlp) = (vb.pp("attn"), vb.pp("mlp"));
    Ok(Gpt2Block {
        ln_1: layer_norm(&vb.pp("ln_1"), config.n_embd, config.layer_norm_epsilon)?,
        attn: Gpt2Attention {
            c_attn: conv1d(&attn.pp("c_attn"), d, 3 * d)?,
            c_proj: conv1d(&attn.pp("c_proj"), d, d)?,
            attn_dropout: inference_dropout(),
            resid_dropout: inference_dropout(),
            n_head: config.n_head,
            scale,
        },
        ln_2: layer_norm(&vb.pp("ln_2"), config.n_embd, config.layer_norm_epsilon)?,
        mlp: Gpt2Mlp {
            c_fc: conv1d(&mlp.pp("c_fc"), d, config.inner_dim())?,
            act: if config.approximate_gelu() { Gelu::new_approximate() } else { Gelu::new() },
            c_proj: conv1d(&mlp.pp("c_proj"), config.inner_dim(), d)?,
            dropout: inference_dropout(),
        },
    })
}

/// HF's `Conv1D` stores its weight `[in, out]`, which is burn's `Linear` layout: no transpose.
fn conv1d<B: Backend, S: TensorSource<B>>(vb: &Scope<'_, S>, d_in: usize, d_out: usize) -> Result<Linear<B>> {
    Ok(Linear {
        weight: Param::from_tensor(vb.get("weight", [d_in, d_out], Kind::Weight)?),
        bias: Some(Param::from_tensor(vb.get("bias", [d_out], Kind::Bias)?)),
    })
}

/// Dropout is the identity at inference; a probability of 0 keeps it so under `Autodiff` too.
fn inference_dropout() -> Dropout {
    DropoutConfig::new(0.0).init()
}

impl<B: Backend> Pretrained<B> for Gpt2LMHeadModel<B> {
    fn from_files(files: &ModelFiles, device: &B::Device) -> Result<(Self, Option<u32>)> {
        let (model, config) = Gpt2LMHeadModel::from_files(files, device)?;
        Ok((model, config.pad_token_id.or(config.eos_token_id)))
    }
}
