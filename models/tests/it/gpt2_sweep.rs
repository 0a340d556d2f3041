//! The fast GPT-2 residual patching sweep equals the naive one — one trace per (layer, position),
//! as nnsight users write it — on a deeper random GPT-2 than the fixture, for prompts that differ
//! at one position and prompts that differ everywhere.

use burn::backend::Flex;
use nnsight_models::gpt2::{Gpt2Config, Gpt2LMHeadModel};
use nnsight_models::patching::LogitDiff;
use nnsight_support::sweep::{logit_diff, naive_gpt2_sweep, prompt, seeded};

type B = Flex;

/// A random model of `config`, the same in every run.
fn seeded_model(config: Gpt2Config) -> Gpt2LMHeadModel<B> {
    seeded::<B, _>(2026, |device| config.init(device))
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
    let model = seeded_model(config);
    let metric = LogitDiff { answer: 5, distractor: 7 };
    let fast = model.residual_patching_sweep(clean, corrupted, metric).unwrap();
    let naive = naive_gpt2_sweep(&model, clean, corrupted, metric);
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
    let plain = |tokens: &[u32]| {
        let (ids, mask) = prompt::<B>(tokens);
        logit_diff(model.forward(ids, mask), metric)
    };
    assert!((fast.clean - plain(clean)).abs() <= 1e-4);
    assert!((fast.corrupted - plain(corrupted)).abs() <= 1e-4);
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
    let model = seeded_model(Gpt2Config {
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
