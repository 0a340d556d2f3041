//! The fast Llama residual patching sweep equals the naive one — one trace per (layer, position),
//! as nnsight users write it — on a random grouped-query Llama with rotary scaling, for prompts
//! that differ at one position and everywhere, with a sliding window shorter than the prompt, and
//! with a tied head; and the CPU kernels' sweep equals the one on burn's tensor operations.

use burn::backend::Flex;
use nnsight_models::llama::{LlamaConfig, LlamaForCausalLM};
use nnsight_models::patching::LogitDiff;
use nnsight_support::sweep::{logit_diff, naive_llama_sweep, prompt, seeded};

type B = Flex;

/// A 4-layer model: 4 query heads sharing 2 key/value heads, Llama 3 rotary scaling, weights
/// large enough (std 0.3) that patches move the metric visibly.
fn config(extra: &str) -> LlamaConfig {
    LlamaConfig::from_json(&format!(
        r#"{{"vocab_size": 61, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 4,
            "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64,
            "rms_norm_eps": 1e-5, "initializer_range": 0.3,
            "rope_scaling": {{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0, "original_max_position_embeddings": 16}}
            {extra}}}"#
    ))
    .unwrap()
}

/// A random model of `config(extra)`, the same in every run.
fn model(extra: &str) -> LlamaForCausalLM<B> {
    seeded::<B, _>(2027, |device| config(extra).init(device))
}

fn assert_sweeps_agree(model: &LlamaForCausalLM<B>, clean: &[u32], corrupted: &[u32]) {
    let metric = LogitDiff { answer: 5, distractor: 7 };
    let fast = model.residual_patching_sweep(clean, corrupted, metric).unwrap();
    let naive = naive_llama_sweep(model, clean, corrupted, metric);
    assert_eq!((fast.layers, fast.positions), (4, clean.len()));
    let mut distinct = 0;
    for (layer, row) in naive.iter().enumerate() {
        for (p, &expected) in row.iter().enumerate() {
            let got = fast.get(layer, p);
            assert!((got - expected).abs() <= 1e-4, "({layer}, {p}): fast {got}, naive {expected}");
            distinct += usize::from((expected - fast.corrupted).abs() > 1e-2);
        }
    }
    assert!(distinct > clean.len(), "patches must move the metric, or the comparison proves little");
    let plain = |tokens: &[u32]| {
        let (ids, mask) = prompt::<B>(tokens);
        logit_diff(model.forward(ids, mask), metric)
    };
    assert!((fast.clean - plain(clean)).abs() <= 1e-4);
    assert!((fast.corrupted - plain(corrupted)).abs() <= 1e-4);
}

const CLEAN: [u32; 8] = [3, 14, 15, 9, 26, 53, 58, 9];

#[test]
fn prompts_differing_at_one_position() {
    let model = model("");
    assert_sweeps_agree(&model, &CLEAN, &[3, 14, 15, 9, 11, 53, 58, 9]);
}

#[test]
fn prompts_differing_everywhere() {
    let model = model("");
    assert_sweeps_agree(&model, &CLEAN, &[27, 18, 28, 18, 28, 45, 9, 45]);
}

#[test]
fn sliding_window_and_tied_head() {
    let model = model(r#", "sliding_window": 3, "tie_word_embeddings": true"#);
    assert_sweeps_agree(&model, &CLEAN, &[3, 14, 40, 9, 26, 1, 58, 9]);
}

/// On backends other than `Flex` the sweep runs on burn's tensor operations (attention, rotary
/// embedding, matrix products) instead of the CPU kernels: the same matrix.
#[test]
fn another_backend_gives_the_same_sweep() {
    use burn::backend::Autodiff;
    use burn::module::AutodiffModule;

    let generic =
        seeded::<B, _>(2027, |device| config(r#", "sliding_window": 3"#).init::<Autodiff<B>>(device));
    let flex: LlamaForCausalLM<B> = generic.valid();
    let metric = LogitDiff { answer: 5, distractor: 7 };
    let corrupted = [27, 18, 28, 18, 28, 45, 9, 45];
    let fast = flex.residual_patching_sweep(&CLEAN, &corrupted, metric).unwrap();
    let other = generic.residual_patching_sweep(&CLEAN, &corrupted, metric).unwrap();
    for (i, (a, b)) in fast.values().iter().zip(other.values()).enumerate() {
        assert!((a - b).abs() <= 1e-4, "entry {i}: {a} vs {b}");
    }
}

#[test]
fn bad_prompts_are_errors() {
    let model = model("");
    let metric = LogitDiff { answer: 1, distractor: 2 };
    let cases: [(&[u32], &[u32], LogitDiff, &str); 5] = [
        (&[1, 2], &[1], metric, "same number of tokens"),
        (&[], &[], metric, "empty"),
        (&[1, 2], &[1, 61], metric, "token id 61"),
        (&[1, 2], &[1, 2], LogitDiff { answer: 70, distractor: 2 }, "token id 70"),
        (&[1; 65], &[1; 65], metric, "context is 64"),
    ];
    for (clean, corrupted, metric, message) in cases {
        let error = model.residual_patching_sweep(clean, corrupted, metric).unwrap_err();
        assert!(
            matches!(error, nnsight::Error::Input { .. }) && error.to_string().contains(message),
            "{error}"
        );
    }
    // The model stays usable.
    assert_sweeps_agree(&model, &CLEAN, &[3, 14, 15, 9, 11, 53, 58, 9]);
}
