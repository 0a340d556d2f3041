//! One vocabulary across architectures: where every causal language model keeps its residual
//! stream, attention, MLP, attention pattern, final norm and unembedding, whatever its family
//! calls them ([`Standardized`], as nnterp's `StandardizedTransformer`), and TransformerLens' hook
//! names for the same places ([`Vocabulary::alias`]), so that an analysis is written once.
//!
//! ```no_run
//! # use burn::backend::Flex;
//! # use nnsight_models::{LanguageModel, llama::LlamaForCausalLM, vocabulary::Standardized};
//! # fn main() -> nnsight::Result<()> {
//! # let lm = LanguageModel::<Flex, LlamaForCausalLM<Flex>>::from_pretrained("HuggingFaceTB/SmolLM2-135M", &Default::default())?;
//! let words = lm.model().vocabulary();
//! assert_eq!(words.layer(3)?.path, "model.layers.3");
//! assert_eq!(words.alias("blocks.3.attn.hook_pattern")?.path, "model.layers.3.self_attn.attn_probs");
//! # Ok(())
//! # }
//! ```

use burn::prelude::*;
use nnsight::SiteValue;
use nnsight::{Cache, DynEnvoy, Error, Result};

use crate::language_model::{CausalLm, LanguageModel};
use crate::prompts::Prompts;

/// A causal language model that names its parts in the common [`Vocabulary`].
pub trait Standardized<B: Backend>: CausalLm<B> {
    /// Where this model keeps each part.
    fn vocabulary(&self) -> Vocabulary;

    /// The logits `[batch, tokens, vocab]` the model would give if `residual` (`[batch, tokens,
    /// hidden]`) were the last layer's output: the final norm, then the unembedding.
    fn decode_residual(&self, residual: Tensor<B, 3>) -> Tensor<B, 3>;

    /// The final norm linearised at `final_residual` (`[batch, tokens, hidden]`, the last
    /// layer's output), as TransformerLens' `apply_ln_to_stack` treats it: with the scale taken
    /// from the final residual, the norm is linear in each component of the residual stream.
    fn linearised_final_norm(&self, final_residual: Tensor<B, 3>) -> LinearisedNorm<B>;

    /// The unembedding matrix `[vocab, hidden]` (`lm_head.weight`).
    fn unembedding(&self) -> Tensor<B, 2>;

    /// Layer `layer`'s attention output projection as a matrix `[heads · head_dim, hidden]`
    /// (`head_values · W` is the attention's output, less its bias), when what the attention adds
    /// to the residual stream is linear in the heads' values; `None` otherwise (Gemma 3 normalises
    /// the projection's output; Mamba has no attention).
    fn output_projection(&self, layer: usize) -> Option<Tensor<B, 2>> {
        let _ = layer;
        None
    }

    /// The residual patching sweep computed from the causal structure, for the families that
    /// have one (GPT-2's and Llama's `residual_patching_sweep`): every layer's output at every
    /// position patched from `clean` into `corrupted`, measured by `metric`. `None` (the default)
    /// where the family has no such algorithm; an analysis then patches with invokes.
    fn exact_residual_sweep(
        &self,
        clean: &[u32],
        corrupted: &[u32],
        metric: crate::patching::LogitDiff,
    ) -> Option<Result<crate::patching::PatchingSweep>> {
        let _ = (clean, corrupted, metric);
        None
    }
}

/// A final norm made linear by fixing its scale (see
/// [`Standardized::linearised_final_norm`]): a component `x` of the residual stream becomes
/// `(x − mean(x) if centred) / scale · weight`.
#[derive(Clone, Debug)]
pub struct LinearisedNorm<B: Backend> {
    /// Whether the norm subtracts the mean (LayerNorm) or not (RMSNorm).
    pub centred: bool,
    /// The final residual's scale per token, `[batch, tokens, 1]` (TransformerLens'
    /// `ln_final.hook_scale`).
    pub scale: Tensor<B, 3>,
    /// The norm's effective weight `[hidden]` (Gemma's `1 + weight`).
    pub weight: Tensor<B, 1>,
}

impl<B: Backend> LinearisedNorm<B> {
    /// A component `[batch, tokens, hidden]` of the residual stream through the linearised norm.
    pub fn apply(&self, component: Tensor<B, 3>) -> Tensor<B, 3> {
        let hidden = self.weight.dims()[0];
        let x = if self.centred { component.clone() - component.mean_dim(2) } else { component };
        x / self.scale.clone() * self.weight.clone().reshape([1, 1, hidden])
    }

    /// The RMSNorm of weight `weight` and `epsilon`, linearised at `residual`.
    pub fn rms(residual: Tensor<B, 3>, weight: Tensor<B, 1>, epsilon: f64) -> Self {
        let scale = residual.square().mean_dim(2).add_scalar(epsilon).sqrt();
        LinearisedNorm { centred: false, scale, weight }
    }
}

/// Which value of a module a [`Location`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The module's (first) input.
    Input,
    /// The module's output.
    Output,
}

/// A value in the forward pass: the input or output of the module at `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The module's path (`model.layers.3.self_attn`).
    pub path: String,
    /// Its input or its output.
    pub port: Port,
}

impl Location {
    fn output(path: String) -> Self {
        Location { path, port: Port::Output }
    }

    /// The value here, from a body on the model's untyped root envoy.
    ///
    /// # Errors
    /// [`Error::UnknownModule`] when the path is not in the model; the errors of the access.
    pub async fn read<T: SiteValue>(&self, root: &DynEnvoy<'_>) -> Result<T> {
        let module = root.module(&self.path)?;
        match self.port {
            Port::Input => module.input::<T>().await,
            Port::Output => module.output::<T>().await,
        }
    }

    /// Replaces the value here with `value`, from a body on the model's untyped root envoy.
    ///
    /// # Errors
    /// As [`read`](Self::read); the trace fails when `value` does not match the site.
    pub async fn replace<T: SiteValue>(&self, root: &DynEnvoy<'_>, value: T) -> Result<()> {
        let module = root.module(&self.path)?;
        match self.port {
            Port::Input => module.input::<T>().replace(value).await,
            Port::Output => module.output::<T>().replace(value).await,
        }
    }
}

impl Location {
    /// Edits the value here with `f` at the visits `visits` of the site (generation steps; `0..`
    /// for every visit), as a standing edit from a body on the model's untyped root envoy (see
    /// `nnsight::site::Site::steps`).
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub fn edit_steps<T: SiteValue>(
        &self,
        root: &DynEnvoy<'_>,
        visits: std::ops::Range<u32>,
        f: impl FnMut(T) -> T + 'static,
    ) -> Result<()> {
        let module = root.module(&self.path)?;
        match self.port {
            Port::Input => module.input::<T>().steps(visits, f),
            Port::Output => module.output::<T>().steps(visits, f),
        }
    }

    /// Tracks the gradient of the value here (see `nnsight::site::Site::track_grad`), from a body
    /// on the model's untyped root envoy, on an autodiff backend.
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub async fn track_grad<B: burn::tensor::backend::AutodiffBackend, const D: usize>(
        &self,
        root: &DynEnvoy<'_>,
    ) -> Result<nnsight::site::Tracked<B, D>> {
        let module = root.module(&self.path)?;
        match self.port {
            Port::Input => module.input::<Tensor<B, D>>().track_grad().await,
            Port::Output => module.output::<Tensor<B, D>>().track_grad().await,
        }
    }

    /// The value here on the module's first call, from a [`Cache`] of the trace (recorded with
    /// [`CacheOptions::with_inputs`](nnsight::CacheOptions::with_inputs) for an input): how a
    /// hook name is looked up in a cache.
    ///
    /// # Errors
    /// [`Error::NotCached`] when the cache did not record it (or holds another type).
    pub fn cached<T: SiteValue>(&self, cache: &Cache) -> Result<T> {
        match self.port {
            Port::Input => cache.inputs::<(T,)>(&self.path).map(|(first,)| first),
            Port::Output => cache.output::<T>(&self.path),
        }
    }
}

/// Where a model family keeps the parts every causal LM has. Paths inside a layer are relative to
/// the layer (`self_attn`); `None` where the family has no such part (Mamba has no attention).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocabulary {
    /// The family, for messages (`Llama`).
    pub family: &'static str,
    /// The list of layers (`model.layers`); a layer's input and output are the residual stream
    /// before and after it.
    pub layers: &'static str,
    /// How many layers there are.
    pub num_layers: usize,
    /// The width of the residual stream.
    pub hidden_size: usize,
    /// The token embedding (`model.embed_tokens`).
    pub embed: &'static str,
    /// The attention of a layer, whose output is what it adds to the residual stream.
    pub attention: Option<&'static str>,
    /// The MLP of a layer, whose output is what it adds to the residual stream.
    pub mlp: Option<&'static str>,
    /// The attention probabilities `[batch, heads, queries, keys]` of a layer.
    pub attention_probabilities: Option<(&'static str, Port)>,
    /// The residual stream between attention and MLP (the input of the MLP's norm).
    pub resid_mid: Option<(&'static str, Port)>,
    /// The heads' outputs before the attention's output projection, `[batch, tokens, heads ·
    /// head_dim]` (head `h` is columns `h · head_dim..(h + 1) · head_dim`): TransformerLens'
    /// `attn.hook_z`, with the heads merged. `None` for a family without attention.
    pub head_values: Option<(&'static str, Port)>,
    /// The number of attention heads of a layer (0 without attention).
    pub num_heads: usize,
    /// The final norm (`model.norm`).
    pub final_norm: &'static str,
    /// The unembedding (`lm_head`).
    pub unembed: &'static str,
}

impl Vocabulary {
    /// The layer `i` itself: its input is the residual stream before it, its output after it.
    ///
    /// # Errors
    /// [`Error::Input`] for a layer past the last.
    pub fn layer(&self, i: usize) -> Result<Location> {
        if i >= self.num_layers {
            return Err(Error::Input {
                problem: format!(
                    "layer {i} of a {}-layer {} (0..{})",
                    self.num_layers, self.family, self.num_layers
                ),
            });
        }
        Ok(Location::output(format!("{}.{i}", self.layers)))
    }

    /// The residual stream before layer `i` (its input).
    ///
    /// # Errors
    /// As [`layer`](Self::layer).
    pub fn layer_input(&self, i: usize) -> Result<Location> {
        Ok(Location { port: Port::Input, ..self.layer(i)? })
    }

    /// Layer `i`'s attention (its output: what attention adds to the residual stream).
    ///
    /// # Errors
    /// As [`layer`](Self::layer); [`Error::Input`] for a family without attention.
    pub fn attention(&self, i: usize) -> Result<Location> {
        self.inside(i, self.attention.map(|p| (p, Port::Output)), "attention")
    }

    /// Layer `i`'s MLP (its output: what the MLP adds to the residual stream).
    ///
    /// # Errors
    /// As [`attention`](Self::attention), for a family without MLP.
    pub fn mlp(&self, i: usize) -> Result<Location> {
        self.inside(i, self.mlp.map(|p| (p, Port::Output)), "MLP")
    }

    /// Layer `i`'s attention probabilities `[batch, heads, queries, keys]`.
    ///
    /// # Errors
    /// As [`attention`](Self::attention).
    pub fn attention_probabilities(&self, i: usize) -> Result<Location> {
        self.inside(i, self.attention_probabilities, "attention probabilities")
    }

    /// Layer `i`'s heads' outputs before the output projection, `[batch, tokens, heads ·
    /// head_dim]` (see [`Vocabulary::head_values`](Vocabulary#structfield.head_values)).
    ///
    /// # Errors
    /// As [`attention`](Self::attention).
    pub fn head_values(&self, i: usize) -> Result<Location> {
        self.inside(i, self.head_values, "attention heads")
    }

    /// The residual stream of layer `i` between attention and MLP.
    ///
    /// # Errors
    /// As [`attention`](Self::attention), for a family whose layers have no such point.
    pub fn resid_mid(&self, i: usize) -> Result<Location> {
        self.inside(i, self.resid_mid, "residual stream between attention and MLP")
    }

    /// The final norm (its output: the normalised last residual stream).
    pub fn final_norm(&self) -> Location {
        Location::output(self.final_norm.to_owned())
    }

    /// The unembedding (its output: the logits).
    pub fn unembed(&self) -> Location {
        Location::output(self.unembed.to_owned())
    }

    /// The token embedding's output.
    pub fn embed(&self) -> Location {
        Location::output(self.embed.to_owned())
    }

    fn inside(&self, i: usize, part: Option<(&'static str, Port)>, what: &str) -> Result<Location> {
        let layer = self.layer(i)?;
        let (path, port) =
            part.ok_or_else(|| Error::Input { problem: format!("a {} layer has no {what}", self.family) })?;
        Ok(Location { path: format!("{}.{path}", layer.path), port })
    }

    /// The location of a TransformerLens hook name: `hook_embed`, `blocks.{i}.hook_resid_pre`,
    /// `hook_resid_mid`, `hook_resid_post`, `hook_attn_out`, `hook_mlp_out`, `attn.hook_pattern`,
    /// `attn.hook_z` (the heads merged, `[batch, tokens, heads · head_dim]`), `ln_final.hook_normalized`; a name that is already a module path of this model's family
    /// (`model.layers.3`) is its output.
    ///
    /// # Errors
    /// [`Error::Input`] for a hook this family has no place for, or a layer past the last.
    pub fn alias(&self, name: &str) -> Result<Location> {
        match name {
            "hook_embed" => return Ok(self.embed()),
            "ln_final.hook_normalized" => return Ok(self.final_norm()),
            _ => {}
        }
        let Some(rest) = name.strip_prefix("blocks.") else {
            return Ok(Location::output(name.to_owned()));
        };
        let (index, hook) = rest.split_once('.').unwrap_or((rest, ""));
        let i: usize = index
            .parse()
            .map_err(|_| Error::Input { problem: format!("`{name}`: `{index}` is not a layer index") })?;
        match hook {
            "hook_resid_pre" => self.layer_input(i),
            "hook_resid_post" | "" => self.layer(i),
            "hook_resid_mid" => self.resid_mid(i),
            "hook_attn_out" => self.attention(i),
            "hook_mlp_out" => self.mlp(i),
            "attn.hook_pattern" => self.attention_probabilities(i),
            "attn.hook_z" => self.head_values(i),
            other => Err(Error::Input {
                problem: format!(
                    "`{name}`: `{other}` is not a TransformerLens hook nnsight-rs maps (hook_resid_pre, \
                     hook_resid_mid, hook_resid_post, hook_attn_out, hook_mlp_out, attn.hook_pattern, \
                     attn.hook_z)"
                ),
            }),
        }
    }
}

/// The residual stream after each layer (`[1, tokens, hidden]`, the layers' outputs) of one
/// prompt, from one trace, for every [`Standardized`] model.
///
/// # Errors
/// The errors of the prompt and of the trace.
pub fn residual_stream<B: Backend, M: Standardized<B>>(
    lm: &LanguageModel<B, M>,
    prompt: impl Into<Prompts>,
) -> Result<Vec<Tensor<B, 3>>> {
    let words = lm.model().vocabulary();
    let body = async move |root: DynEnvoy<'_>| -> Result<Vec<Tensor<B, 3>>> {
        let mut residuals = Vec::with_capacity(words.num_layers);
        for i in 0..words.num_layers {
            residuals.push(words.layer(i)?.read::<Tensor<B, 3>>(&root).await?);
        }
        Ok(residuals)
    };
    let (mut results,) = lm.tracer().invoke_inputs_dyn([(Some(prompt.into()), body)]).run()?;
    Ok(results.pop().expect("one invoke, one result"))
}

/// The logit lens (nostalgebraist 2020), written once for every [`Standardized`] model: the logits
/// `[1, tokens, vocab]` each layer's residual stream gives through the final norm and the
/// unembedding, for one prompt, from one trace. The last entry is the model's own logits.
/// (`nnsight_toolkit::lens` keeps the top tokens and chosen tokens' probabilities, and takes a
/// tuned lens' translators.)
///
/// # Errors
/// The errors of the prompt and of the trace.
pub fn logit_lens<B: Backend, M: Standardized<B>>(
    lm: &LanguageModel<B, M>,
    prompt: impl Into<Prompts>,
) -> Result<Vec<Tensor<B, 3>>> {
    let residuals = residual_stream(lm, prompt)?;
    Ok(residuals.into_iter().map(|h| lm.model().decode_residual(h)).collect())
}
