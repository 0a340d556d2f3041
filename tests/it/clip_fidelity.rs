//! CLIP against the reference implementation: the tiny CLIP fixtures
//! (`tools/fixtures/make_clip_fixture.py`), loaded through the loader users use, reproduce what
//! transformers' `CLIPModel` computed within 1e-4 — every layer of both towers, an attention
//! pattern of each (causal and padded for text, full for images), the pooled summaries, the
//! projections and the similarity logits — from pixels its own processor made; and one trace
//! reaches into both towers.

use crate::support;

use burn::prelude::*;
use nnsight::Error;
use nnsight::prelude::*;
use nnsight_models::clip::{ClipConfig, ClipModel, encode_texts};
use nnsight_models::vision::{ImageProcessor, open_image};
use support::B;
use support::checkpoint::{copy_of, edit_config, rewrite};
use support::fixture::{Expected, assert_close, fixture_dir};

const TOL: f32 = 1e-4;

fn load(dir: &str) -> ClipModel<B> {
    ClipModel::from_pretrained(fixture_dir(dir).to_str().unwrap(), &Default::default()).unwrap().0
}

fn inputs(expected: &Expected) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>, Tensor<B, 4>) {
    (expected.ids("input_ids"), expected.ids("attention_mask"), expected.tensor("pixel_values"))
}

/// Every layer of both towers, the pooled summaries, the projections and the logits.
fn check(model: &ClipModel<B>, expected: &Expected, prefix: &str) {
    let (ids, mask, pixels) = inputs(expected);
    let (text, vision, pooled, projected, logits) = model
        .trace((ids, mask, pixels))
        .run(async |m| {
            let mut vision = Vec::new();
            for layer in &m.vision_model.encoder.layers {
                vision.push(layer.output().await?);
            }
            let (_, image_pooled) = m.vision_model.output().await?;
            let image_embeds = m.visual_projection.output::<Tensor<B, 2>>().await?;
            let mut text = Vec::new();
            for layer in &m.text_model.encoder.layers {
                text.push(layer.output().await?);
            }
            let (_, text_pooled) = m.text_model.output().await?;
            let text_embeds = m.text_projection.output::<Tensor<B, 2>>().await?;
            Ok((text, vision, (text_pooled, image_pooled), (text_embeds, image_embeds), m.output().await?))
        })
        .unwrap();
    for (tower, layers) in [("text", &text), ("vision", &vision)] {
        for (i, h) in layers.iter().enumerate() {
            let name = format!("{prefix}{tower}.hidden.{i}");
            assert_close(&name, h, &expected.tensor(&name), TOL);
        }
    }
    assert_close("text pooled", &pooled.0, &expected.tensor(&format!("{prefix}text.pooled")), TOL);
    assert_close("vision pooled", &pooled.1, &expected.tensor(&format!("{prefix}vision.pooled")), TOL);
    assert_close("text_projection", &projected.0, &expected.tensor(&format!("{prefix}text_projection")), TOL);
    assert_close(
        "visual_projection",
        &projected.1,
        &expected.tensor(&format!("{prefix}visual_projection")),
        TOL,
    );
    assert_close("logits_per_image", &logits, &expected.tensor(&format!("{prefix}logits_per_image")), TOL);
    let per_text: Tensor<B, 2> = expected.tensor(&format!("{prefix}logits_per_text"));
    assert_close("logits_per_text", &logits.transpose(), &per_text, TOL);
}

#[test]
fn both_towers_and_the_similarities_match_transformers() {
    let expected = Expected::load_from("tiny-clip");
    check(&load("tiny-clip"), &expected, "");
    // Exact GELU and the older eos_token_id 2 (pooled at each text's largest id).
    let switches = load("tiny-clip/switches");
    assert!(!switches.text_model.encoder.layers[0].mlp.activation_fn.quick);
    check(&switches, &expected, "switches.");
}

#[test]
fn attention_patterns_are_causal_and_padded_for_text_and_full_for_images() {
    let (model, expected) = (load("tiny-clip"), Expected::load_from("tiny-clip"));
    let (text, vision) = model
        .trace(inputs(&expected))
        .run(async |m| {
            let vision =
                m.vision_model.encoder.layers[1].self_attn.attn_probs.output::<Tensor<B, 4>>().await?;
            let text = m.text_model.encoder.layers[0].self_attn.attn_probs.output::<Tensor<B, 4>>().await?;
            Ok((text, vision))
        })
        .unwrap();
    assert_close("text pattern", &text, &expected.tensor("text.attn_probs.0"), TOL);
    assert_close("vision pattern", &vision, &expected.tensor("vision.attn_probs.1"), TOL);
    let [_, _, q, k] = text.dims();
    let future: f32 = text.slice([0..3, 0..4, 0..1, 1..k]).abs().sum().into_scalar();
    assert_eq!((q, future), (k, 0.0), "the first token sees only itself");
}

#[test]
fn the_processor_makes_the_pixels_transformers_fed_the_model() {
    let expected = Expected::load_from("tiny-clip");
    let processor =
        ImageProcessor::from_file(&fixture_dir("tiny-clip").join("preprocessor_config.json")).unwrap();
    let images: Vec<_> = ["small", "tall", "wide"]
        .iter()
        .map(|n| open_image(&fixture_dir("tiny-vit").join(format!("images/{n}.png"))).unwrap())
        .collect();
    let pixels = processor.preprocess::<B>(&images, &Default::default()).unwrap();
    assert_close("pixel values", &pixels, &expected.tensor("pixel_values"), 1e-6);
}

#[test]
fn an_image_patch_swapped_across_images_changes_only_that_images_logits() {
    // Patching the class token of image 0 at the vision tower's input with image 1's, in one
    // trace: image 0's row of the logits moves, the other rows stay bit for bit.
    let (model, expected) = (load("tiny-clip"), Expected::load_from("tiny-clip"));
    let plain = model.forward(
        expected.ids("input_ids"),
        expected.ids("attention_mask"),
        expected.tensor("pixel_values"),
    );
    let patched = model
        .trace(inputs(&expected))
        .run(async |m| {
            m.vision_model.encoder.layers[0]
                .output()
                .edit(|h: Tensor<B, 3>| {
                    let [_, tokens, d] = h.dims();
                    let donor = h.clone().slice([1..2, 0..tokens, 0..d]);
                    h.slice_assign([0..1, 0..tokens, 0..d], donor)
                })
                .await?;
            m.output().await
        })
        .unwrap();
    support::assert_identical(&patched.clone().narrow(0, 1, 2), &plain.clone().narrow(0, 1, 2));
    support::assert_differs(&patched.clone().narrow(0, 0, 1), &plain.clone().narrow(0, 0, 1));
    assert_close("image 0 now scores as image 1", &patched.narrow(0, 0, 1), &plain.narrow(0, 1, 1), 1e-5);
}

#[test]
fn bad_checkpoints_and_inputs_are_typed_errors() {
    let dir = copy_of("tiny-clip");
    rewrite(dir.path(), "vision_model.pre_layrnorm.weight", ("", vec![]));
    let error =
        ClipModel::<B>::from_pretrained(dir.path().to_str().unwrap(), &Default::default()).unwrap_err();
    assert!(
        matches!(error, Error::MissingWeight { .. }) && error.to_string().contains("pre_layrnorm"),
        "{error}"
    );
    let dir = copy_of("tiny-clip");
    edit_config(dir.path(), "\"quick_gelu\"", "\"relu\"");
    let error =
        ClipModel::<B>::from_pretrained(dir.path().to_str().unwrap(), &Default::default()).unwrap_err();
    assert!(error.to_string().contains("hidden_act `relu`"), "{error}");
    let bad = ClipConfig::from_json(r#"{"vision_config": {"image_size": 30, "patch_size": 8}}"#).unwrap_err();
    assert!(bad.to_string().contains("not a multiple of patch_size"), "{bad}");

    // A token id past the vocabulary written into the text tower is an error, and the model
    // stays usable.
    let (model, expected) = (load("tiny-clip"), Expected::load_from("tiny-clip"));
    let error = model
        .trace(inputs(&expected))
        .run(async |m| {
            let ids: Tensor<B, 2, Int> = m.text_model.embeddings.token_embedding.input().await?;
            m.text_model.embeddings.token_embedding.input().replace(ids.ones_like() * 600).await?;
            Ok(())
        })
        .unwrap_err();
    assert!(error.to_string().contains("outside the vocabulary"), "{error}");
    let logits = model.forward(
        expected.ids("input_ids"),
        expected.ids("attention_mask"),
        expected.tensor("pixel_values"),
    );
    assert_close("after the error", &logits, &expected.tensor("logits_per_image"), TOL);
}

#[test]
fn texts_encode_to_the_ids_transformers_was_given() {
    let (model, expected) = (load("tiny-clip"), Expected::load_from("tiny-clip"));
    let tokenizer =
        tokenizers::Tokenizer::from_file(fixture_dir("tiny-clip").join("tokenizer.json")).unwrap();
    let config = ClipConfig::from_file(&fixture_dir("tiny-clip").join("config.json")).unwrap().text_config;
    let texts = ["a photo of a cat", "The Eiffel Tower", "a dog"];
    let (ids, mask) = encode_texts::<B>(&tokenizer, &texts, &config, &Default::default()).unwrap();
    assert_eq!(ids.to_data(), expected.ids("input_ids").to_data());
    assert_eq!(mask.to_data(), expected.ids("attention_mask").to_data());
    let logits = model.forward(ids, mask, expected.tensor("pixel_values"));
    assert_close("logits from encoded texts", &logits, &expected.tensor("logits_per_image"), TOL);

    let long = "a photo of a cat ".repeat(10);
    let error = encode_texts::<B>(&tokenizer, &[long.as_str()], &config, &Default::default()).unwrap_err();
    assert!(matches!(error, Error::Input { .. }) && error.to_string().contains("at most 16"), "{error}");
    let error = encode_texts::<B>(&tokenizer, &[], &config, &Default::default()).unwrap_err();
    assert!(error.to_string().contains("no text"), "{error}");
}
