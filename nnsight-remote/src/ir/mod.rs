//! The types of an IR program. Every struct rejects unknown fields, so a misspelt or newer field is
//! an error, never silently ignored.
//!
//! ```text
//! Program ── traces ──▶ Trace ── invokes ──▶ Invoke ── nodes ──▶ Node { op: Op, at: Location? }
//!                        └── generate?        └── input?
//! ```

mod dtype;
mod functions;
mod node;
mod op;
mod scalar;
mod site;

pub use dtype::DType;
pub use functions::{BinaryFn, CompareFn, ReduceFn, TopKPart, UnaryFn};
pub use node::{Location, Node, Ref};
pub use op::{Op, SliceRange};
pub use scalar::Scalar;
pub use site::{Site, SiteKind, Steps};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Version;

/// A session: traces run in order on one model; a later trace can use the values an earlier one
/// saved ([`Op::Saved`]). Only saved values come back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Program {
    /// The IR version the program is written in: the lowest that has every operation it uses.
    pub ir: Version,
    /// The traces, run in order.
    pub traces: Vec<Trace>,
}

/// One trace: its invokes run as one batched forward pass (or one generation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trace {
    /// The invokes, in order; each sees only its own input's rows.
    pub invokes: Vec<Invoke>,
    /// Generation instead of one forward pass: each new token is one more occurrence of every
    /// site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<Generate>,
}

/// One invoke: an input and the nodes that run against it, in program order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Invoke {
    /// The invoke's input; none for an invoke that sees the whole batch (nnsight's empty
    /// `invoke()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Input>,
    /// The nodes; node `i`'s value is [`Ref`] `i`.
    pub nodes: Vec<Node>,
}

/// What an invoke runs on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Input {
    /// A prompt, tokenized by the hosted model's tokenizer.
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
    /// A tensor of the attached tensors file, by name (a model that does not take text).
    Tensor(String),
}

/// [`Program::resolve_aliases`] on `nodes` and the bodies of their edits.
fn resolve_nodes(
    nodes: &mut [Node],
    resolve: &impl Fn(&str) -> Result<(String, bool), String>,
) -> Result<(), String> {
    let site = |site: &mut Site| -> Result<(), String> {
        let (path, input) = resolve(&site.path)?;
        if path == site.path && !input {
            return Ok(());
        }
        match (site.kind, input) {
            (SiteKind::Output, true) => site.kind = SiteKind::Input(0),
            (SiteKind::Output, false) => {}
            (SiteKind::Input(_), _) => {
                return Err(format!(
                    "`{}` names one value (the input or output of `{path}`): use it as a site's output",
                    site.path
                ));
            }
        }
        site.path = path;
        Ok(())
    };
    let module = |module: &mut String, what: &str| -> Result<(), String> {
        let (path, input) = resolve(module)?;
        if input {
            return Err(format!("`{module}` is the input of `{path}`, not a module to {what}"));
        }
        *module = path;
        Ok(())
    };
    for node in nodes {
        match &mut node.op {
            Op::Read { site: s } | Op::Write { site: s, .. } => site(s)?,
            Op::Edit { site: s, body, .. } => {
                site(s)?;
                resolve_nodes(body, resolve)?;
            }
            Op::Skip { module: m, .. } => module(m, "skip")?,
            Op::Call { module: m, .. } => module(m, "call")?,
            _ => {}
        }
    }
    Ok(())
}

/// Generation options of a trace (as the `generate` of a language model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    /// The most tokens added to each prompt.
    pub max_new_tokens: u32,
    /// How each token is chosen.
    pub sampler: Sampler,
    /// Whether a prompt stops at an end-of-sequence token.
    #[serde(default = "yes")]
    pub stop_at_eos: bool,
}

fn yes() -> bool {
    true
}

/// How the next token is chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Sampler {
    /// The most likely token (ties: the lowest id).
    Greedy,
    /// A token drawn after temperature, top-k and top-p filtering, from a seeded generator.
    Sample {
        /// Logits are divided by it (> 0).
        temperature: f32,
        /// Keep only the `k` most likely tokens.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        top_k: Option<u32>,
        /// Keep the smallest set of most likely tokens whose probability reaches `p`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        top_p: Option<f32>,
        /// The generator's seed.
        seed: u64,
    },
}

impl Program {
    /// Every text prompt replaced by its token ids under `encode` (the hosted model's
    /// tokenizer): the sequence lengths become known, so validation checks every dimension, and
    /// the program runs as it would with the text.
    ///
    /// # Errors
    /// `encode`'s error for the first prompt it cannot encode: trace, invoke and message.
    pub fn tokenize(
        &mut self,
        encode: impl Fn(&str) -> Result<Vec<u32>, String>,
    ) -> Result<(), (usize, usize, String)> {
        for (t, trace) in self.traces.iter_mut().enumerate() {
            for (i, invoke) in trace.invokes.iter_mut().enumerate() {
                if let Some(Input::Text(text)) = &invoke.input {
                    let ids = encode(text).map_err(|message| (t, i, message))?;
                    invoke.input = Some(Input::Tokens(ids));
                }
            }
        }
        Ok(())
    }

    /// Every site and module named by another name replaced by what `resolve` maps it to: the
    /// host's vocabulary (TransformerLens' hook names, `blocks.3.hook_resid_pre` → the input of
    /// `model.layers.3`). `resolve(name)` gives the module's path and whether the name means
    /// its input (`true`) or its output, or the problem with the name; a module's own path maps
    /// to itself. A name that means an input stands for the site's output only (`kind: output`);
    /// a skip or a call must name a module.
    ///
    /// # Errors
    /// The first name that cannot be resolved: trace, invoke and message.
    pub fn resolve_aliases(
        &mut self,
        resolve: impl Fn(&str) -> Result<(String, bool), String>,
    ) -> Result<(), (usize, usize, String)> {
        for (t, trace) in self.traces.iter_mut().enumerate() {
            for (i, invoke) in trace.invokes.iter_mut().enumerate() {
                resolve_nodes(&mut invoke.nodes, &resolve).map_err(|message| (t, i, message))?;
            }
        }
        Ok(())
    }

    /// A program of `traces`, stamped with the lowest version that has every operation it uses.
    pub fn new(traces: Vec<Trace>) -> Self {
        let mut program = Program { ir: Version::CURRENT, traces };
        program.ir = program.required_version();
        program
    }

    /// The lowest version of the current major that has every operation the program uses.
    pub fn required_version(&self) -> Version {
        let minor = self
            .traces
            .iter()
            .flat_map(|t| &t.invokes)
            .flat_map(|i| &i.nodes)
            .map(|n| n.op.since_minor())
            .max()
            .unwrap_or(0);
        Version { major: Version::CURRENT.major, minor }
    }
}
