//! The fast Llama residual patching sweep equals the naive one — one trace per (layer, position),
//! as nnsight users write it — on a random grouped-query Llama with rotary scaling, for prompts
//! that differ at one position and everywhere, with a sliding window shorter than the prompt, and
//! with a tied head; and the CPU kernels' sweep equals the one on burn's tensor operations.

use burn::backend::Flex;
use burn::prelude::*;
use nnsight::prelude::*;
use nnsight_models::llama::{LlamaConfig, LlamaForCausalLM};
use nnsight_models::patching::LogitDiff;

type B = Flex;

fn ids(tokens: &[u32]) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let device = Default::default();
    let data: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
    let ids = Tensor::from_data(TensorData::new(data, [1, tokens.len()]), &device);
    (ids, Tensor::ones([1, tokens.len()], &device))
}

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

/// The metric of one forward pass: logit(answer) − logit(distractor) at the last position.
fn score(logits: Tensor<B, 3>, metric: LogitDiff) -> f32 {
    let last = logits.dims()[1] - 1;
    let at =
        |id: u32| logits.clone().slice([0..1, last..last + 1, id as usize..id as usize + 1]).into_scalar();
    at(metric.answer) - at(metric.distractor)
}

/// The naive sweep: a trace for the clean layer outputs, then one trace per entry.
fn naive_sweep(
    model: &LlamaForCausalLM<B>,
    clean: &[u32],
    corrupted: &[u32],
    metric: LogitDiff,
) -> Vec<Vec<f32>> {
    let clean_hidden: Vec<Tensor<B, 3>> = model
        .trace(ids(clean))
        .run(async |m| {
            let mut hidden = Vec::new();
            for layer in &m.model.layers {
                hidden.push(layer.output().await?);
            }
            Ok(hidden)
        })
        .unwrap();
    (0..clean_hidden.len())
        .map(|layer| {
            (0..clean.len())
                .map(|p| {
                    let source = clean_hidden[layer].clone().slice([0..1, p..p + 1]);
                    model
                        .trace(ids(corrupted))
                        .run(async |m| {
                            let patch = |h: Tensor<B, 3>| h.slice_assign([0..1, p..p + 1], source);
                            m.model.layers[layer].output().edit(patch).await?;
                            Ok(score(m.output().await?, metric))
                        })
                        .unwrap()
                })
                .collect()
        })
        .collect()
}

fn assert_sweeps_agree(model: &LlamaForCausalLM<B>, clean: &[u32], corrupted: &[u32]) {
    let metric = LogitDiff { answer: 5, distractor: 7 };
    let fast = model.residual_patching_sweep(clean, corrupted, metric).unwrap();
    let naive = naive_sweep(model, clean, corrupted, metric);
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
        let (ids, mask) = ids(tokens);
        score(model.forward(ids, mask), metric)
    };
    assert!((fast.clean - plain(clean)).abs() <= 1e-4);
    assert!((fast.corrupted - plain(corrupted)).abs() <= 1e-4);
}

const CLEAN: [u32; 8] = [3, 14, 15, 9, 26, 53, 58, 9];

#[test]
fn prompts_differing_at_one_position() {
    let model = config("").init::<B>(&Default::default());
    assert_sweeps_agree(&model, &CLEAN, &[3, 14, 15, 9, 11, 53, 58, 9]);
}

#[test]
fn prompts_differing_everywhere() {
    let model = config("").init::<B>(&Default::default());
    assert_sweeps_agree(&model, &CLEAN, &[27, 18, 28, 18, 28, 45, 9, 45]);
}

#[test]
fn sliding_window_and_tied_head() {
    let model =
        config(r#", "sliding_window": 3, "tie_word_embeddings": true"#).init::<B>(&Default::default());
    assert_sweeps_agree(&model, &CLEAN, &[3, 14, 40, 9, 26, 1, 58, 9]);
}

/// On backends other than `Flex` the sweep runs on burn's tensor operations (attention, rotary
/// embedding, matrix products) instead of the CPU kernels: the same matrix.
#[test]
fn another_backend_gives_the_same_sweep() {
    use burn::backend::Autodiff;
    use burn::module::AutodiffModule;

    let generic = config(r#", "sliding_window": 3"#).init::<Autodiff<B>>(&Default::default());
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
    let model = config("").init::<B>(&Default::default());
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
