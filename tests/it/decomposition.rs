//! The residual stream decomposed (`nnsight_toolkit::decomposition`) and direct logit
//! attribution on every family: the components sum to the final residual; by head, the heads
//! and the projection's bias sum to the attention's output; the attributions sum to the token's
//! logit less the biases no component writes, and one attribution equals TransformerLens'
//! definition computed on the CPU by hand (the final LayerNorm's scale from the final residual,
//! the centred component divided by it, times γ, dotted with the unembedding row).

use crate::support;

use burn::prelude::*;
use nnsight::Error;
use nnsight_models::LanguageModel;
use nnsight_models::vocabulary::Standardized;
use nnsight_toolkit::decomposition::ResidualStack;
use support::B;
use support::causal_lms::{tiny_gemma3, tiny_mamba};
use support::fixture::{assert_close, tiny_gpt2};
use support::llama_fixture::tiny_llama;

const PROMPT: &str = "The Eiffel Tower is in the city of";

fn last_logit<M: Standardized<B>>(lm: &LanguageModel<B, M>, token: u32) -> f32 {
    let logits = lm.forward(PROMPT).unwrap();
    let [_, t, v] = logits.dims();
    let row: Vec<f32> = logits.narrow(1, t - 1, 1).reshape([v]).into_data().to_vec().unwrap();
    row[token as usize]
}

fn check<M: Standardized<B>>(lm: &LanguageModel<B, M>, name: &str, by_head: bool, bias_logit: f32) {
    let stack = if by_head {
        ResidualStack::heads(lm, PROMPT).unwrap()
    } else {
        ResidualStack::layers(lm, PROMPT).unwrap()
    };
    assert_eq!(stack.labels.len(), stack.components.len());
    assert_close(
        &format!("{name}: the components sum to the final residual"),
        &stack.sum(),
        &stack.final_residual,
        1e-4,
    );
    let token = 17;
    let attrs = stack.logit_attrs(lm, token, None, -1).unwrap();
    let total: f32 = attrs.iter().sum();
    let logit = last_logit(lm, token);
    assert!(
        (total + bias_logit - logit).abs() < 1e-3,
        "{name}: Σ attributions {total} + biases {bias_logit} vs logit {logit}"
    );
    // A logit difference is the difference of the attributions.
    let other = stack.logit_attrs(lm, 23, None, -1).unwrap();
    let diff = stack.logit_attrs(lm, token, Some(23), -1).unwrap();
    for ((d, a), b) in diff.iter().zip(&attrs).zip(&other) {
        assert!((d - (a - b)).abs() < 1e-4, "{name}: {d} vs {a} - {b}");
    }
}

#[test]
fn components_sum_to_the_residual_and_attributions_to_the_logit_on_every_family() {
    let gpt2 = tiny_gpt2();
    // GPT-2's logit also holds β·W_U (the final LayerNorm's bias), which no component writes.
    let beta = gpt2.model().transformer.ln_f.beta.as_ref().unwrap().val();
    let row = gpt2.model().lm_head.weight.val().narrow(0, 17, 1).reshape([-1]);
    let bias_logit: f32 = (beta * row).sum().into_scalar();
    check(&gpt2, "GPT-2", false, bias_logit);
    check(&gpt2, "GPT-2 by head", true, bias_logit);
    check(&tiny_llama(), "Llama", false, 0.0);
    check(&tiny_llama(), "Llama by head", true, 0.0);
    check(&tiny_gemma3(), "Gemma 3", false, 0.0);
    check(&tiny_mamba(), "Mamba", false, 0.0);
    let labels = ResidualStack::layers(&gpt2, PROMPT).unwrap().labels;
    assert_eq!(labels, ["embed", "pos_embed", "0_attn_out", "0_mlp_out", "1_attn_out", "1_mlp_out"]);
    let labels = ResidualStack::heads(&gpt2, PROMPT).unwrap().labels;
    assert_eq!(&labels[2..7], ["L0H0", "L0H1", "L0H2", "L0H3", "0_attn_bias"]);
    assert_eq!(ResidualStack::layers(&tiny_mamba(), PROMPT).unwrap().labels, ["embed", "0_layer", "1_layer"]);
}

#[test]
fn an_attribution_is_transformer_lens_definition_by_hand() {
    let lm = tiny_gpt2();
    let stack = ResidualStack::layers(&lm, PROMPT).unwrap();
    let vec = |t: Tensor<B, 3>| -> Vec<f32> {
        let [_, n, _] = t.dims();
        t.narrow(1, n - 1, 1).reshape([-1]).into_data().to_vec().unwrap()
    };
    let final_residual = vec(stack.final_residual.clone());
    let hidden = final_residual.len();
    let mean = |x: &[f32]| x.iter().sum::<f32>() / hidden as f32;
    let mu = mean(&final_residual);
    let variance = final_residual.iter().map(|x| (x - mu).powi(2)).sum::<f32>() / hidden as f32;
    let scale = (variance + 1e-5).sqrt(); // ln_final.hook_scale (layer_norm_epsilon 1e-5)
    let gamma: Vec<f32> = lm.model().transformer.ln_f.gamma.val().into_data().to_vec().unwrap();
    let w_u: Vec<f32> =
        lm.model().lm_head.weight.val().narrow(0, 17, 1).reshape([-1]).into_data().to_vec().unwrap();
    let attrs = stack.logit_attrs(&lm, 17, None, -1).unwrap();
    for (c, component) in stack.components.iter().enumerate() {
        let x = vec(component.clone());
        let m = mean(&x);
        let by_hand: f32 = (0..hidden).map(|j| (x[j] - m) / scale * gamma[j] * w_u[j]).sum();
        assert!((attrs[c] - by_hand).abs() < 1e-4, "{}: {} vs {by_hand}", stack.labels[c], attrs[c]);
    }
}

#[test]
fn decomposition_misuse_is_a_typed_error() {
    let lm = tiny_gpt2();
    let stack = ResidualStack::layers(&lm, PROMPT).unwrap();
    let error = stack.logit_attrs(&lm, 512, None, -1).unwrap_err();
    assert!(
        matches!(error, Error::Input { .. }) && error.to_string().contains("outside the vocabulary"),
        "{error}"
    );
    assert!(stack.logit_attrs(&lm, 1, None, 40).unwrap_err().to_string().contains("position 40"));
    for error in [
        ResidualStack::heads(&tiny_gemma3(), PROMPT).unwrap_err(),
        ResidualStack::heads(&tiny_mamba(), PROMPT).unwrap_err(),
    ] {
        assert!(
            matches!(error, Error::Input { .. }) && error.to_string().contains("not a sum over its heads"),
            "{error}"
        );
    }
}
