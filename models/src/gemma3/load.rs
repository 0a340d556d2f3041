//! Building a Gemma 3 from a safetensors checkpoint (Hugging Face names and layouts), from `f32`
//! tensors by Hugging Face name (e.g. dequantized from a GGUF file), or from random weights.

use burn::prelude::*;
use nnsight::HookPoint;
use nnsight::Result;

use super::{
    Gemma3Attention, Gemma3Config, Gemma3DecoderLayer, Gemma3ForCausalLM, Gemma3Mlp, Gemma3RmsNorm,
    Gemma3RotaryEmbedding, Gemma3ScaledWordEmbedding, Gemma3TextModel,
};
use crate::building::{check_layer_count, projection};
use crate::gelu_tanh::GeluTanh;
use crate::hub::ModelFiles;
use crate::language_model::Pretrained;
use crate::lm_head::LmHead;
use crate::weights::{Kind, Random, Scope, TensorSource, Weights, checkpoint, given};

impl Gemma3Config {
    /// A model of this shape with random weights (normal with std `initializer_range`, norm
    /// weights 0 — a scale of one —, biases 0, as transformers initialises Gemma 3).
    ///
    /// # Panics
    /// If the config does not pass [`validate`](Self::validate).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Gemma3ForCausalLM<B> {
        if let Err(problem) = self.validate() {
            panic!("cannot initialise a Gemma 3 from an invalid config: {problem}");
        }
        let source = Random::<B> { std: self.initializer_range, device: device.clone() };
        build(self, &source, device).expect("random initialisation of a valid config cannot fail")
    }
}

impl<B: Backend> Gemma3ForCausalLM<B> {
    /// Loads a model from a Hub repository id (`google/gemma-3-270m`) or a local directory; see
    /// [`ModelFiles::resolve`].
    ///
    /// # Errors
    /// As [`from_files`](Self::from_files), and when the files cannot be found or fetched.
    pub fn from_pretrained(id: &str, device: &B::Device) -> Result<(Self, Gemma3Config)> {
        Self::from_files(&ModelFiles::resolve(id)?, device)
    }

    /// Loads a model from its files: `config.json` and safetensors weights with Hugging Face's
    /// names (`model.layers.0.self_attn.q_norm.weight`, …; also without the `model.` prefix) and
    /// layouts, in F32, F16 or BF16.
    ///
    /// # Errors
    /// [`Error::Load`](nnsight::Error::Load) for a missing or invalid `config.json` or an unreadable weights file,
    /// [`Error::MissingWeight`](nnsight::Error::MissingWeight) / [`Error::BadWeight`](nnsight::Error::BadWeight) naming a tensor that is absent or has the
    /// wrong shape or dtype.
    pub fn from_files(files: &ModelFiles, device: &B::Device) -> Result<(Self, Gemma3Config)> {
        let config = Gemma3Config::from_file(&files.config)?;
        let weights = Weights::open(&files.weights)?;
        check_layer_count(
            &weights,
            &["layers"],
            config.num_hidden_layers,
            &files.config,
            "num_hidden_layers",
        )?;
        let source = checkpoint::<B>(&weights, "model", "embed_tokens.weight", device);
        let model = build(&config, &source, device)?;
        Ok((model, config))
    }

    /// Builds a model of `config` from `f32` tensors asked for by Hugging Face name and shape:
    /// `tensors(name, shape)` returns the values of tensor `name`
    /// (`model.layers.3.mlp.up_proj.weight`, `model.norm.weight`, …), row-major, in Hugging
    /// Face's layout (`nn.Linear` weights `[out, in]`; norm weights the scale minus one).
    ///
    /// `lm_head.weight` is asked for only when `tie_word_embeddings` is false, biases only when
    /// `attention_bias` is set.
    ///
    /// # Errors
    /// [`Error::Config`](nnsight::Error::Config) (in [`Error::Load`](nnsight::Error::Load)) for a config that fails [`Gemma3Config::validate`];
    /// the errors of `tensors`; [`Error::BadWeight`](nnsight::Error::BadWeight) when `tensors` returns the wrong number of
    /// values.
    pub fn from_tensors<F>(config: &Gemma3Config, tensors: F, device: &B::Device) -> Result<Self>
    where
        F: Fn(&str, &[usize]) -> Result<Vec<f32>>,
    {
        config.validate().map_err(|e| e.in_source("a Gemma 3 config"))?;
        let source =
            given::<B, _>(tensors, "the tensors given to Gemma3ForCausalLM::from_tensors".to_owned(), device);
        build(config, &source, device)
    }
}

/// A Gemma RMSNorm of width `d` (its `weight`, the scale minus one: zeros when random).
fn norm<B: Backend, S: TensorSource<B>, const D: usize>(
    vb: &Scope<'_, S>,
    d: usize,
    epsilon: f64,
) -> Result<Gemma3RmsNorm<B, D>> {
    Ok(Gemma3RmsNorm::new(vb.get("weight", [d], Kind::Bias)?, epsilon))
}

fn build<B: Backend, S: TensorSource<B>>(
    config: &Gemma3Config,
    source: &S,
    device: &B::Device,
) -> Result<Gemma3ForCausalLM<B>> {
    let (d, vocab) = (config.hidden_size, config.vocab_size);
    let root = Scope::new(source);
    let body = root.pp("model");
    let embedding = body.get("embed_tokens.weight", [vocab, d], Kind::Weight)?;
    let lm_head = if config.tie_word_embeddings {
        LmHead::new(embedding.clone())
    } else {
        LmHead::new(root.get("lm_head.weight", [vocab, d], Kind::Weight)?)
    };
    // transformers multiplies by `tensor(hidden_size ** 0.5)`: the f64 root rounded to f32.
    let embed_tokens = Gemma3ScaledWordEmbedding::new(embedding, (d as f64).sqrt() as f32);
    let types = config.layer_types();
    let layers = (0..config.num_hidden_layers)
        .map(|i| layer(config, types[i], &body.pp("layers").pp(i)))
        .collect::<Result<Vec<_>>>()?;
    let rotary_emb =
        Gemma3RotaryEmbedding::new(config, device).map_err(|e| e.in_source("a Gemma 3 config"))?;
    Ok(Gemma3ForCausalLM {
        model: Gemma3TextModel {
            embed_tokens,
            layers,
            norm: norm(&body.pp("norm"), d, config.rms_norm_eps)?,
            rotary_emb,
            sliding_window: config.sliding_window,
        },
        lm_head,
        final_logit_softcapping: config.final_logit_softcapping,
    })
}

/// A decoder layer of `layer_type`, its tensors read in `vb` (`model.layers.{i}`).
fn layer<B: Backend, S: TensorSource<B>>(
    config: &Gemma3Config,
    layer_type: super::LayerType,
    vb: &Scope<'_, S>,
) -> Result<Gemma3DecoderLayer<B>> {
    let (d, inner, head_dim, eps) =
        (config.hidden_size, config.intermediate_size, config.head_dim, config.rms_norm_eps);
    let (q_width, kv_width) = (config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim);
    let (attn, mlp) = (vb.pp("self_attn"), vb.pp("mlp"));
    let attn_linear =
        |name: &str, d_in, d_out| projection(&attn.pp(name), d_in, d_out, config.attention_bias);
    let mlp_linear = |name: &str, d_in, d_out| projection(&mlp.pp(name), d_in, d_out, false);
    Ok(Gemma3DecoderLayer {
        input_layernorm: norm(&vb.pp("input_layernorm"), d, eps)?,
        self_attn: Gemma3Attention {
            q_proj: attn_linear("q_proj", d, q_width)?,
            k_proj: attn_linear("k_proj", d, kv_width)?,
            v_proj: attn_linear("v_proj", d, kv_width)?,
            o_proj: attn_linear("o_proj", q_width, d)?,
            q_norm: norm(&attn.pp("q_norm"), head_dim, eps)?,
            k_norm: norm(&attn.pp("k_norm"), head_dim, eps)?,
            attn_probs: HookPoint::new(),
            num_heads: config.num_attention_heads,
            num_key_value_heads: config.num_key_value_heads,
            head_dim,
            scaling: config.query_pre_attn_scalar.powf(-0.5),
            layer_type,
        },
        post_attention_layernorm: norm(&vb.pp("post_attention_layernorm"), d, eps)?,
        pre_feedforward_layernorm: norm(&vb.pp("pre_feedforward_layernorm"), d, eps)?,
        mlp: Gemma3Mlp {
            gate_proj: mlp_linear("gate_proj", d, inner)?,
            up_proj: mlp_linear("up_proj", d, inner)?,
            down_proj: mlp_linear("down_proj", inner, d)?,
            act_fn: GeluTanh::new(),
        },
        post_feedforward_layernorm: norm(&vb.pp("post_feedforward_layernorm"), d, eps)?,
    })
}

impl<B: Backend> Pretrained<B> for Gemma3ForCausalLM<B> {
    fn from_files(files: &ModelFiles, device: &B::Device) -> Result<(Self, Option<u32>)> {
        let (model, config) = Gemma3ForCausalLM::from_files(files, device)?;
        Ok((model, config.pad_id()))
    }
}
