//! The naive residual patching sweep — one trace for the clean layer outputs, then one trace per
//! (layer, position), as nnsight users write it — that the tests and benches compare the fast
//! sweeps (`residual_patching_sweep`) against, and what it needs: prompt tensors, the metric, and
//! random models drawn the same way in every run.

use std::sync::{Mutex, PoisonError};

use burn::prelude::*;
use nnsight::prelude::*;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use nnsight_models::llama::LlamaForCausalLM;
use nnsight_models::patching::LogitDiff;

/// A model drawn by `init` from burn's generator seeded with `seed`, one draw at a time.
///
/// burn's CPU backend draws from one process-wide generator, which tests running in parallel
/// would otherwise share, so that a draw (and a check on it) would change from run to run.
pub fn seeded<B: Backend, T>(seed: u64, init: impl FnOnce(&B::Device) -> T) -> T {
    static DRAWS: Mutex<()> = Mutex::new(());
    let _one_at_a_time = DRAWS.lock().unwrap_or_else(PoisonError::into_inner);
    let device = Default::default();
    B::seed(&device, seed);
    init(&device)
}

/// One prompt of `tokens` as the `(input_ids, attention_mask)` pair the models take.
pub fn prompt<B: Backend>(tokens: &[u32]) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let device = Default::default();
    let data: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
    let ids = Tensor::from_data(TensorData::new(data, [1, tokens.len()]), &device);
    (ids, Tensor::ones([1, tokens.len()], &device))
}

/// `metric` on one forward pass's logits `[1, seq, vocab]`: logit(answer) − logit(distractor) at
/// the last position.
pub fn logit_diff<B: Backend>(logits: Tensor<B, 3>, metric: LogitDiff) -> f32 {
    let last = logits.dims()[1] - 1;
    let at = |id: u32| {
        let id = id as usize;
        logits.clone().slice([0..1, last..last + 1, id..id + 1]).into_scalar().elem::<f32>()
    };
    at(metric.answer) - at(metric.distractor)
}

/// The naive sweep on GPT-2: `[layer][position]` → the metric with the corrupted prompt's block
/// output at (layer, position) replaced by the clean prompt's.
pub fn naive_gpt2_sweep<B: Backend>(
    model: &Gpt2LMHeadModel<B>,
    clean: &[u32],
    corrupted: &[u32],
    metric: LogitDiff,
) -> Vec<Vec<f32>> {
    let clean_hidden: Vec<Tensor<B, 3>> = model
        .trace(prompt::<B>(clean))
        .run(async |m| {
            let mut hidden = Vec::new();
            for block in &m.transformer.h {
                hidden.push(block.output().await?);
            }
            Ok(hidden)
        })
        .expect("the clean trace runs");
    grid(&clean_hidden, clean.len(), |layer, patch| {
        model
            .trace(prompt::<B>(corrupted))
            .run(async |m| {
                m.transformer.h[layer].output().edit(patch).await?;
                Ok(logit_diff(m.output().await?, metric))
            })
            .expect("a patched trace runs")
    })
}

/// The naive sweep on Llama: `[layer][position]` → the metric with the corrupted prompt's
/// decoder-layer output at (layer, position) replaced by the clean prompt's.
pub fn naive_llama_sweep<B: Backend>(
    model: &LlamaForCausalLM<B>,
    clean: &[u32],
    corrupted: &[u32],
    metric: LogitDiff,
) -> Vec<Vec<f32>> {
    let clean_hidden: Vec<Tensor<B, 3>> = model
        .trace(prompt::<B>(clean))
        .run(async |m| {
            let mut hidden = Vec::new();
            for layer in &m.model.layers {
                hidden.push(layer.output().await?);
            }
            Ok(hidden)
        })
        .expect("the clean trace runs");
    grid(&clean_hidden, clean.len(), |layer, patch| {
        model
            .trace(prompt::<B>(corrupted))
            .run(async |m| {
                m.model.layers[layer].output().edit(patch).await?;
                Ok(logit_diff(m.output().await?, metric))
            })
            .expect("a patched trace runs")
    })
}

/// `run(layer, patch)` for every (layer, position), where `patch` writes the clean value of that
/// position into a `[1, seq, d]` layer output.
fn grid<B: Backend>(
    clean_hidden: &[Tensor<B, 3>],
    positions: usize,
    mut run: impl FnMut(usize, Box<dyn FnOnce(Tensor<B, 3>) -> Tensor<B, 3>>) -> f32,
) -> Vec<Vec<f32>> {
    (0..clean_hidden.len())
        .map(|layer| {
            (0..positions)
                .map(|p| {
                    let source = clean_hidden[layer].clone().slice([0..1, p..p + 1]);
                    run(layer, Box::new(move |h: Tensor<B, 3>| h.slice_assign([0..1, p..p + 1], source)))
                })
                .collect()
        })
        .collect()
}
