//! The fast residual patching sweep of Llama models (`LlamaForCausalLM::residual_patching_sweep`)
//! against the sweep as nnsight users write it — one trace per (layer, position) — on the tiny
//! Llama fixture (grouped-query attention, rotary positions): every entry within 1e-4, for
//! prompts differing at one position and at every position, and with a sliding window.

mod support;

use burn::prelude::*;
use nnsight::prelude::*;
use nnsight_models::llama::{LlamaForCausalLM, LlamaForCausalLMEnvoy};
use nnsight_models::patching::{LogitDiff, PatchingSweep};
use support::B;
use support::fixture::fixture_dir;
use support::llama_fixture::{TINY_LLAMA, TinyLlama, copy_of_tiny_llama, load_llama, tiny_llama};

const TOL: f32 = 1e-4;

fn ids(tokens: &[u32]) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let device = Default::default();
    let data: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
    (
        Tensor::from_data(TensorData::new(data, [1, tokens.len()]), &device),
        Tensor::ones([1, tokens.len()], &device),
    )
}

fn metric_of(logits: Tensor<B, 3>, metric: LogitDiff) -> f32 {
    let last = logits.dims()[1] - 1;
    let at =
        |id: u32| logits.clone().slice([0..1, last..last + 1, id as usize..id as usize + 1]).into_scalar();
    at(metric.answer) - at(metric.distractor)
}

/// One trace reading the clean layer outputs, then one trace per (layer, position) writing one
/// of them into the corrupted run.
fn naive_sweep(model: &LlamaForCausalLM<B>, clean: &[u32], corrupted: &[u32], metric: LogitDiff) -> Vec<f32> {
    let clean_hidden: Vec<Tensor<B, 3>> = model
        .trace(ids(clean))
        .run(async |m: &LlamaForCausalLMEnvoy<B>| {
            let mut hidden = Vec::new();
            for layer in &m.model.layers {
                hidden.push(layer.output().await?);
            }
            Ok(hidden)
        })
        .unwrap();
    let mut values = Vec::new();
    for (layer, hidden) in clean_hidden.iter().enumerate() {
        for p in 0..clean.len() {
            let source = hidden.clone().slice([0..1, p..p + 1]);
            let value = model
                .trace(ids(corrupted))
                .run(async |m: &LlamaForCausalLMEnvoy<B>| {
                    m.model.layers[layer].output().edit(|h| h.slice_assign([0..1, p..p + 1], source)).await?;
                    Ok(metric_of(m.output().await?, metric))
                })
                .unwrap();
            values.push(value);
        }
    }
    values
}

fn check_against_the_naive_sweep(lm: &TinyLlama, clean: &[u32], corrupted: &[u32]) -> PatchingSweep {
    let model = lm.model();
    let metric = LogitDiff { answer: 7, distractor: 19 };
    let fast = model.residual_patching_sweep(clean, corrupted, metric).unwrap();
    assert_eq!((fast.layers, fast.positions), (model.model.layers.len(), clean.len()));
    let plain = |tokens: &[u32]| metric_of(model.forward(ids(tokens).0, ids(tokens).1), metric);
    assert!((fast.clean - plain(clean)).abs() <= TOL, "clean: {} vs {}", fast.clean, plain(clean));
    assert!((fast.corrupted - plain(corrupted)).abs() <= TOL, "corrupted");
    let naive = naive_sweep(model, clean, corrupted, metric);
    for (i, (&fast_value, &naive_value)) in fast.values().iter().zip(&naive).enumerate() {
        let (layer, position) = (i / clean.len(), i % clean.len());
        assert!(
            (fast_value - naive_value).abs() <= TOL,
            "sweep[{layer}, {position}]: fast {fast_value}, naive {naive_value}"
        );
    }
    fast
}

#[test]
fn the_sweep_equals_one_trace_per_entry_when_one_position_differs() {
    let clean = [5, 40, 12, 33, 8, 21, 17];
    let mut corrupted = clean;
    corrupted[3] = 44;
    let fast = check_against_the_naive_sweep(&tiny_llama(), &clean, &corrupted);
    // Before the differing token the runs agree: those patches are the corrupted run.
    for layer in 0..fast.layers {
        for position in 0..3 {
            assert_eq!(fast.get(layer, position), fast.corrupted, "[{layer}, {position}]");
        }
    }
}

/// On backends other than `Flex` the sweep runs on burn's tensor operations (its attention and
/// matrix products): the same matrix.
#[test]
fn the_sweep_on_another_backend_gives_the_same_matrix() {
    use burn::backend::Autodiff;
    use nnsight_models::LanguageModel;

    let clean = [5, 40, 12, 33, 8, 21, 17];
    let corrupted = clean.map(|t| t + 1);
    let metric = LogitDiff { answer: 7, distractor: 19 };
    let dir = fixture_dir(TINY_LLAMA);
    let other = LanguageModel::<Autodiff<B>, LlamaForCausalLM<Autodiff<B>>>::from_pretrained(
        dir.to_str().unwrap(),
        &Default::default(),
    )
    .unwrap();
    let fast = tiny_llama().model().residual_patching_sweep(&clean, &corrupted, metric).unwrap();
    let generic = other.model().residual_patching_sweep(&clean, &corrupted, metric).unwrap();
    for (i, (a, b)) in fast.values().iter().zip(generic.values()).enumerate() {
        assert!((a - b).abs() <= TOL, "entry {i}: {a} vs {b}");
    }
}

#[test]
fn the_sweep_equals_one_trace_per_entry_when_every_position_differs() {
    let clean = [5, 40, 12, 33, 8, 21, 17];
    let corrupted = clean.map(|t| t + 1);
    check_against_the_naive_sweep(&tiny_llama(), &clean, &corrupted);
}

#[test]
fn the_sweep_equals_one_trace_per_entry_with_a_sliding_window() {
    let dir = copy_of_tiny_llama();
    std::fs::copy(fixture_dir(TINY_LLAMA).join("mistral/config.json"), dir.path().join("config.json"))
        .unwrap();
    let mistral = load_llama(dir.path()).unwrap();
    assert_eq!(mistral.model().model.sliding_window, Some(3), "shorter than the prompts");
    let clean = [5, 40, 12, 33, 8, 21, 17];
    let mut corrupted = clean;
    corrupted[1] = 44;
    check_against_the_naive_sweep(&mistral, &clean, &corrupted);
}
