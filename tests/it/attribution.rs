//! Attribution patching (`Patching::attribute`) on a model loaded once on an autodiff backend:
//! each entry's gradient × difference equals a central finite difference of the metric along the
//! patch's direction (the patch done by hand, scaled); it tracks the exact patching results on the
//! fixtures (the correlation is asserted and printed); the same model runs plain traces and
//! `Patching::run` as the non-autodiff model does, bit for bit.

use crate::support;

use burn::backend::Autodiff;
use burn::prelude::*;
use nnsight::{DynEnvoy, Error, Result};
use nnsight_models::gpt2::Gpt2LMHeadModel;
use nnsight_models::llama::LlamaForCausalLM;
use nnsight_models::{CausalLm, LanguageModel, Pretrained};
use nnsight_toolkit::patching::{Method, Metric, PatchResult, Patching, SiteKind};
use support::B;
use support::fixture::{fixture_dir, tiny_gpt2};

type A = Autodiff<B>;

const CLEAN: &str = "The Eiffel Tower is in the city of";
const CORRUPTED: &str = "The Colosseum is in the city of";

fn on_autodiff<M: Pretrained<A>>(fixture: &str) -> LanguageModel<A, M> {
    LanguageModel::from_pretrained(fixture_dir(fixture).to_str().unwrap(), &Default::default()).unwrap()
}

fn pair<BB: Backend, M: CausalLm<BB>>(lm: &LanguageModel<BB, M>) -> (Vec<u32>, Vec<u32>) {
    let clean = lm.encode(CLEAN).unwrap();
    let mut corrupted = lm.encode(CORRUPTED).unwrap();
    corrupted.resize(clean.len(), corrupted[corrupted.len() - 1]);
    (clean, corrupted)
}

/// The metric with `path`'s value at `position` (columns `columns`) moved by `scale` × (donor −
/// value): one trace by hand.
#[allow(clippy::too_many_arguments)]
fn moved_by_hand<M: CausalLm<A>>(
    lm: &LanguageModel<A, M>,
    prompt: &[u32],
    (path, input): (&str, bool),
    position: usize,
    columns: Option<std::ops::Range<usize>>,
    donor: &Tensor<A, 3>,
    scale: f32,
    metric: &Metric<'_, A>,
) -> f32 {
    let body = async |root: DynEnvoy<'_>| -> Result<f32> {
        let module = root.module(path)?;
        let edit = |h: Tensor<A, 3>| -> Result<Tensor<A, 3>> {
            let [b, _, d] = h.dims();
            let (p, columns) = (position, columns.clone().unwrap_or(0..d));
            let here = h.clone().slice([0..b, p..p + 1, columns.clone()]);
            let there = donor.clone().slice([0..b, p..p + 1, columns.clone()]);
            Ok(h.slice_assign([0..b, p..p + 1, columns], here.clone() + (there - here) * scale))
        };
        if input {
            module.input::<Tensor<A, 3>>().try_edit(edit).await?;
        } else {
            module.output::<Tensor<A, 3>>().try_edit(edit).await?;
        }
        Ok(metric.of(&root.output::<Tensor<A, 3>>().await?))
    };
    let (mut results,) = lm.tracer().invoke_inputs_dyn([(Some(prompt.into()), body)]).run().unwrap();
    results.pop().unwrap()
}

fn read_by_hand<M: CausalLm<A>>(
    lm: &LanguageModel<A, M>,
    prompt: &[u32],
    (path, input): (&str, bool),
) -> Tensor<A, 3> {
    let body = async |root: DynEnvoy<'_>| -> Result<Tensor<A, 3>> {
        let module = root.module(path)?;
        if input { module.input::<Tensor<A, 3>>().await } else { module.output::<Tensor<A, 3>>().await }
    };
    let (mut results,) = lm.tracer().invoke_inputs_dyn([(Some(prompt.into()), body)]).run().unwrap();
    results.pop().unwrap()
}

#[test]
fn each_attribution_is_the_metrics_derivative_along_the_patch() {
    let lm = on_autodiff::<Gpt2LMHeadModel<A>>("tiny-gpt2");
    let (clean, corrupted) = pair(&lm);
    let sites = [SiteKind::ResidPre, SiteKind::AttnOut, SiteKind::MlpOut, SiteKind::Head(2)];
    let atp = Patching::new(Metric::logit_diff(7, 11))
        .sites(&sites)
        .attribute(&lm, clean.clone(), corrupted.clone())
        .unwrap();
    assert_eq!(atp.method, Method::Attribution);
    let metric = Metric::<A>::logit_diff(7, 11);
    let epsilon = 1e-2;
    for (s, kind) in sites.iter().enumerate() {
        let layer = 1;
        let (path, input) = match kind {
            SiteKind::ResidPre => ("transformer.h.1".to_owned(), true),
            SiteKind::AttnOut => ("transformer.h.1.attn".to_owned(), false),
            SiteKind::MlpOut => ("transformer.h.1.mlp".to_owned(), false),
            _ => ("transformer.h.1.attn.c_proj".to_owned(), true),
        };
        let donor = read_by_hand(&lm, &clean, (&path, input));
        let columns = matches!(kind, SiteKind::Head(_)).then_some(32..48);
        for p in [0, 3, clean.len() - 1] {
            let up =
                moved_by_hand(&lm, &corrupted, (&path, input), p, columns.clone(), &donor, epsilon, &metric);
            let down =
                moved_by_hand(&lm, &corrupted, (&path, input), p, columns.clone(), &donor, -epsilon, &metric);
            let derivative = (up - down) / (2.0 * epsilon);
            let attribution = atp.get(s, layer, p) - atp.corrupted;
            assert!(
                (attribution - derivative).abs() <= 2e-3 + 1e-2 * derivative.abs(),
                "{kind:?} position {p}: gradient × difference {attribution} vs finite difference {derivative}"
            );
        }
    }
}

/// Pearson's correlation of two results' entries.
fn correlation(a: &PatchResult, b: &PatchResult) -> f32 {
    let n = a.values.len() as f32;
    let (ma, mb) = (a.values.iter().sum::<f32>() / n, b.values.iter().sum::<f32>() / n);
    let cov: f32 = a.values.iter().zip(&b.values).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f32 = a.values.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f32 = b.values.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn attribution_tracks_exact_patching_on_the_fixtures() {
    fn check<M: nnsight_models::vocabulary::Standardized<A>>(
        lm: &LanguageModel<A, M>,
        name: &str,
        at_least: f32,
    ) {
        let (clean, corrupted) = pair(lm);
        let patching = Patching::new(Metric::logit_diff(5, 9)).sites(&[
            SiteKind::ResidPost,
            SiteKind::AttnOut,
            SiteKind::MlpOut,
        ]);
        let exact = patching.run(lm, clean.clone(), corrupted.clone()).unwrap();
        let atp = patching.attribute(lm, clean, corrupted).unwrap();
        assert!((exact.clean - atp.clean).abs() < 1e-4 && (exact.corrupted - atp.corrupted).abs() < 1e-4);
        let r = correlation(&atp, &exact);
        println!(
            "{name}: correlation of attribution patching with exact patching over {} entries: {r:.3}",
            atp.values.len()
        );
        assert!(r >= at_least, "{name}: correlation {r}");
        // Positions patched together are estimated as the sum of their own estimates.
        let layers = lm.model().vocabulary().num_layers;
        let single = Patching::new(Metric::logit_diff(5, 9)).sites(&[SiteKind::MlpOut]).positions([1, 2]);
        let single = single.attribute(lm, pair(lm).0, pair(lm).1).unwrap();
        let joint =
            Patching::new(Metric::logit_diff(5, 9)).sites(&[SiteKind::MlpOut]).positions_together([1, 2]);
        let joint = joint.attribute(lm, pair(lm).0, pair(lm).1).unwrap();
        for layer in 0..layers {
            let sum = single.get(0, layer, 0) + single.get(0, layer, 1) - 2.0 * single.corrupted;
            assert!((joint.get(0, layer, 0) - joint.corrupted - sum).abs() < 1e-4, "{name} layer {layer}");
        }
        // Where source and target are the same prompt, every estimate is the run's own metric.
        let same = patching.attribute(lm, CLEAN, CLEAN).unwrap();
        assert!(same.values.iter().all(|&v| v == same.corrupted), "{same:?}");
    }
    check(&on_autodiff::<Gpt2LMHeadModel<A>>("tiny-gpt2"), "tiny GPT-2", 0.8);
    // Random tiny models are far from linear; measured: GPT-2 0.868, Llama 0.258.
    check(&on_autodiff::<LlamaForCausalLM<A>>("tiny-llama"), "tiny Llama", 0.2);
}

#[test]
fn one_model_on_autodiff_traces_with_and_without_gradients() {
    // The model loaded once on `Autodiff<B>`: plain forward passes and patching give what the
    // model on `B` gives (up to rounding: the CPU backend's fused kernels do not run under
    // autodiff); attribution needs no second copy.
    let (ad, plain) = (on_autodiff::<Gpt2LMHeadModel<A>>("tiny-gpt2"), tiny_gpt2());
    let logits = ad.forward(CLEAN).unwrap().inner();
    support::fixture::assert_close("logits on autodiff", &logits, &plain.forward(CLEAN).unwrap(), 1e-5);
    let (clean, corrupted) = pair(&plain);
    let on_ad = Patching::new(Metric::logit_diff(5, 9))
        .sites(&[SiteKind::MlpOut])
        .run(&ad, clean.clone(), corrupted.clone())
        .unwrap();
    let on_b = Patching::new(Metric::logit_diff(5, 9))
        .sites(&[SiteKind::MlpOut])
        .run(&plain, clean.clone(), corrupted.clone())
        .unwrap();
    assert!(
        on_ad.values.iter().zip(&on_b.values).all(|(a, b)| (a - b).abs() < 1e-4),
        "{on_ad:?} vs {on_b:?}"
    );
    // A custom metric is a number: no gradient flows through it.
    let custom = Patching::new(Metric::Custom(Box::new(|_: &Tensor<A, 3>| 0.0)))
        .attribute(&ad, clean, corrupted)
        .unwrap_err();
    assert!(
        matches!(custom, Error::Input { .. }) && custom.to_string().contains("differentiable"),
        "{custom}"
    );
}
