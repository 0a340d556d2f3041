//! General activation patching (`nnsight_toolkit::patching`): every (site, layer, position)
//! entry — residual streams, attention and MLP outputs, single heads — equals its own trace done
//! by hand (GPT-2's module paths written out, the clean value spliced at one position); the exact
//! residual sweep equals the invokes; noising, probabilities, KL and custom metrics are measured as
//! defined; misuse is a typed error.

use crate::support;

use burn::prelude::*;
use nnsight::{DynEnvoy, Error, Result};
use nnsight_models::{CausalLm, LanguageModel};
use nnsight_toolkit::patching::{Direction, Method, Metric, PatchResult, Patching, SiteKind};
use support::B;
use support::causal_lms::tiny_mamba;
use support::fixture::tiny_gpt2;
use support::llama_fixture::tiny_llama;

const CLEAN: &str = "The Eiffel Tower is in the city of";
const CORRUPTED: &str = "The Colosseum is in the city of";

/// Prompts of one length: the corrupted one cut or padded to the clean one's tokens.
fn pair<M: CausalLm<B>>(lm: &LanguageModel<B, M>) -> (Vec<u32>, Vec<u32>) {
    let clean = lm.encode(CLEAN).unwrap();
    let mut corrupted = lm.encode(CORRUPTED).unwrap();
    corrupted.resize(clean.len(), corrupted[corrupted.len() - 1]);
    assert_ne!(clean, corrupted);
    (clean, corrupted)
}

/// The value at `path` (input or output) in a run of `prompt`, read by hand.
fn read_by_hand<M: CausalLm<B>>(
    lm: &LanguageModel<B, M>,
    prompt: &[u32],
    path: &str,
    input: bool,
) -> Tensor<B, 3> {
    let body = async |root: DynEnvoy<'_>| -> Result<Tensor<B, 3>> {
        let module = root.module(path)?;
        if input { module.input::<Tensor<B, 3>>().await } else { module.output::<Tensor<B, 3>>().await }
    };
    let (mut results,) = lm.tracer().invoke_inputs_dyn([(Some(prompt.into()), body)]).run().unwrap();
    results.pop().unwrap()
}

/// The logits of `prompt` with `path`'s value replaced at `position` (columns `columns` only) by
/// `donor`'s, one trace.
fn patched_by_hand<M: CausalLm<B>>(
    lm: &LanguageModel<B, M>,
    prompt: &[u32],
    (path, input): (&str, bool),
    position: usize,
    columns: Option<std::ops::Range<usize>>,
    donor: &Tensor<B, 3>,
) -> Tensor<B, 3> {
    let body = async |root: DynEnvoy<'_>| -> Result<Tensor<B, 3>> {
        let module = root.module(path)?;
        let edit = |h: Tensor<B, 3>| -> Result<Tensor<B, 3>> {
            let [b, t, d] = h.dims();
            let (p, columns) = (position, columns.clone().unwrap_or(0..d));
            assert!(p < t, "position {p} of {t} tokens");
            let from = donor.clone().slice([0..b, p..p + 1, columns.clone()]);
            Ok(h.slice_assign([0..b, p..p + 1, columns], from))
        };
        if input {
            module.input::<Tensor<B, 3>>().try_edit(edit).await?;
        } else {
            module.output::<Tensor<B, 3>>().try_edit(edit).await?;
        }
        root.output::<Tensor<B, 3>>().await
    };
    let (mut results,) = lm.tracer().invoke_inputs_dyn([(Some(prompt.into()), body)]).run().unwrap();
    results.pop().unwrap()
}

fn logit_diff(logits: &Tensor<B, 3>, answer: u32, distractor: u32) -> f32 {
    let [_, t, v] = logits.dims();
    let last: Vec<f32> = logits.clone().narrow(1, t - 1, 1).reshape([v]).into_data().to_vec().unwrap();
    last[answer as usize] - last[distractor as usize]
}

#[test]
fn every_entry_equals_its_own_trace_by_hand() {
    let lm = tiny_gpt2();
    let (clean, corrupted) = pair(&lm);
    let (answer, distractor) = (7, 11);
    let sites =
        [SiteKind::ResidPre, SiteKind::AttnOut, SiteKind::ResidMid, SiteKind::MlpOut, SiteKind::Head(1)];
    let result = Patching::new(Metric::logit_diff(answer, distractor))
        .sites(&sites)
        .chunk(7)
        .run(&lm, clean.clone(), corrupted.clone())
        .unwrap();
    assert_eq!(result.method, Method::Invokes);
    assert_eq!((result.layers.len(), result.positions.len()), (2, clean.len()));
    let head_dim = 64 / 4;
    for (s, kind) in sites.iter().enumerate() {
        for layer in 0..2 {
            let (path, input) = match kind {
                SiteKind::ResidPre => (format!("transformer.h.{layer}"), true),
                SiteKind::AttnOut => (format!("transformer.h.{layer}.attn"), false),
                SiteKind::ResidMid => (format!("transformer.h.{layer}.ln_2"), true),
                SiteKind::MlpOut => (format!("transformer.h.{layer}.mlp"), false),
                _ => (format!("transformer.h.{layer}.attn.c_proj"), true),
            };
            let donor = read_by_hand(&lm, &clean, &path, input);
            let columns = matches!(kind, SiteKind::Head(_)).then(|| head_dim..2 * head_dim);
            for p in 0..clean.len() {
                let logits = patched_by_hand(&lm, &corrupted, (&path, input), p, columns.clone(), &donor);
                let by_hand = logit_diff(&logits, answer, distractor);
                let ours = result.get(s, layer, p);
                assert!(
                    (ours - by_hand).abs() < 1e-4,
                    "{kind:?} layer {layer} position {p}: {ours} vs {by_hand}"
                );
            }
        }
    }
    assert!((result.clean - logit_diff(&lm.forward(clean).unwrap(), answer, distractor)).abs() < 1e-5);
    assert!(
        (result.corrupted - logit_diff(&lm.forward(corrupted).unwrap(), answer, distractor)).abs() < 1e-5
    );
}

fn assert_results_close(a: &PatchResult, b: &PatchResult, tolerance: f32) {
    assert_eq!(a.values.len(), b.values.len());
    for (i, (x, y)) in a.values.iter().zip(&b.values).enumerate() {
        assert!((x - y).abs() < tolerance, "entry {i}: {x} vs {y}");
    }
}

#[test]
fn the_exact_residual_sweep_equals_the_invokes_on_gpt2_and_llama() {
    fn check<M: nnsight_models::vocabulary::Standardized<B>>(lm: &LanguageModel<B, M>) {
        let (clean, corrupted) = pair(lm);
        let patching = Patching::new(Metric::logit_diff(5, 9));
        let exact = patching.run(lm, clean.clone(), corrupted.clone()).unwrap();
        assert_eq!(exact.method, Method::Exact);
        let invokes = Patching::new(Metric::logit_diff(5, 9))
            .method(Method::Invokes)
            .run(lm, clean, corrupted)
            .unwrap();
        assert_eq!(invokes.method, Method::Invokes);
        assert_results_close(&exact, &invokes, 1e-4);
        assert!(
            (exact.clean - invokes.clean).abs() < 1e-4 && (exact.corrupted - invokes.corrupted).abs() < 1e-4
        );
    }
    check(&tiny_gpt2());
    check(&tiny_llama());
}

#[test]
fn noising_other_metrics_and_architectures_without_an_exact_sweep() {
    let lm = tiny_llama();
    let (clean, corrupted) = pair(&lm);
    // Noising: the corrupted run's head 0 of layer 1 at the last position, in the clean run.
    let last = clean.len() - 1;
    let noised = Patching::new(Metric::Probability(5))
        .sites(&[SiteKind::Head(0)])
        .layers([1])
        .positions([last])
        .direction(Direction::Noising)
        .run(&lm, clean.clone(), corrupted.clone())
        .unwrap();
    let donor = read_by_hand(&lm, &corrupted, "model.layers.1.self_attn.o_proj", true);
    let head_dim = lm.model().model.layers[1].self_attn.head_dim;
    let logits = patched_by_hand(
        &lm,
        &clean,
        ("model.layers.1.self_attn.o_proj", true),
        last,
        Some(0..head_dim),
        &donor,
    );
    let by_hand = Metric::<B>::Probability(5).of(&logits);
    assert!((noised.get(0, 0, 0) - by_hand).abs() < 1e-6, "{} vs {by_hand}", noised.get(0, 0, 0));
    assert!(
        (noised.clean - Metric::<B>::Probability(5).of(&lm.forward(clean.clone()).unwrap())).abs() < 1e-6
    );

    // KL to the clean run: 0 where the patch restores it entirely (the last layer's output at
    // the last position), and a custom metric is called on the logits.
    let reference = Metric::log_probs(&lm.forward(clean.clone()).unwrap());
    let layers = lm.model().model.layers.len();
    let kl = Patching::new(Metric::KlFrom(reference))
        .layers([layers - 1])
        .positions([last])
        .run(&lm, clean.clone(), corrupted.clone())
        .unwrap();
    assert!(kl.get(0, 0, 0).abs() < 1e-5 && kl.corrupted > 1e-3, "{kl:?}");
    let custom = Patching::new(Metric::Custom(Box::new(|l: &Tensor<B, 3>| logit_diff(l, 5, 9))))
        .layers([0])
        .run(&lm, clean.clone(), corrupted.clone())
        .unwrap();
    let diff = Patching::new(Metric::logit_diff(5, 9))
        .layers([0])
        .method(Method::Invokes)
        .run(&lm, clean, corrupted)
        .unwrap();
    assert_results_close(&custom, &diff, 1e-6);

    // Mamba has no exact sweep and no MLP.
    let mamba = tiny_mamba();
    let (clean, corrupted) = pair(&mamba);
    let result =
        Patching::new(Metric::logit_diff(5, 9)).run(&mamba, clean.clone(), corrupted.clone()).unwrap();
    assert_eq!(result.method, Method::Invokes);
    let error = Patching::new(Metric::logit_diff(5, 9))
        .sites(&[SiteKind::MlpOut])
        .run(&mamba, clean, corrupted)
        .unwrap_err();
    assert!(error.to_string().contains("a Mamba layer has no MLP"), "{error}");
}

#[test]
fn patching_misuse_is_a_typed_error() {
    let lm = tiny_gpt2();
    let (clean, corrupted) = pair(&lm);
    let vocab = lm.model().vocab_size() as u32;
    let run = |patching: Patching<'_, B>, clean: Vec<u32>, corrupted: Vec<u32>| {
        patching.run(&lm, clean, corrupted).unwrap_err()
    };
    let metric = || Metric::logit_diff(1, 2);
    let cases: Vec<(&str, Error, &str)> = vec![
        (
            "lengths",
            run(Patching::new(metric()), clean.clone(), corrupted[..3].to_vec()),
            "same number of tokens",
        ),
        (
            "head",
            run(Patching::new(metric()).sites(&[SiteKind::Head(4)]), clean.clone(), corrupted.clone()),
            "head 4 of a 4-head",
        ),
        (
            "layer",
            run(Patching::new(metric()).layers([2]), clean.clone(), corrupted.clone()),
            "layer 2 of a 2-layer",
        ),
        (
            "position",
            run(Patching::new(metric()).positions([99]), clean.clone(), corrupted.clone()),
            "position 99",
        ),
        (
            "token",
            run(Patching::new(Metric::logit_diff(vocab, 0)), clean.clone(), corrupted.clone()),
            "outside the vocabulary",
        ),
        (
            "exact",
            run(
                Patching::new(metric()).sites(&[SiteKind::MlpOut]).method(Method::Exact),
                clean.clone(),
                corrupted.clone(),
            ),
            "exact sweep",
        ),
        (
            "nothing",
            run(Patching::new(metric()).sites(&[]), clean.clone(), corrupted.clone()),
            "nothing to patch",
        ),
    ];
    for (case, error, message) in cases {
        assert!(matches!(error, Error::Input { .. }), "{case}: {error}");
        assert!(error.to_string().contains(message), "{case}: {error}");
    }
    let error = Patching::new(metric()).run(&lm, ["a", "b"], CORRUPTED).unwrap_err();
    assert!(error.to_string().contains("2 prompts"), "{error}");
    support::assert_identical(
        &lm.forward(CLEAN).unwrap(),
        &lm.trace(CLEAN).run(async |m| m.output().await).unwrap(),
    );
}

#[test]
fn positions_patched_together_are_one_entry_equal_to_the_joint_patch_by_hand() {
    let lm = tiny_gpt2();
    let (clean, corrupted) = pair(&lm);
    let result = Patching::new(Metric::logit_diff(7, 11))
        .sites(&[SiteKind::MlpOut])
        .layers([1])
        .positions_together([1, 2, 3])
        .run(&lm, clean.clone(), corrupted.clone())
        .unwrap();
    assert_eq!(result.positions, [vec![1, 2, 3]]);
    let donor = read_by_hand(&lm, &clean, "transformer.h.1.mlp", false);
    let body = async |root: DynEnvoy<'_>| -> Result<Tensor<B, 3>> {
        root.module("transformer.h.1.mlp")?
            .output::<Tensor<B, 3>>()
            .edit(|h| {
                let [b, _, d] = h.dims();
                h.slice_assign([0..b, 1..4, 0..d], donor.clone().slice([0..b, 1..4, 0..d]))
            })
            .await?;
        root.output::<Tensor<B, 3>>().await
    };
    let (mut logits,) =
        lm.tracer().invoke_inputs_dyn([(Some(corrupted.as_slice().into()), body)]).run().unwrap();
    let by_hand = logit_diff(&logits.pop().unwrap(), 7, 11);
    assert!((result.get(0, 0, 0) - by_hand).abs() < 1e-4, "{} vs {by_hand}", result.get(0, 0, 0));
    let error = Patching::new(Metric::logit_diff(7, 11))
        .positions_together([])
        .run(&lm, clean, corrupted)
        .unwrap_err();
    assert!(error.to_string().contains("nothing to patch"), "{error}");
}
