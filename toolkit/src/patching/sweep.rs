//! Running a patching experiment: the source run's values read once, then every entry measured —
//! from the causal structure where the family has it, else by chunks of batched invokes.

use std::collections::BTreeMap;

use burn::prelude::*;
use nnsight::{DynEnvoy, Error, Positions, Result};
use nnsight_models::patching::LogitDiff;
use nnsight_models::vocabulary::{Location, Standardized, Vocabulary};
use nnsight_models::{LanguageModel, Prompts};

use super::{Direction, Metric, SiteKind};

/// What [`Patching::prepare`] checked and resolved.
pub(crate) struct Prepared {
    pub(crate) clean: Vec<u32>,
    pub(crate) corrupted: Vec<u32>,
    pub(crate) layers: Vec<usize>,
    pub(crate) positions: Vec<Vec<usize>>,
}

/// How a [`PatchResult`] was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The family's residual sweep from the causal structure (no forward pass per entry).
    Exact,
    /// Batched invokes: one per entry, a chunk of them per forward pass.
    Invokes,
    /// Attribution patching ([`Patching::attribute`]): gradient × activation difference, an
    /// estimate from one forward and one backward pass.
    Attribution,
}

/// A patching experiment waiting for [`run`](Self::run); see the [module](super) docs.
pub struct Patching<'a, B: Backend> {
    pub(crate) metric: Metric<'a, B>,
    pub(crate) sites: Vec<SiteKind>,
    layers: Option<Vec<usize>>,
    positions: Option<Vec<Vec<usize>>>,
    pub(crate) direction: Direction,
    chunk: usize,
    method: Option<Method>,
}

impl<'a, B: Backend> Patching<'a, B> {
    /// Patching measured by `metric`: by default every layer's output (`ResidPost`) at every
    /// position, every layer, denoising, 32 invokes per forward pass.
    pub fn new(metric: Metric<'a, B>) -> Self {
        Patching {
            metric,
            sites: vec![SiteKind::ResidPost],
            layers: None,
            positions: None,
            direction: Direction::Denoising,
            chunk: 32,
            method: None,
        }
    }

    /// The kinds of site patched (each a block of rows of the result).
    pub fn sites(mut self, sites: &[SiteKind]) -> Self {
        self.sites = sites.to_vec();
        self
    }

    /// Only these layers (default: all).
    pub fn layers(mut self, layers: impl IntoIterator<Item = usize>) -> Self {
        self.layers = Some(layers.into_iter().collect());
        self
    }

    /// Only these positions, each patched on its own (default: every position).
    pub fn positions(mut self, positions: impl IntoIterator<Item = usize>) -> Self {
        self.positions = Some(positions.into_iter().map(|p| vec![p]).collect());
        self
    }

    /// These positions patched together, as one entry per site and layer (e.g. every token of
    /// the subject).
    pub fn positions_together(mut self, positions: impl IntoIterator<Item = usize>) -> Self {
        self.positions = Some(vec![positions.into_iter().collect()]);
        self
    }

    /// Which run's values go into which (default [`Direction::Denoising`]).
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// How many entries share one forward pass (default 32): more is faster, and holds more
    /// activations at once.
    pub fn chunk(mut self, invokes: usize) -> Self {
        self.chunk = invokes.max(1);
        self
    }

    /// Forces a method (default: [`Method::Exact`] where it applies).
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Measures every (site, layer, position) entry with `clean` and `corrupted` (prompts of the
    /// same number of tokens).
    ///
    /// # Errors
    /// [`Error::Input`] for prompts of different lengths, not one prompt each, a layer, position
    /// or head past the last, a site the family has no place for, metric tokens outside the
    /// vocabulary, [`Method::Exact`] where it does not apply; the errors of the traces.
    pub fn run<M: Standardized<B>>(
        &self,
        lm: &LanguageModel<B, M>,
        clean: impl Into<Prompts>,
        corrupted: impl Into<Prompts>,
    ) -> Result<PatchResult> {
        let input = |problem: String| Error::Input { problem };
        let Prepared { clean, corrupted, layers, positions } =
            self.prepare(lm, clean.into(), corrupted.into())?;
        let exact = self.sites == [SiteKind::ResidPost]
            && self.direction == Direction::Denoising
            && self.positions.is_none()
            && matches!(self.metric, Metric::LogitDiff { .. });
        match self.method {
            Some(Method::Exact) if !exact => {
                return Err(input(
                    "the exact sweep patches every layer's output at every position, denoising, \
                     measured by a logit difference"
                        .to_owned(),
                ));
            }
            Some(Method::Invokes) => {}
            _ if exact => {
                let Metric::LogitDiff { answer, distractor } = self.metric else {
                    unreachable!("checked above")
                };
                if let Some(sweep) =
                    lm.model().exact_residual_sweep(&clean, &corrupted, LogitDiff { answer, distractor })
                {
                    let sweep = sweep?;
                    let values = layers.iter().flat_map(|&l| sweep.row(l).to_vec()).collect();
                    return Ok(PatchResult {
                        sites: self.sites.clone(),
                        layers,
                        positions,
                        values,
                        clean: sweep.clean,
                        corrupted: sweep.corrupted,
                        method: Method::Exact,
                    });
                }
            }
            _ => {}
        }
        self.run_invokes(lm, &clean, &corrupted, layers, positions)
    }

    /// The prompts' tokens, the layers and positions, every entry's location checked.
    pub(crate) fn prepare<M: Standardized<B>>(
        &self,
        lm: &LanguageModel<B, M>,
        clean: Prompts,
        corrupted: Prompts,
    ) -> Result<Prepared> {
        let input = |problem: String| Error::Input { problem };
        let clean = crate::prompt::one_prompt(lm, clean, "clean input")?;
        let corrupted = crate::prompt::one_prompt(lm, corrupted, "corrupted input")?;
        if clean.len() != corrupted.len() {
            return Err(input(format!(
                "the clean and corrupted prompts must have the same number of tokens, they have {} and {}",
                clean.len(),
                corrupted.len()
            )));
        }
        let vocab = lm.model().vocab_size();
        if let Some(id) = self.metric.tokens().into_iter().find(|&id| id as usize >= vocab) {
            return Err(input(format!("the metric's token {id} is outside the vocabulary (size {vocab})")));
        }
        let words = lm.model().vocabulary();
        let layers = self.layers.clone().unwrap_or_else(|| (0..words.num_layers).collect());
        let positions = self.positions.clone().unwrap_or_else(|| (0..clean.len()).map(|p| vec![p]).collect());
        if let Some(&p) = positions.iter().flatten().find(|&&p| p >= clean.len()) {
            return Err(input(format!("position {p} of prompts of {} tokens", clean.len())));
        }
        if self.sites.is_empty()
            || layers.is_empty()
            || positions.is_empty()
            || positions.iter().any(Vec::is_empty)
        {
            return Err(input("nothing to patch: no site, layer or position".to_owned()));
        }
        for &kind in &self.sites {
            for &layer in &layers {
                kind.location(&words, layer)?;
            }
        }
        Ok(Prepared { clean, corrupted, layers, positions })
    }

    /// The source and target prompts of the direction.
    pub(crate) fn source_target<'p>(&self, clean: &'p [u32], corrupted: &'p [u32]) -> (&'p [u32], &'p [u32]) {
        match self.direction {
            Direction::Denoising => (clean, corrupted),
            Direction::Noising => (corrupted, clean),
        }
    }

    /// The locations of the entries' values, once each, in forward order (`(layer, order)` keys).
    pub(crate) fn locations(
        &self,
        words: &Vocabulary,
        layers: &[usize],
    ) -> Result<BTreeMap<(usize, u8), Location>> {
        let mut wanted = BTreeMap::new();
        for &kind in &self.sites {
            for &layer in layers {
                wanted.entry((layer, kind.order())).or_insert(kind.location(words, layer)?);
            }
        }
        Ok(wanted)
    }

    fn run_invokes<M: Standardized<B>>(
        &self,
        lm: &LanguageModel<B, M>,
        clean: &[u32],
        corrupted: &[u32],
        layers: Vec<usize>,
        positions: Vec<Vec<usize>>,
    ) -> Result<PatchResult> {
        let words = lm.model().vocabulary();
        let (source, target) = self.source_target(clean, corrupted);
        // The source run's values at every location the entries patch, read in forward order.
        let wanted = self.locations(&words, &layers)?;
        let reads: Vec<Location> = wanted.values().cloned().collect();
        let (source_values, source_logits) = read_locations(lm, source, &reads)?;
        let (_, target_logits) = read_locations(lm, target, &[])?;
        let value_of = |layer: usize, kind: SiteKind| {
            let index = wanted
                .keys()
                .position(|&key| key == (layer, kind.order()))
                .expect("every entry's value was read");
            &source_values[index]
        };

        let mut entries = Vec::with_capacity(self.sites.len() * layers.len() * positions.len());
        for &kind in &self.sites {
            for &layer in &layers {
                entries.extend(positions.iter().map(|group| (kind, layer, group.clone())));
            }
        }
        let head_dim = |width: usize| width / words.num_heads.max(1);
        let mut values = Vec::with_capacity(entries.len());
        let progress = nnsight_models::progress::Progress::new(entries.len() as u64, "patching");
        for chunk in entries.chunks(self.chunk) {
            let invokes = chunk.iter().map(|(kind, layer, group)| {
                let (kind, layer, group) = (*kind, *layer, group.clone());
                let location = kind.location(&words, layer);
                let donor = value_of(layer, kind).clone();
                let body = async move |root: DynEnvoy<'_>| -> Result<f32> {
                    let location = location?;
                    let mut patched = location.read::<Tensor<B, 3>>(&root).await?;
                    for &position in &group {
                        let at = position as isize;
                        patched = match kind {
                            SiteKind::Head(head) => {
                                let [_, _, width] = patched.dims();
                                let d = head_dim(width);
                                let mut row = patched.clone().at_pos(at)?;
                                let from = donor.clone().at_pos(at)?.narrow(1, head * d, d);
                                let [batch, _] = row.dims();
                                row = row.slice_assign([0..batch, head * d..(head + 1) * d], from);
                                patched.set_pos(at, row)?
                            }
                            _ => patched.set_pos(at, donor.clone().at_pos(at)?)?,
                        };
                    }
                    location.replace(&root, patched).await?;
                    Ok(self.metric.of(&root.output::<Tensor<B, 3>>().await?))
                };
                (Some(Prompts::from(target)), body)
            });
            let (measured,) = lm.tracer().invoke_inputs_dyn(invokes).run()?;
            progress.advance(measured.len() as u64);
            values.extend(measured);
        }
        let metrics = (self.metric.of(&source_logits), self.metric.of(&target_logits));
        Ok(self.result(layers, positions, values, metrics, Method::Invokes))
    }

    /// The result of measured `values`, with the source and target runs' metrics.
    pub(crate) fn result(
        &self,
        layers: Vec<usize>,
        positions: Vec<Vec<usize>>,
        values: Vec<f32>,
        (source, target): (f32, f32),
        method: Method,
    ) -> PatchResult {
        let (clean, corrupted) = match self.direction {
            Direction::Denoising => (source, target),
            Direction::Noising => (target, source),
        };
        PatchResult { sites: self.sites.clone(), layers, positions, values, clean, corrupted, method }
    }
}

/// The values at `reads` (in forward order) and the logits of one run of `prompt`, one trace.
pub(crate) fn read_locations<B: Backend, M: Standardized<B>>(
    lm: &LanguageModel<B, M>,
    prompt: &[u32],
    reads: &[Location],
) -> Result<(Vec<Tensor<B, 3>>, Tensor<B, 3>)> {
    let body = async |root: DynEnvoy<'_>| -> Result<(Vec<Tensor<B, 3>>, Tensor<B, 3>)> {
        let mut values = Vec::with_capacity(reads.len());
        for location in reads {
            values.push(location.read::<Tensor<B, 3>>(&root).await?);
        }
        Ok((values, root.output::<Tensor<B, 3>>().await?))
    };
    let (mut results,) = lm.tracer().invoke_inputs_dyn([(Some(Prompts::from(prompt)), body)]).run()?;
    Ok(results.pop().expect("one invoke"))
}

/// The measured entries of a [`Patching`]: `[site][layer][position]`, with the metric of the
/// clean and corrupted runs.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchResult {
    /// The kinds of site, in the order given.
    pub sites: Vec<SiteKind>,
    /// The layers patched.
    pub layers: Vec<usize>,
    /// The positions patched: one group per column (a single position, unless patched
    /// [together](Patching::positions_together)).
    pub positions: Vec<Vec<usize>>,
    /// Row-major `[site][layer][position]`.
    pub values: Vec<f32>,
    /// The metric of the clean run.
    pub clean: f32,
    /// The metric of the corrupted run.
    pub corrupted: f32,
    /// How the entries were computed.
    pub method: Method,
}

impl PatchResult {
    /// The metric with the `site`-th kind of site, the `layer`-th layer and the `position`-th
    /// position patched (indices into [`sites`](Self::sites), [`layers`](Self::layers),
    /// [`positions`](Self::positions)).
    pub fn get(&self, site: usize, layer: usize, position: usize) -> f32 {
        let (layers, positions) = (self.layers.len(), self.positions.len());
        self.values[(site * layers + layer) * positions + position]
    }

    /// How much of the clean-vs-corrupted difference the entry restores (denoising) or keeps
    /// (noising): `(value − corrupted) / (clean − corrupted)`.
    pub fn recovered(&self, site: usize, layer: usize, position: usize) -> f32 {
        (self.get(site, layer, position) - self.corrupted) / (self.clean - self.corrupted)
    }
}
