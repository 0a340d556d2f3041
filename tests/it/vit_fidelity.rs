//! ViT against the reference implementation: the tiny ViT fixtures
//! (`tools/fixtures/make_vit_fixture.py`) — Pillow's resize of real PNG files, transformers' image
//! processor, every layer and attention pattern of a classifier, an encoder with the other
//! switches, and CLS patching — reproduced within 1e-4 (pixels exactly).

use crate::support;

use std::fs;
use std::path::PathBuf;

use burn::prelude::*;
use nnsight::Error;
use nnsight::prelude::*;
use nnsight_models::vision::{ImageProcessor, Resample, RgbImage, open_image, resize};
use nnsight_models::vit::{ViTForImageClassification, ViTModel};
use support::B;
use support::fixture::{Expected, assert_close, fixture_dir};

const TOL: f32 = 1e-4;
const IMAGES: [&str; 3] = ["wide", "small", "tall"];

fn dir() -> PathBuf {
    fixture_dir("tiny-vit")
}

fn expected() -> Expected {
    Expected::load_from("tiny-vit")
}

fn images() -> Vec<RgbImage> {
    IMAGES.iter().map(|name| open_image(&dir().join(format!("images/{name}.png"))).unwrap()).collect()
}

fn classifier() -> ViTForImageClassification<B> {
    ViTForImageClassification::from_pretrained(dir().to_str().unwrap(), &Default::default()).unwrap().0
}

fn pixels(processor_dir: &std::path::Path) -> Tensor<B, 4> {
    let processor = ImageProcessor::from_file(&processor_dir.join("preprocessor_config.json")).unwrap();
    processor.preprocess(&images(), &Default::default()).unwrap()
}

#[test]
fn resizing_gives_pillows_pixels_exactly() {
    let expected = expected();
    for (name, image) in IMAGES.iter().zip(images()) {
        for (filter, key) in [(Resample::Bilinear, "bilinear"), (Resample::Bicubic, "bicubic")] {
            let ours: Vec<i64> =
                resize(&image, 32, 32, filter).into_raw().into_iter().map(i64::from).collect();
            let reference: Vec<i64> = expected.ints_of(&format!("{key}.{name}"));
            let differing = ours.iter().zip(&reference).filter(|(a, b)| a != b).count();
            assert_eq!(
                differing,
                0,
                "{name}, {key}: {differing} of {} values differ from Pillow's",
                ours.len()
            );
        }
    }
}

#[test]
fn the_image_processor_matches_transformers() {
    let expected = expected();
    assert_close("pixel values", &pixels(&dir()), &expected.tensor("classifier.pixel_values"), 1e-6);
    let encoder = pixels(&dir().join("encoder"));
    assert_eq!(encoder.dims(), [3, 3, 32, 48], "a non-square size");
    assert_close("encoder pixel values", &encoder, &expected.tensor("encoder.pixel_values"), 1e-6);
}

#[test]
fn every_layer_and_attention_pattern_of_the_classifier_matches_transformers() {
    let (model, expected) = (classifier(), expected());
    assert_eq!(model.labels, ["cat", "dog", "bird", "fish", "frog"]);
    let x = expected.tensor::<4>("classifier.pixel_values");
    model.check_pixel_values(&x).unwrap();
    let (embeddings, layers, layernorm, logits) = model
        .trace(x)
        .run(async |m| {
            let embeddings = m.vit.embeddings.output().await?;
            let mut layers = Vec::new();
            for layer in &m.vit.layers {
                let q = layer.attention.q_proj.output::<Tensor<B, 3>>().await?;
                let probs = layer.attention.attn_probs.output::<Tensor<B, 4>>().await?;
                let act = layer.mlp.activation_fn.output::<Tensor<B, 3>>().await?;
                layers.push((q, probs, act, layer.output().await?));
            }
            let layernorm = m.vit.layernorm.output::<Tensor<B, 3>>().await?;
            Ok((embeddings, layers, layernorm, m.output().await?))
        })
        .unwrap();
    assert_close("embeddings", &embeddings, &expected.tensor("classifier.embeddings"), TOL);
    for (i, (q, probs, act, hidden)) in layers.iter().enumerate() {
        let at = |name: &str| format!("classifier.{name}.{i}");
        assert_close(&at("q_proj"), q, &expected.tensor(&at("q_proj")), TOL);
        assert_eq!(probs.dims(), [3, 4, 17, 17], "[images, heads, tokens, tokens]");
        assert_close(&at("attn_probs"), probs, &expected.tensor(&at("attn_probs")), TOL);
        assert_close(&at("activation_fn"), act, &expected.tensor(&at("activation_fn")), TOL);
        assert_close(&at("hidden"), hidden, &expected.tensor(&at("hidden")), TOL);
    }
    assert_close("layernorm", &layernorm, &expected.tensor("classifier.layernorm"), TOL);
    assert_close("logits", &logits, &expected.tensor("classifier.logits"), TOL);
}

#[test]
fn patching_one_images_cls_token_into_another_matches_transformers() {
    let (model, expected) = (classifier(), expected());
    let x = expected.tensor::<4>("classifier.pixel_values");
    let source = model.trace(x.clone()).run(async |m| m.vit.layers[0].output().await).unwrap();
    let cls = source.slice([0..1, 0..1]);
    let patched = model
        .trace(x.narrow(0, 1, 1))
        .run(async |m| {
            m.vit.layers[0].output().edit(|h| h.slice_assign([0..1, 0..1], cls.clone())).await?;
            m.output().await
        })
        .unwrap();
    assert_close("patched logits", &patched, &expected.tensor("patch.logits"), TOL);
}

#[test]
fn the_encoder_with_the_other_switches_matches_transformers() {
    let expected = expected();
    let (encoder, config) =
        ViTModel::<B>::from_pretrained(dir().join("encoder").to_str().unwrap(), &Default::default()).unwrap();
    assert!(encoder.pooler.is_some() && encoder.layers[0].attention.q_proj.bias.is_none());
    assert!(config.approximate_gelu());
    let x = expected.tensor::<4>("encoder.pixel_values");
    let (hidden, (last, pooled)) = encoder
        .trace(x)
        .run(async |m| {
            let mut hidden = Vec::new();
            for layer in &m.layers {
                hidden.push(layer.output().await?);
            }
            Ok((hidden, m.output().await?))
        })
        .unwrap();
    for (i, h) in hidden.iter().enumerate() {
        assert_close(&format!("layers[{i}]"), h, &expected.tensor(&format!("encoder.hidden.{i}")), TOL);
    }
    assert_close("last hidden state", &last, &expected.tensor("encoder.last_hidden_state"), TOL);
    assert_close("pooler output", &pooled.unwrap(), &expected.tensor("encoder.pooler_output"), TOL);

    // The classifier's checkpoint loads as an encoder (without pooler) and gives its layers.
    let (body, _) = ViTModel::<B>::from_pretrained(dir().to_str().unwrap(), &Default::default()).unwrap();
    assert!(body.pooler.is_none());
    let (last, _) = body.forward(expected.tensor("classifier.pixel_values"));
    assert_close("classifier's encoder", &last, &expected.tensor("classifier.layernorm"), TOL);
}

#[test]
fn an_identity_edit_is_bit_identical_and_the_attention_pattern_is_a_site() {
    let (model, expected) = (classifier(), expected());
    let x = expected.tensor::<4>("classifier.pixel_values");
    let plain = model.forward(x.clone());
    let same = trace!(model, x.clone(), |m| {
        for layer in &m.vit.layers {
            let probs: Tensor<B, 4> = layer.attention.attn_probs.output();
            layer.attention.attn_probs.output() = probs;
            let h = layer.output();
            layer.output() = h;
        }
        m.output()
    })
    .unwrap();
    support::assert_identical(&plain, &same);
    let uniform = model
        .trace(x)
        .run(async |m| {
            m.vit.layers[1]
                .attention
                .attn_probs
                .output::<Tensor<B, 4>>()
                .edit(|p| p.ones_like() / 17.0)
                .await?;
            m.output().await
        })
        .unwrap();
    support::assert_differs(&plain, &uniform);
}

#[test]
fn checkpoints_with_transformers_5_names_load_too() {
    let tmp = tempfile::tempdir().unwrap();
    for file in ["config.json", "preprocessor_config.json"] {
        fs::copy(dir().join(file), tmp.path().join(file)).unwrap();
    }
    let bytes = fs::read(dir().join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let renamed: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let name = name
                .replace("encoder.layer.", "layers.")
                .replace("attention.attention.query", "attention.q_proj")
                .replace("attention.attention.key", "attention.k_proj")
                .replace("attention.attention.value", "attention.v_proj")
                .replace("attention.output.dense", "attention.o_proj")
                .replace("intermediate.dense", "mlp.fc1")
                .replace("output.dense", "mlp.fc2");
            (name, view)
        })
        .collect();
    assert!(renamed.iter().any(|(n, _)| n == "vit.layers.1.mlp.fc2.weight"));
    safetensors::serialize_to_file(renamed, None, &tmp.path().join("model.safetensors")).unwrap();
    let (model, _) =
        ViTForImageClassification::<B>::from_pretrained(tmp.path().to_str().unwrap(), &Default::default())
            .unwrap();
    let x = expected().tensor::<4>("classifier.pixel_values");
    support::assert_identical(&model.forward(x.clone()), &classifier().forward(x));
}

#[test]
fn bad_input_and_bad_files_are_typed_errors() {
    let model = classifier();
    for dims in [[1, 3, 32, 31], [1, 1, 32, 32], [0, 3, 32, 32]] {
        let error = model.check_pixel_values(&Tensor::zeros(dims, &Default::default())).unwrap_err();
        assert!(
            matches!(error, Error::Input { .. }) && error.to_string().contains("[batch ≥ 1, 3, 32, 32]"),
            "{error}"
        );
    }
    let nan = Tensor::<B, 4>::zeros([1, 3, 32, 32], &Default::default())
        .slice_assign([0..1, 1..2, 4..5, 7..8], Tensor::from_data([[[[f32::NAN]]]], &Default::default()));
    let error = model.check_pixel_values(&nan).unwrap_err().to_string();
    assert!(error.contains("NaN"), "{error}");
    let garbage = tempfile::NamedTempFile::new().unwrap();
    fs::write(garbage.path(), b"\x89PNG\r\n\x1a\n truncated").unwrap();
    assert!(matches!(open_image(garbage.path()), Err(Error::Load { .. })));

    let copy = |edit: &dyn Fn(&std::path::Path)| {
        let tmp = tempfile::tempdir().unwrap();
        for file in ["config.json", "model.safetensors"] {
            fs::copy(dir().join(file), tmp.path().join(file)).unwrap();
        }
        edit(tmp.path());
        ViTForImageClassification::<B>::from_pretrained(tmp.path().to_str().unwrap(), &Default::default())
    };
    let rewrite_config = |from: &'static str, to: &'static str| {
        move |p: &std::path::Path| {
            let text = fs::read_to_string(p.join("config.json")).unwrap();
            assert!(text.contains(from), "{from}");
            fs::write(p.join("config.json"), text.replace(from, to)).unwrap();
        }
    };
    let error = copy(&rewrite_config("\"patch_size\": 8", "\"patch_size\": 5")).unwrap_err().to_string();
    assert!(error.contains("patches") && error.contains("config.json"), "{error}");
    let error = copy(&rewrite_config("\"hidden_size\": 32", "\"hidden_size\": 36")).unwrap_err();
    assert!(
        matches!(error, Error::BadWeight { .. }) && error.to_string().contains("[32, 3, 8, 8]"),
        "{error}"
    );
    let no_labels = |p: &std::path::Path| {
        let mut config: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(p.join("config.json")).unwrap()).unwrap();
        config.as_object_mut().unwrap().remove("id2label");
        fs::write(p.join("config.json"), config.to_string()).unwrap();
    };
    let error = copy(&no_labels).unwrap_err().to_string();
    assert!(error.contains("id2label"), "{error}");
}
