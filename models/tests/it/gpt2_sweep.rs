//! The fast residual patching sweep equals the naive one — one trace per (layer, position),
//! as nnsight users write it — on a deeper random GPT-2 than the fixture, for prompts that differ
//! at one position and prompts that differ everywhere.

use std::sync::{Mutex, PoisonError};

use burn::backend::Flex;
use burn::prelude::*;
use nnsight::prelude::*;
use nnsight_models::gpt2::{Gpt2Config, Gpt2LMHeadModel};
use nnsight_models::patching::LogitDiff;

type B = Flex;

/// A random model of `config`, the same in every run: burn's CPU backend draws from one global
/// generator, which the tests of this binary, running in parallel, would otherwise share (a
/// draw whose patches barely move the metric failed the sanity check below now and then).
fn seeded(config: Gpt2Config) -> Gpt2LMHeadModel<B> {
    static DRAWS: Mutex<()> = Mutex::new(());
    let _one_at_a_time = DRAWS.lock().unwrap_or_else(PoisonError::into_inner);
    let device = Default::default();
    B::seed(&device, 2026);
    config.init::<B>(&device)
}

fn ids(tokens: &[u32]) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let device = Default::default();
    let data: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
    let ids = Tensor::from_data(TensorData::new(data, [1, tokens.len()]), &device);
    (ids, Tensor::ones([1, tokens.len()], &device))
}

/// The naive sweep: a trace for the clean block outputs, then one trace per entry.
fn naive_sweep(
    model: &Gpt2LMHeadModel<B>,
    clean: &[u32],
    corrupted: &[u32],
    metric: LogitDiff,
) -> Vec<Vec<f32>> {
    let clean_hidden: Vec<Tensor<B, 3>> = model
        .trace(ids(clean))
        .run(async |m| {
            let mut hidden = Vec::new();
            for block in &m.transformer.h {
                hidden.push(block.output().await?);
            }
            Ok(hidden)
        })
        .unwrap();
    let score = |logits: Tensor<B, 3>| {
        let last = logits.dims()[1] - 1;
        let at = |id: u32| {
            logits.clone().slice([0..1, last..last + 1, id as usize..id as usize + 1]).into_scalar()
        };
        at(metric.answer) - at(metric.distractor)
    };
    (0..clean_hidden.len())
        .map(|layer| {
            (0..clean.len())
                .map(|p| {
                    let source = clean_hidden[layer].clone().slice([0..1, p..p + 1]);
                    model
                        .trace(ids(corrupted))
                        .run(async |m| {
                            let patch = |h: Tensor<B, 3>| h.slice_assign([0..1, p..p + 1], source);
                            m.transformer.h[layer].output().edit(patch).await?;
                            Ok(score(m.output().await?))
                        })
                        .unwrap()
                })
                .collect()
        })
        .collect()
}

fn assert_sweeps_agree(clean: &[u32], corrupted: &[u32]) {
    let config = Gpt2Config {
        n_layer: 5,
        n_embd: 32,
        n_head: 4,
        vocab_size: 97,
        n_positions: 16,
        ..Gpt2Config::gpt2_small()
    };
    let model = seeded(config);
    let metric = LogitDiff { answer: 5, distractor: 7 };
    let fast = model.residual_patching_sweep(clean, corrupted, metric).unwrap();
    let naive = naive_sweep(&model, clean, corrupted, metric);
    assert_eq!((fast.layers, fast.positions), (5, clean.len()));
    let mut distinct = 0;
    for (layer, row) in naive.iter().enumerate() {
        for (p, &expected) in row.iter().enumerate() {
            let got = fast.get(layer, p);
            assert!((got - expected).abs() <= 1e-4, "({layer}, {p}): fast {got}, naive {expected}");
            distinct += usize::from((expected - fast.corrupted).abs() > 1e-3);
        }
    }
    assert!(distinct > 0, "some patch must move the metric, or the comparison proves little");
    let plain = |tokens: &[u32]| naive_sweep_metric(&model, tokens, metric);
    assert!((fast.clean - plain(clean)).abs() <= 1e-4);
    assert!((fast.corrupted - plain(corrupted)).abs() <= 1e-4);
}

fn naive_sweep_metric(model: &Gpt2LMHeadModel<B>, tokens: &[u32], metric: LogitDiff) -> f32 {
    let (ids, mask) = ids(tokens);
    let logits = model.forward(ids, mask);
    let last = tokens.len() - 1;
    let at =
        |id: u32| logits.clone().slice([0..1, last..last + 1, id as usize..id as usize + 1]).into_scalar();
    at(metric.answer) - at(metric.distractor)
}

#[test]
fn prompts_differing_at_one_position() {
    assert_sweeps_agree(&[3, 14, 15, 92, 65, 35, 89, 79], &[3, 14, 15, 92, 11, 35, 89, 79]);
}

#[test]
fn prompts_differing_everywhere() {
    assert_sweeps_agree(&[3, 14, 15, 92, 65, 35, 89, 79, 32], &[27, 18, 28, 18, 28, 45, 90, 45, 2]);
}

#[test]
fn bad_prompts_are_errors() {
    let model = seeded(Gpt2Config {
        n_layer: 1,
        n_embd: 8,
        n_head: 2,
        vocab_size: 10,
        n_positions: 4,
        ..Gpt2Config::gpt2_small()
    });
    let metric = LogitDiff { answer: 1, distractor: 2 };
    let cases: [(&[u32], &[u32], LogitDiff, &str); 4] = [
        (&[1, 2], &[1], metric, "same number of tokens"),
        (&[], &[], metric, "empty"),
        (&[1, 2], &[1, 10], metric, "token id 10"),
        (&[1, 2], &[1, 2], LogitDiff { answer: 11, distractor: 2 }, "token id 11"),
    ];
    for (clean, corrupted, metric, message) in cases {
        let error = model.residual_patching_sweep(clean, corrupted, metric).unwrap_err();
        assert!(
            matches!(error, nnsight::Error::Input { .. }) && error.to_string().contains(message),
            "{error}"
        );
    }
    let long = [1u32; 5];
    assert!(model.residual_patching_sweep(&long, &long, metric).is_err());
}
