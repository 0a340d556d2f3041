//! One vocabulary across architectures: the same accessors and TransformerLens hook names reach
//! the residual stream, attention and MLP of GPT-2, Llama, Gemma 3 and Mamba, checked against each
//! family's own paths and against the residual-stream arithmetic they must satisfy; the logit lens,
//! written once, runs on every causal-LM fixture and matches transformers' layers decoded by hand.

use crate::support;

use burn::prelude::*;
use nnsight::{DynEnvoy, Error, Result};
use nnsight_models::LanguageModel;
use nnsight_models::vocabulary::{Standardized, logit_lens};
use support::B;
use support::causal_lms::{Decoder, tiny_gemma3, tiny_mamba};
use support::fixture::{Expected, assert_close, tiny_gpt2};
use support::llama_fixture::tiny_llama;

const PROMPT: &str = "The Eiffel Tower is in the city of";

/// Reads `names` (TransformerLens hook names or module paths) in one trace, in that order.
fn read_aliases<M: Standardized<B>>(lm: &LanguageModel<B, M>, names: &[String]) -> Result<Vec<Tensor<B, 3>>> {
    let words = lm.model().vocabulary();
    let body = async |root: DynEnvoy<'_>| -> Result<Vec<Tensor<B, 3>>> {
        let mut values = Vec::new();
        for name in names {
            values.push(words.alias(name)?.read::<Tensor<B, 3>>(&root).await?);
        }
        Ok(values)
    };
    let (mut results,) = lm.tracer().invoke_inputs_dyn([(Some(PROMPT.into()), body)]).run()?;
    Ok(results.pop().unwrap())
}

/// The residual stream's bookkeeping through the hook names, on a family with attention and MLP.
fn check_transformer_aliases<M: Standardized<B>>(lm: &LanguageModel<B, M>) {
    let names: Vec<String> =
        ["hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out", "hook_resid_post"]
            .iter()
            .map(|hook| format!("blocks.1.{hook}"))
            .chain(["blocks.0.hook_resid_post".to_owned()])
            .collect();
    // blocks.0's output is read last but runs first: out of order is an error, in order is fine.
    assert!(matches!(read_aliases(lm, &names), Err(Error::OutOfOrder { .. })));
    let mut ordered = names.clone();
    ordered.rotate_right(1);
    let v = read_aliases(lm, &ordered).unwrap();
    let (post0, pre, attn, mid, mlp, post) = (&v[0], &v[1], &v[2], &v[3], &v[4], &v[5]);
    support::assert_identical(pre, post0);
    assert_close("resid_mid = resid_pre + attn_out", mid, &(pre.clone() + attn.clone()), 1e-6);
    assert_close("resid_post = resid_mid + mlp_out", post, &(mid.clone() + mlp.clone()), 1e-6);

    let words = lm.model().vocabulary();
    let pattern_at = words.alias("blocks.0.attn.hook_pattern").unwrap();
    let body = async |root: DynEnvoy<'_>| pattern_at.read::<Tensor<B, 4>>(&root).await;
    let (mut patterns,) = lm.tracer().invoke_inputs_dyn([(Some(PROMPT.into()), body)]).run().unwrap();
    let pattern = patterns.pop().unwrap();
    let [_, heads, queries, keys] = pattern.dims();
    assert_eq!((queries, keys), (8, 8));
    assert_close(
        "pattern rows sum to 1",
        &pattern.sum_dim(3),
        &Tensor::ones([1, heads, 8, 1], &Default::default()),
        1e-5,
    );
}

#[test]
fn hook_names_map_to_each_familys_modules() {
    let words = tiny_llama().model().vocabulary();
    for (name, path) in [
        ("blocks.1.hook_resid_post", "model.layers.1"),
        ("blocks.0.hook_attn_out", "model.layers.0.self_attn"),
        ("blocks.0.hook_mlp_out", "model.layers.0.mlp"),
        ("blocks.1.attn.hook_pattern", "model.layers.1.self_attn.attn_probs"),
        ("blocks.1.hook_resid_mid", "model.layers.1.post_attention_layernorm"),
        ("ln_final.hook_normalized", "model.norm"),
        ("hook_embed", "model.embed_tokens"),
        ("model.layers.0.mlp.act_fn", "model.layers.0.mlp.act_fn"),
    ] {
        assert_eq!(words.alias(name).unwrap().path, path, "{name}");
    }
    let gpt2 = tiny_gpt2().model().vocabulary();
    assert_eq!(gpt2.alias("blocks.1.attn.hook_pattern").unwrap().path, "transformer.h.1.attn.attn_dropout");
    let mamba = tiny_mamba().model().vocabulary();
    assert_eq!(mamba.alias("blocks.1.hook_resid_pre").unwrap().path, "backbone.layers.1");
    for (words, name, part) in [
        (&mamba, "blocks.0.hook_attn_out", "Mamba layer has no attention"),
        (&mamba, "blocks.0.attn.hook_pattern", "no attention probabilities"),
        (&words, "blocks.2.hook_resid_post", "layer 2 of a 2-layer Llama"),
        (&words, "blocks.x.hook_resid_post", "not a layer index"),
        (&words, "blocks.0.hook_q", "not a TransformerLens hook"),
    ] {
        let error = words.alias(name).unwrap_err();
        assert!(matches!(error, Error::Input { .. }) && error.to_string().contains(part), "{name}: {error}");
    }
}

#[test]
fn the_hook_names_keep_the_residual_streams_books_on_gpt2_llama_and_gemma3() {
    check_transformer_aliases(&tiny_gpt2());
    check_transformer_aliases(&tiny_llama());
    // Gemma normalises what attention and the MLP add: the hook names point at those norms.
    check_transformer_aliases(&tiny_gemma3());
}

#[test]
fn mamba_has_the_residual_stream_accessors() {
    let lm = tiny_mamba();
    let names: Vec<String> =
        ["blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.1.hook_resid_pre"]
            .map(str::to_owned)
            .to_vec();
    let v = read_aliases(&lm, &names).unwrap();
    support::assert_identical(&v[1], &v[2]);
    let embedded = read_aliases(&lm, &["hook_embed".to_owned()]).unwrap();
    support::assert_identical(&embedded[0], &v[0]);
}

/// The logit lens on `lm`: its last layer is the model's logits, bit for bit.
fn check_lens<M: Standardized<B>>(lm: &LanguageModel<B, M>) -> Vec<Tensor<B, 3>> {
    let lens = logit_lens(lm, PROMPT).unwrap();
    assert_eq!(lens.len(), lm.model().vocabulary().num_layers);
    support::assert_identical(lens.last().unwrap(), &lm.forward(PROMPT).unwrap());
    lens
}

#[test]
fn the_logit_lens_runs_on_every_causal_lm_and_matches_transformers_layers_decoded_by_hand() {
    // transformers' layer outputs (the fixtures), decoded through each model's own final norm and
    // head by hand, against the lens.
    for (lens, model_decode, fixture, hidden) in [
        (check_lens(&tiny_gpt2()), Decoder::Gpt2, "tiny-gpt2", "single.hidden"),
        (check_lens(&tiny_llama()), Decoder::Llama, "tiny-llama", "single.hidden"),
        (check_lens(&tiny_mamba()), Decoder::Mamba, "tiny-mamba", "single.hidden"),
        (check_lens(&tiny_gemma3()), Decoder::Gemma3, "tiny-gemma3", "single.hidden"),
    ] {
        let expected = Expected::load_from(fixture);
        for (i, layer) in lens.iter().enumerate() {
            let by_hand = model_decode.decode(expected.tensor(&format!("{hidden}.{i}")));
            assert_close(&format!("{fixture} layer {i}"), layer, &by_hand, 1e-4);
        }
    }
}

#[test]
fn hook_names_look_values_up_in_a_cache() {
    let lm = tiny_llama();
    let words = lm.model().vocabulary();
    let names = [
        "blocks.1.hook_resid_pre",
        "blocks.1.hook_resid_mid",
        "blocks.1.hook_mlp_out",
        "blocks.1.hook_resid_post",
    ];
    let at: Vec<_> = names.iter().map(|n| words.alias(n).unwrap()).collect();
    let paths: Vec<String> = at.iter().map(|l| l.path.clone()).collect();
    let (cache, direct) = lm
        .trace(PROMPT)
        .run(async |m| {
            let cache = m.cache(nnsight::CacheOptions::only(paths).with_inputs())?;
            let layer = &m.model.layers[1];
            let pre: Tensor<B, 3> = layer.input().await?;
            let mid = layer.post_attention_layernorm.input::<Tensor<B, 3>>().await?;
            let mlp = layer.mlp.output().await?;
            Ok((cache, vec![pre, mid, mlp, layer.output().await?]))
        })
        .unwrap();
    for (location, value) in at.iter().zip(&direct) {
        support::assert_identical(&location.cached::<Tensor<B, 3>>(&cache).unwrap(), value);
    }
    let missing = words.alias("blocks.0.hook_resid_post").unwrap().cached::<Tensor<B, 3>>(&cache);
    assert!(matches!(missing, Err(Error::NotCached { .. })), "{missing:?}");
}

#[test]
fn the_heads_values_are_what_the_output_projection_makes_the_attention_output_of() {
    // `attn.hook_z` (the heads merged) through the output projection is the attention's output.
    let lm = tiny_llama();
    let v =
        read_aliases(&lm, &["blocks.1.attn.hook_z".to_owned(), "blocks.1.hook_attn_out".to_owned()]).unwrap();
    let projected = lm.model().model.layers[1].self_attn.o_proj.forward(v[0].clone());
    assert_close("o_proj(hook_z) = hook_attn_out", &projected, &v[1], 1e-6);
    let words = lm.model().vocabulary();
    assert_eq!(words.head_values(1).unwrap().path, "model.layers.1.self_attn.o_proj");
    assert_eq!(v[0].dims()[2], words.num_heads * lm.model().model.layers[1].self_attn.head_dim);
    let gpt2 = tiny_gpt2();
    assert_eq!(
        gpt2.model().vocabulary().alias("blocks.0.attn.hook_z").unwrap().path,
        "transformer.h.0.attn.c_proj"
    );
    assert_eq!(gpt2.model().vocabulary().num_heads, 4);
    let error = tiny_mamba().model().vocabulary().head_values(0).unwrap_err();
    assert!(error.to_string().contains("a Mamba layer has no attention heads"), "{error}");
}
