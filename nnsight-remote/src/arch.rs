//! The model families a host serves and a client records for: what both sides need to build the
//! same model from a config — the host with its weights, the client as a shape-only twin on the
//! [`Recorder`] — and which modules a family offers programs to `call`.

use burn::module::Module;
use burn::prelude::*;
use nnsight_models::gemma3::{Gemma3Config, Gemma3ForCausalLM};
use nnsight_models::generation::Decoder;
use nnsight_models::gpt2::{Gpt2Config, Gpt2LMHeadModel};
use nnsight_models::llama::{LlamaConfig, LlamaForCausalLM};
use nnsight_models::vocabulary::{Standardized, Vocabulary};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::interpret::Hosted;
use crate::record::Recorder;

/// A family of language models (GPT-2, Llama, Gemma 3): its config, how a model is built from one, and
/// what a host lets programs call.
pub trait Architecture: 'static {
    /// Its name on the wire (`gpt2`, `llama`).
    const NAME: &'static str;

    /// The model, on any backend.
    type Model<B: Backend>: Decoder<B> + Module<B> + Standardized<B>;

    /// Its config (a Hugging Face `config.json`).
    type Config: Serialize + DeserializeOwned + Clone;

    /// The config in `json`, checked.
    ///
    /// # Errors
    /// Not this family's config, or one with impossible values.
    fn parse_config(json: &str) -> nnsight::Result<Self::Config>;

    /// A model with `config`'s shapes and freshly initialised weights on `device` (on the
    /// recorder: a shape-only twin, nothing allocated).
    fn init<B: Backend>(config: &Self::Config, device: &B::Device) -> Self::Model<B>;

    /// The modules programs may `call` (a logit lens: the final norm and the head).
    fn callable() -> &'static [&'static str];

    /// `model`'s callable modules and parameters, for the interpreter.
    fn hosted<B: Backend>(model: &Self::Model<B>) -> Hosted<'_, B>;
}

/// GPT-2 ([`Gpt2LMHeadModel`]).
#[derive(Clone, Copy, Debug)]
pub struct Gpt2;

impl Architecture for Gpt2 {
    const NAME: &'static str = "gpt2";
    type Model<B: Backend> = Gpt2LMHeadModel<B>;
    type Config = Gpt2Config;

    fn parse_config(json: &str) -> nnsight::Result<Gpt2Config> {
        let config: Gpt2Config = serde_json::from_str(json)
            .map_err(|e| nnsight::Error::Config { problem: format!("not a GPT-2 config.json: {e}") })?;
        config.validate()?;
        Ok(config)
    }

    fn init<B: Backend>(config: &Gpt2Config, device: &B::Device) -> Gpt2LMHeadModel<B> {
        config.init(device)
    }

    fn callable() -> &'static [&'static str] {
        &["transformer.ln_f", "lm_head"]
    }

    fn hosted<B: Backend>(model: &Gpt2LMHeadModel<B>) -> Hosted<'_, B> {
        Hosted::new()
            .parameters(model)
            .layer_norm("transformer.ln_f", &model.transformer.ln_f)
            .forward("lm_head", &model.lm_head)
    }
}

/// The Llama family ([`LlamaForCausalLM`]: Llama 2/3, SmolLM2, Mistral).
#[derive(Clone, Copy, Debug)]
pub struct Llama;

impl Architecture for Llama {
    const NAME: &'static str = "llama";
    type Model<B: Backend> = LlamaForCausalLM<B>;
    type Config = LlamaConfig;

    fn parse_config(json: &str) -> nnsight::Result<LlamaConfig> {
        LlamaConfig::from_json(json)
    }

    fn init<B: Backend>(config: &LlamaConfig, device: &B::Device) -> LlamaForCausalLM<B> {
        config.init(device)
    }

    fn callable() -> &'static [&'static str] {
        &["model.norm", "lm_head"]
    }

    fn hosted<B: Backend>(model: &LlamaForCausalLM<B>) -> Hosted<'_, B> {
        Hosted::new()
            .parameters(model)
            .rms_norm("model.norm", &model.model.norm)
            .forward("lm_head", &model.lm_head)
    }
}

/// Gemma 3's text models ([`Gemma3ForCausalLM`]).
#[derive(Clone, Copy, Debug)]
pub struct Gemma3;

impl Architecture for Gemma3 {
    const NAME: &'static str = "gemma3";
    type Model<B: Backend> = Gemma3ForCausalLM<B>;
    type Config = Gemma3Config;

    fn parse_config(json: &str) -> nnsight::Result<Gemma3Config> {
        Gemma3Config::from_json(json)
    }

    fn init<B: Backend>(config: &Gemma3Config, device: &B::Device) -> Gemma3ForCausalLM<B> {
        config.init(device)
    }

    fn callable() -> &'static [&'static str] {
        &["model.norm", "lm_head"]
    }

    fn hosted<B: Backend>(model: &Gemma3ForCausalLM<B>) -> Hosted<'_, B> {
        Hosted::new()
            .parameters(model)
            .forward("model.norm", &model.model.norm)
            .forward("lm_head", &model.lm_head)
    }
}

/// The family a model type belongs to (what `RemoteExt::remote` of a local
/// language model connects as).
pub trait Family {
    /// Its family.
    type Arch: Architecture;
}

impl<B: Backend> Family for Gpt2LMHeadModel<B> {
    type Arch = Gpt2;
}

impl<B: Backend> Family for LlamaForCausalLM<B> {
    type Arch = Llama;
}

impl<B: Backend> Family for Gemma3ForCausalLM<B> {
    type Arch = Gemma3;
}

/// The common vocabulary ([`Vocabulary`]: where the residual stream, attention, MLP are) of a
/// model of family `arch` (its wire name) with `config` (its `config.json`), from a shape-only
/// twin: what a host that only has the twin's description resolves TransformerLens' hook names
/// with. `None` for an unknown family or a config it rejects.
pub fn vocabulary(arch: &str, config: &serde_json::Value) -> Option<Vocabulary> {
    fn of<A: Architecture>(config: &serde_json::Value) -> Option<Vocabulary> {
        let config = A::parse_config(&config.to_string()).ok()?;
        Some(A::init::<Recorder>(&config, &Default::default()).vocabulary())
    }
    match arch {
        Gpt2::NAME => of::<Gpt2>(config),
        Llama::NAME => of::<Llama>(config),
        Gemma3::NAME => of::<Gemma3>(config),
        _ => None,
    }
}
