//! Building a Mamba from a safetensors checkpoint (Hugging Face names and layouts) or from random
//! weights.

use burn::module::Param;
use burn::prelude::*;
use nnsight::HookPoint;
use nnsight::Result;

use super::block::MambaBlock;
use super::config::MambaConfig;
use super::conv::MambaConv1d;
use super::mixer::MambaMixer;
use super::model::{MambaForCausalLM, MambaModel};
use crate::building::{check_layer_count, projection, rms_norm};
use crate::hub::ModelFiles;
use crate::language_model::Pretrained;
use crate::lm_head::LmHead;
use crate::silu::Silu;
use crate::weights::{ByName, Kind, Random, Scope, TensorSource, Weights, embedding};

impl MambaConfig {
    /// A model of this shape with random weights (normal with std `initializer_range`; norms and
    /// `D` 1; biases 0).
    ///
    /// # Panics
    /// If the config does not pass [`validate`](Self::validate).
    pub fn init<B: Backend>(&self, device: &B::Device) -> MambaForCausalLM<B> {
        if let Err(problem) = self.validate() {
            panic!("cannot initialise a Mamba from an invalid config: {problem}");
        }
        let source = Random::<B> { std: self.initializer_range, device: device.clone() };
        build(self, &source).expect("random initialisation of a valid config cannot fail")
    }
}

impl<B: Backend> MambaForCausalLM<B> {
    /// Loads a model from a Hub repository id (`state-spaces/mamba-130m-hf`) or a local
    /// directory; see [`ModelFiles::resolve`].
    ///
    /// # Errors
    /// As [`from_files`](Self::from_files), and when the files cannot be found or fetched.
    pub fn from_pretrained(id: &str, device: &B::Device) -> Result<(Self, MambaConfig)> {
        Self::from_files(&ModelFiles::resolve(id)?, device)
    }

    /// Loads a model from its files: `config.json` and safetensors weights with Hugging Face's
    /// names (`backbone.layers.0.mixer.in_proj.weight`, …) and layouts (`nn.Linear` weights
    /// `[out, in]`, transposed here), in F32, F16 or BF16.
    ///
    /// # Errors
    /// [`Error::Load`](nnsight::Error::Load) for a missing or invalid `config.json`, an unreadable weights file, or
    /// weights with more layers than the config; [`Error::MissingWeight`](nnsight::Error::MissingWeight) / [`Error::BadWeight`](nnsight::Error::BadWeight)
    /// naming a tensor that is absent or has the wrong shape or dtype.
    pub fn from_files(files: &ModelFiles, device: &B::Device) -> Result<(Self, MambaConfig)> {
        let config = MambaConfig::from_file(&files.config)?;
        let weights = Weights::open(&files.weights)?;
        check_layer_count(
            &weights,
            &["layers"],
            config.num_hidden_layers,
            &files.config,
            "num_hidden_layers",
        )?;
        let source = ByName::<_, B> {
            read: |name: &str, shape: &[usize]| weights.read(name, shape),
            origin: weights.describe(),
            device: device.clone(),
        };
        Ok((build(&config, &source)?, config))
    }
}

fn build<B: Backend, S: TensorSource<B>>(config: &MambaConfig, source: &S) -> Result<MambaForCausalLM<B>> {
    let (d, vocab) = (config.hidden_size, config.vocab_size);
    let root = Scope::new(source);
    let body = root.pp("backbone");
    let embeddings = embedding(body.get("embeddings.weight", [vocab, d], Kind::Weight)?);
    let lm_head = if config.tie_word_embeddings {
        LmHead::new(embeddings.weight.val())
    } else {
        LmHead::new(root.get("lm_head.weight", [vocab, d], Kind::Weight)?)
    };
    let layers = (0..config.num_hidden_layers)
        .map(|i| block(config, &body.pp("layers").pp(i)))
        .collect::<Result<Vec<_>>>()?;
    Ok(MambaForCausalLM {
        backbone: MambaModel {
            embeddings,
            layers,
            norm_f: rms_norm(&body.pp("norm_f"), config.hidden_size, config.layer_norm_epsilon)?,
        },
        lm_head,
    })
}

/// A Mamba block, its tensors read in `vb` (`backbone.layers.{i}`).
fn block<B: Backend, S: TensorSource<B>>(config: &MambaConfig, vb: &Scope<'_, S>) -> Result<MambaBlock<B>> {
    let (d, inner, n, rank, kernel) =
        (config.hidden_size, config.inner(), config.state_size, config.dt_rank(), config.conv_kernel);
    let mixer = vb.pp("mixer");
    let conv = mixer.pp("conv1d");
    let conv_bias = if config.use_conv_bias { Some(conv.get("bias", [inner], Kind::Bias)?) } else { None };
    Ok(MambaBlock {
        norm: rms_norm(&vb.pp("norm"), config.hidden_size, config.layer_norm_epsilon)?,
        mixer: MambaMixer {
            in_proj: projection(&mixer.pp("in_proj"), d, 2 * inner, config.use_bias)?,
            conv1d: MambaConv1d::new(conv.get("weight", [inner, 1, kernel], Kind::Weight)?, conv_bias),
            act: Silu::new(),
            x_proj: projection(&mixer.pp("x_proj"), inner, rank + 2 * n, false)?,
            dt_proj: projection(&mixer.pp("dt_proj"), rank, inner, true)?,
            a_log: Param::from_tensor(mixer.get("A_log", [inner, n], Kind::Weight)?),
            d: Param::from_tensor(mixer.get("D", [inner], Kind::NormScale)?),
            out_proj: projection(&mixer.pp("out_proj"), inner, d, config.use_bias)?,
            ssm_states: HookPoint::new(),
            gated_output: HookPoint::new(),
        },
    })
}

impl<B: Backend> Pretrained<B> for MambaForCausalLM<B> {
    fn from_files(files: &ModelFiles, device: &B::Device) -> Result<(Self, Option<u32>)> {
        let (model, config) = MambaForCausalLM::from_files(files, device)?;
        Ok((model, config.pad_id()))
    }
}
