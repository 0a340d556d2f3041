//! Sparse autoencoders in SAELens' format (`nnsight_toolkit::sae`): the tiny SAEs of
//! `tools/fixtures/make_sae_fixture.py` (standard, top-k with decoder-norm rescaling and layer
//! norm, JumpReLU from a SAELens 5 config with constant-norm rescaling) encode and reconstruct as
//! SAELens' formulas computed in numpy; in the tiny GPT-2 their features at the TransformerLens
//! hook equal the SAE applied to the activations read by hand, and an edited forward pass equals
//! the same splice done by hand (an identity edit leaves it bit-identical); bad files and misuse
//! are typed errors.

use crate::support;

use std::fs;
use std::path::Path;

use burn::prelude::*;
use nnsight::Error;
use nnsight_models::CausalLm;
use nnsight_toolkit::sae::{Architecture, Normalization, Sae, Splice};
use support::B;
use support::causal_lms::tiny_mamba;
use support::fixture::{Expected, assert_close, fixture_dir, tiny_gpt2};

const PROMPT: &str = "The Eiffel Tower is in the city of";

fn load(name: &str) -> Sae<B> {
    Sae::load(fixture_dir("tiny-sae").join(name), &Default::default()).unwrap()
}

#[test]
fn encoding_and_reconstruction_equal_sae_lens_formulas() {
    let expected = Expected::load_from("tiny-sae");
    for name in ["standard", "topk", "jumprelu-v5"] {
        let sae = load(name);
        let x: Tensor<B, 3> = expected.tensor(&format!("{name}.x"));
        let features = sae.encode(x.clone()).unwrap();
        assert_close(
            &format!("{name} features"),
            &features.values,
            &expected.tensor(&format!("{name}.features")),
            1e-4,
        );
        let reconstruction = sae.decode(&features).unwrap();
        assert_close(
            &format!("{name} reconstruction"),
            &reconstruction,
            &expected.tensor(&format!("{name}.reconstruction")),
            1e-4,
        );
        support::assert_identical(&sae.reconstruct(x).unwrap(), &reconstruction);
    }
    let (standard, topk, jumprelu) = (load("standard"), load("topk"), load("jumprelu-v5"));
    assert_eq!(standard.config().architecture, Architecture::Standard);
    assert_eq!(topk.config().architecture, Architecture::TopK { k: 8, rescale: true });
    assert_eq!(topk.config().normalization, Normalization::LayerNorm);
    assert_eq!(jumprelu.config().architecture, Architecture::JumpRelu);
    assert_eq!(jumprelu.config().hook_name.as_deref(), Some("blocks.1.hook_mlp_out"), "a SAELens 5 config");
    // Top-k keeps at most k features per token.
    let x: Tensor<B, 3> = expected.tensor("topk.x");
    let active = topk.encode(x).unwrap().values.greater_elem(0.0).int().sum_dim(2);
    assert!(active.into_data().iter::<i64>().all(|n| n <= 8));
}

#[test]
fn features_at_the_hook_equal_the_sae_on_activations_read_by_hand() {
    let lm = tiny_gpt2();
    for (name, read) in [("standard", "h.1 input"), ("topk", "h.0 output"), ("jumprelu-v5", "h.1.mlp output")]
    {
        let sae = load(name);
        let by_hand: Tensor<B, 3> = lm
            .trace(PROMPT)
            .run(async |m| match read {
                "h.1 input" => m.transformer.h[1].input().await,
                "h.0 output" => m.transformer.h[0].output().await,
                _ => m.transformer.h[1].mlp.output().await,
            })
            .unwrap();
        let features = sae.features(&lm, PROMPT).unwrap();
        support::assert_identical(&features, &sae.encode(by_hand).unwrap().values);
    }
}

#[test]
fn an_edited_forward_pass_equals_the_splice_done_by_hand() {
    let lm = tiny_gpt2();
    let sae = load("standard");
    let plain = lm.forward(PROMPT).unwrap();
    // An edit that changes nothing, keeping the error term: the forward pass as it was.
    let (unchanged, features) = sae.edited(&lm, PROMPT, Splice::KeepError, |f| f).unwrap();
    support::assert_identical(&unchanged, &plain);
    // Switch off the strongest feature at the last token.
    let [_, tokens, d_sae] = features.dims();
    let last = features.clone().narrow(1, tokens - 1, 1).reshape([d_sae]);
    let strongest = last.argmax(0).into_scalar() as usize;
    let off = move |f: Tensor<B, 3>| {
        let zero = Tensor::zeros([1, 1, 1], &Default::default());
        f.slice_assign([0..1, tokens - 1..tokens, strongest..strongest + 1], zero)
    };
    for splice in [Splice::KeepError, Splice::Reconstruction] {
        let (logits, _) = sae.edited(&lm, PROMPT, splice, off).unwrap();
        let by_hand = lm
            .trace(PROMPT)
            .run(async |m| {
                m.transformer.h[1]
                    .input()
                    .try_edit(|x: Tensor<B, 3>| {
                        let f = sae.encode(x.clone())?;
                        let edited = f.with_values(off(f.values.clone()))?;
                        Ok(match splice {
                            Splice::KeepError => x + (sae.decode(&edited)? - sae.decode(&f)?),
                            Splice::Reconstruction => sae.decode(&edited)?,
                        })
                    })
                    .await?;
                m.output().await
            })
            .unwrap();
        support::assert_identical(&logits, &by_hand);
        support::assert_differs(&logits, &plain);
    }
}

/// A copy of SAE `name`'s directory.
fn copy_of(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for file in ["cfg.json", "sae_weights.safetensors"] {
        fs::copy(fixture_dir("tiny-sae").join(name).join(file), tmp.path().join(file)).unwrap();
    }
    tmp
}

/// Rewrites `sae_weights.safetensors` in `dir` without `drop` and with `reshape` given a shape.
fn rewrite(dir: &Path, drop: &str, reshape: (&str, Vec<usize>)) {
    support::checkpoint::rewrite_file(&dir.join("sae_weights.safetensors"), drop, reshape);
}

#[test]
fn bad_sae_files_and_misuse_are_typed_errors() {
    let load_dir = |dir: &Path| Sae::<B>::load(dir, &Default::default()).unwrap_err();
    // A missing file, a truncated weights file, a missing and a misshapen tensor, a config
    // that cannot run.
    let dir = copy_of("standard");
    fs::remove_file(dir.path().join("cfg.json")).unwrap();
    let error = load_dir(dir.path());
    assert!(matches!(error, Error::Load { .. }) && error.to_string().contains("cfg.json"), "{error}");
    let dir = copy_of("standard");
    let bytes = fs::read(dir.path().join("sae_weights.safetensors")).unwrap();
    fs::write(dir.path().join("sae_weights.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(load_dir(dir.path()), Error::Load { .. }));
    let dir = copy_of("jumprelu-v5");
    rewrite(dir.path(), "threshold", ("", vec![]));
    let error = load_dir(dir.path());
    assert!(matches!(error, Error::MissingWeight { ref name, .. } if name == "threshold"), "{error}");
    let dir = copy_of("standard");
    rewrite(dir.path(), "", ("b_dec", vec![63]));
    let error = load_dir(dir.path());
    assert!(matches!(error, Error::BadWeight { ref name, .. } if name == "b_dec"), "{error}");
    let dir = copy_of("standard");
    let cfg = fs::read_to_string(dir.path().join("cfg.json")).unwrap();
    fs::write(dir.path().join("cfg.json"), cfg.replace("\"standard\"", "\"gated\"")).unwrap();
    assert!(load_dir(dir.path()).to_string().contains("`gated` is not supported"));

    // Misuse: activations of another width, a hook the model has no place for, no hook, an
    // edit that changes the features' shape; the model stays usable.
    let lm = tiny_gpt2();
    let sae = load("standard");
    let error = sae.encode(Tensor::zeros([1, 3, 65], &Default::default())).unwrap_err();
    assert!(error.to_string().contains("64 wide; these are [1, 3, 65]"), "{error}");
    let error = sae.clone().at_hook("blocks.1.hook_nothing").features(&lm, PROMPT).unwrap_err();
    assert!(matches!(error, Error::Input { .. }), "{error}");
    let error = sae.clone().at_hook("blocks.0.hook_attn_out").features(&tiny_mamba(), PROMPT).unwrap_err();
    assert!(error.to_string().contains("has no attention"), "{error}");
    let error = sae.clone().at_hook("blocks.9.hook_resid_pre").features(&lm, PROMPT).unwrap_err();
    assert!(error.to_string().contains("layer 9"), "{error}");
    let error = sae.edited(&lm, PROMPT, Splice::KeepError, |f| f.narrow(1, 0, 1)).unwrap_err();
    assert!(error.to_string().contains("edited features are"), "{error}");
    let error = sae.clone().at_hook("transformer.h.1.ln_1").features(&lm, "").unwrap_err();
    assert!(matches!(error, Error::Input { .. }), "{error}");
    support::assert_identical(
        &lm.forward(PROMPT).unwrap(),
        &lm.trace(PROMPT).run(async |m| m.output().await).unwrap(),
    );
    assert_eq!(lm.model().vocab_size(), 512);
}
