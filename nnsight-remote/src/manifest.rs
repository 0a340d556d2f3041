//! The manifest of a hosted model: what a program may touch, and the shapes it will find there —
//! the module tree (list lengths included), every site of one forward pass in order with its
//! shape (batch and sequence dimensions symbolic) and element type, the parameters, the modules
//! a program may call, and digests that tell two models apart. A client validates a program
//! against it before sending ([`validate`](crate::validate::validate)); the server publishes it.
//!
//! Built from the model's shape-only twin (the [`Recorder`] backend): two scans with different
//! batch sizes and prompt lengths tell which dimensions are the batch's, which the sequence's,
//! and which are fixed. Nothing is computed, no weight is needed.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::interpret::Value;
use crate::ir::{DType, Site, SiteKind};
use crate::record::{Recorder, Scanned, scan};
use crate::version::Version;

/// One dimension of a site's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    /// Always this size.
    Fixed(usize),
    /// The batch: one row per prompt.
    Batch,
    /// The sequence: the longest prompt's length (on generation steps after the first, 1).
    Seq,
    /// Another size that depends on the input (e.g. the keys of a cached attention).
    Dynamic,
}

/// A module of the tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModuleEntry {
    /// Its path (`transformer.h.1.attn`; empty for the root).
    pub path: String,
}

/// One tensor at one site of one forward pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteEntry {
    /// The site (its occurrence within one pass: a module called twice has 0 and 1).
    pub site: Site,
    /// Its shape.
    pub shape: Vec<Dim>,
    /// Its element type.
    pub dtype: DType,
}

/// A parameter programs may read (`param`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamEntry {
    /// Its path (`lm_head.weight`).
    pub path: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its element type.
    pub dtype: DType,
}

/// What a hosted model offers programs (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The IR version the host reads.
    pub ir: Version,
    /// The model's type, for people.
    pub model: String,
    /// Every module, in tree order.
    pub modules: Vec<ModuleEntry>,
    /// Every site tensor of one forward pass, in the order the pass visits them.
    pub sites: Vec<SiteEntry>,
    /// The parameters.
    pub params: Vec<ParamEntry>,
    /// The modules `call` may name.
    pub callable: Vec<String>,
    /// Whether traces may generate.
    pub generates: bool,
    /// The most positions a forward pass takes (prompt and generated tokens).
    pub max_positions: usize,
    /// A digest of the architecture: modules, sites and parameter shapes (equal configs give
    /// equal digests).
    pub config_digest: String,
    /// A digest of the weights, when the host computed one ([`weights_digest`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_digest: Option<String>,
    /// A digest of the tokenizer (its JSON), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_digest: Option<String>,
}

/// Why no manifest could be made.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// A scan failed (the model's own trace error).
    #[error("scanning the model failed: {0}")]
    Scan(#[from] nnsight::Error),
    /// Two scans visited different sites: the forward pass depends on its input in a way a
    /// manifest cannot describe.
    #[error("the forward pass visits other sites for other inputs ({0})")]
    Unstable(String),
}

/// Which dimension of a site `a` (scanned with batch 1, sequence `s1`) and `b` (batch 2, sequence
/// `s2`) are.
fn dims(a: &[usize], b: &[usize], (s1, s2): (usize, usize)) -> Vec<Dim> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| match (x, y) {
            _ if x == y => Dim::Fixed(x),
            (1, 2) => Dim::Batch,
            _ if (x, y) == (s1, s2) => Dim::Seq,
            _ => Dim::Dynamic,
        })
        .collect()
}

/// Hex SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl Manifest {
    /// The manifest of a language model, from its shape-only twin `lm` (see
    /// [`record`](crate::record)); `callable` lists the modules the host lets programs call.
    ///
    /// # Errors
    /// [`ManifestError`] when a scan fails or two scans disagree.
    pub fn of_language_model<M>(
        lm: &nnsight_models::LanguageModel<Recorder, M>,
        callable: &[&str],
    ) -> Result<Manifest, ManifestError>
    where
        M: nnsight_models::generation::Decoder<Recorder>
            + nnsight::Inspectable
            + burn::module::Module<Recorder>,
    {
        let (s1, s2) = (3, 5);
        let ids = |n: usize| (0..n as u32).map(|i| i % 7 + 1).collect::<Vec<u32>>();
        let (one, ()) = scan(|| lm.trace(ids(s1)).run(async |_| Ok(())))?;
        let prompts = nnsight_models::Prompts::Ids(vec![ids(s2), ids(s2 - 1)]);
        let (two, ()) = scan(|| lm.trace(prompts).run(async |_| Ok(())))?;
        let sites = Self::sites(&one, &two, (s1, s2))?;
        let model = lm.model();
        let tokenizer = lm.tokenizer().to_string(false).ok().map(|json| sha256(json.as_bytes()));
        let mut manifest = Self::assemble(model, sites, callable, tokenizer);
        manifest.max_positions = model.max_positions();
        manifest.config_digest = manifest.architecture_digest();
        Ok(manifest)
    }

    /// The manifest of any `Inspectable` model, from its shape-only twin `model` and two inputs
    /// for it: `one` of batch 1 and sequence length `lengths.0`, `two` of batch 2 and length
    /// `lengths.1` (for a model without a sequence, any two different sizes of another
    /// dimension, or equal ones). A bare model does not generate; its context is unbounded.
    ///
    /// # Errors
    /// As [`of_language_model`](Self::of_language_model).
    pub fn of_model<M, I>(
        model: &M,
        one: I,
        two: I,
        lengths: (usize, usize),
        callable: &[&str],
    ) -> Result<Manifest, ManifestError>
    where
        M: nnsight::inspect::Forward + nnsight::Inspectable + burn::module::Module<Recorder>,
        I: nnsight::inspect::IntoInputs<M::Inputs>,
    {
        use nnsight::TraceExt;
        let (a, ()) = scan(|| model.trace(one).run(async |_| Ok(())))?;
        let (b, ()) = scan(|| model.trace(two).run(async |_| Ok(())))?;
        let sites = Self::sites(&a, &b, lengths)?;
        let mut manifest = Self::assemble(model, sites, callable, None);
        manifest.generates = false;
        manifest.max_positions = usize::MAX;
        manifest.config_digest = manifest.architecture_digest();
        Ok(manifest)
    }

    /// A manifest of `model` with `sites` (digest, generation and context still to set).
    fn assemble<M>(model: &M, sites: Vec<SiteEntry>, callable: &[&str], tokenizer: Option<String>) -> Manifest
    where
        M: nnsight::Inspectable + burn::module::Module<Recorder>,
    {
        let params = crate::record::parameters(model)
            .into_iter()
            .filter_map(|(path, value)| {
                let dtype = crate::record::ir_dtype(value.dtype())?;
                Some(ParamEntry { path, shape: value.dims(), dtype })
            })
            .collect();
        let modules = nnsight::inspect::Tree::of(model)
            .modules()
            .into_iter()
            .map(|(_, _, path)| ModuleEntry { path })
            .collect();
        Manifest {
            ir: Version::CURRENT,
            model: std::any::type_name::<M>().split('<').next().unwrap_or_default().to_owned(),
            modules,
            sites,
            params,
            callable: callable.iter().map(|s| (*s).to_owned()).collect(),
            generates: true,
            max_positions: 0,
            config_digest: String::new(),
            weights_digest: None,
            tokenizer_digest: tokenizer,
        }
    }

    fn sites(one: &[Scanned], two: &[Scanned], seq: (usize, usize)) -> Result<Vec<SiteEntry>, ManifestError> {
        if one.len() != two.len() {
            return Err(ManifestError::Unstable(format!("{} site values, then {}", one.len(), two.len())));
        }
        one.iter()
            .zip(two)
            .map(|(a, b)| {
                if a.site != b.site || a.dtype != b.dtype || a.shape.len() != b.shape.len() {
                    return Err(ManifestError::Unstable(format!("{:?} then {:?}", a.site, b.site)));
                }
                Ok(SiteEntry { site: a.site.clone(), shape: dims(&a.shape, &b.shape, seq), dtype: a.dtype })
            })
            .collect()
    }

    /// The digest of the modules, sites and parameter shapes.
    fn architecture_digest(&self) -> String {
        let parts = (&self.modules, &self.sites, &self.params);
        sha256(serde_json::to_string(&parts).unwrap_or_default().as_bytes())
    }

    /// This manifest with the digest of `weights` (see [`weights_digest`]).
    pub fn with_weights_digest(mut self, digest: String) -> Self {
        self.weights_digest = Some(digest);
        self
    }

    /// The site entries of `path`'s `kind` side, in the order of one pass (a module called twice
    /// has two).
    pub fn site_entries(&self, path: &str, kind: SiteKind) -> impl Iterator<Item = (usize, &SiteEntry)> {
        self.sites.iter().enumerate().filter(move |(_, e)| e.site.path == path && e.site.kind == kind)
    }

    /// The parameter at `path`.
    pub fn param(&self, path: &str) -> Option<&ParamEntry> {
        self.params.iter().find(|p| p.path == path)
    }

    /// Whether `path` names a module.
    pub fn has_module(&self, path: &str) -> bool {
        self.modules.iter().any(|m| m.path == path)
    }

    /// The manifest as canonical JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The SHA-256 of a model's weights: every parameter's path, shape, element type and bytes, in
/// the model's order. Hosts compute it once at start-up; clients compare it with what they
/// validated against.
pub fn weights_digest<B: burn::prelude::Backend, M: burn::module::Module<B>>(model: &M) -> String {
    let mut hasher = Sha256::new();
    let params: BTreeMap<String, Value<B>> = crate::record::parameters(model).into_iter().collect();
    for (path, value) in params {
        let (shape, dtype, bytes) = value.to_bytes();
        hasher.update(format!("{path}:{shape:?}:{dtype:?}:").as_bytes());
        hasher.update(&bytes);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
