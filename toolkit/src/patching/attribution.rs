//! Attribution patching (AtP; Nanda 2023, Kramár et al. 2024): every entry of a [`Patching`]
//! estimated to first order, `(a_source − a_target) · ∂metric/∂a` at the target run, from one
//! forward and one backward pass of the target prompt and one forward pass of the source.

use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;
use nnsight::site::Tracked;
use nnsight::{DynEnvoy, Error, Result};
use nnsight_models::vocabulary::{Location, Standardized};
use nnsight_models::{LanguageModel, Prompts};

use super::sweep::Prepared;
use super::{Method, PatchResult, Patching, SiteKind};

impl<B: AutodiffBackend> Patching<'_, B> {
    /// Estimates every (site, layer, position) entry by attribution patching: the metric's
    /// gradient at the target run (the corrupted prompt when denoising) times the difference
    /// between the source and target runs' values at the entry (summed over the value's width;
    /// over a head's columns for [`SiteKind::Head`]), added to the target run's metric. Exact
    /// for a metric linear in the entry's value, a first-order estimate otherwise — compare with
    /// [`run`](Self::run) where it matters. The model is the same one `run` takes, loaded once on
    /// an autodiff backend.
    ///
    /// # Errors
    /// As [`run`](Self::run); [`Error::Input`] for a [`Metric::Custom`](super::Metric::Custom)
    /// metric (a number, not a differentiable tensor).
    pub fn attribute<M: Standardized<B>>(
        &self,
        lm: &LanguageModel<B, M>,
        clean: impl Into<Prompts>,
        corrupted: impl Into<Prompts>,
    ) -> Result<PatchResult> {
        if matches!(self.metric, super::Metric::Custom(_)) {
            return Err(Error::Input {
                problem:
                    "attribution patching needs a differentiable metric (logit difference, probability, \
                          KL); a custom metric gives a number"
                        .to_owned(),
            });
        }
        let Prepared { clean, corrupted, layers, positions } =
            self.prepare(lm, clean.into(), corrupted.into())?;
        let words = lm.model().vocabulary();
        let (source, target) = self.source_target(&clean, &corrupted);
        let wanted = self.locations(&words, &layers)?;
        let reads: Vec<Location> = wanted.values().cloned().collect();

        // The source run's values, and the target run's with their gradients tracked.
        let (source_values, source_logits) = super::sweep::read_locations(lm, source, &reads)?;
        let track = async |root: DynEnvoy<'_>| -> Result<(Vec<Tracked<B, 3>>, Tensor<B, 3>)> {
            let mut tracked = Vec::with_capacity(reads.len());
            for location in &reads {
                tracked.push(location.track_grad::<B, 3>(&root).await?);
            }
            Ok((tracked, root.output::<Tensor<B, 3>>().await?))
        };
        let (mut targeted,) = lm.tracer().invoke_inputs_dyn([(Some(Prompts::from(target)), track)]).run()?;
        let (tracked, target_logits) = targeted.pop().expect("one invoke");
        let metric = self.metric.differentiable(&target_logits).expect("not a custom metric");
        let grads = metric.backward();

        // Per location: (a_source − a_target) · gradient, `[tokens, width]`, on the inner backend.
        let mut products = Vec::with_capacity(tracked.len());
        for (t, source) in tracked.iter().zip(&source_values) {
            let [_, tokens, width] = source.dims();
            let difference = source.clone().inner() - t.value().inner();
            products.push((difference * t.grad(&grads)?).reshape([tokens, width]));
        }
        let target_metric = self.metric.of(&target_logits);
        let head_dim = |width: usize| width / words.num_heads.max(1);
        let mut values = Vec::with_capacity(self.sites.len() * layers.len() * positions.len());
        for &kind in &self.sites {
            for &layer in &layers {
                let index = wanted.keys().position(|&key| key == (layer, kind.order())).expect("read");
                let product = &products[index];
                let [_, width] = product.dims();
                let columns = match kind {
                    SiteKind::Head(head) => {
                        product.clone().narrow(1, head * head_dim(width), head_dim(width))
                    }
                    _ => product.clone(),
                };
                let per_position: Vec<f32> =
                    columns.sum_dim(1).into_data().convert::<f32>().to_vec().map_err(|e| {
                        Error::Unsupported { what: format!("reading the attributions back: {e:?}") }
                    })?;
                values.extend(
                    positions
                        .iter()
                        .map(|group| target_metric + group.iter().map(|&p| per_position[p]).sum::<f32>()),
                );
            }
        }
        let metrics = (self.metric.of(&source_logits), target_metric);
        Ok(self.result(layers, positions, values, metrics, Method::Attribution))
    }
}
