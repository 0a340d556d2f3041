//! CLIP's texts and images as invokes of their own tower (`ClipModel::tracer`): each body sees
//! its rows of its tower, the other tower and the similarity logits whole and read-only; patches
//! between invokes equal the same patch done by hand in one plain trace; misuse is a typed error
//! that leaves the model usable.

use crate::support;

use burn::prelude::*;
use nnsight::Error;
use nnsight::prelude::*;
use nnsight_models::clip::{ClipConfig, ClipModel, encode_texts};
use support::B;
use support::fixture::{Expected, assert_close, fixture_dir};

fn load() -> (ClipModel<B>, Expected) {
    let dir = fixture_dir("tiny-clip");
    (
        ClipModel::from_pretrained(dir.to_str().unwrap(), &Default::default()).unwrap().0,
        Expected::load_from("tiny-clip"),
    )
}

/// Texts as `(input_ids, attention_mask)`.
type Texts = (Tensor<B, 2, Int>, Tensor<B, 2, Int>);

/// A misuse: its name, the texts and images of the invokes, what the error says.
type Case = (&'static str, Option<Texts>, Vec<Tensor<B, 4>>, &'static str);

fn texts(expected: &Expected) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    (expected.ids("input_ids"), expected.ids("attention_mask"))
}

fn rows<const D: usize, K: burn::tensor::BasicOps<B>>(
    t: &Tensor<B, D, K>,
    start: usize,
    len: usize,
) -> Tensor<B, D, K> {
    t.clone().narrow(0, start, len)
}

/// The plain trace of all three texts and images: every text layer, every vision layer, both
/// projections and the logits.
type Plain = (Vec<Tensor<B, 3>>, Vec<Tensor<B, 3>>, Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>);

fn plain(model: &ClipModel<B>, expected: &Expected) -> Plain {
    let (ids, mask) = texts(expected);
    model
        .trace((ids, mask, expected.tensor("pixel_values")))
        .run(async |m| {
            let mut vision = Vec::new();
            for layer in &m.vision_model.encoder.layers {
                vision.push(layer.output().await?);
            }
            let images = m.visual_projection.output::<Tensor<B, 2>>().await?;
            let mut text = Vec::new();
            for layer in &m.text_model.encoder.layers {
                text.push(layer.output().await?);
            }
            let words = m.text_projection.output::<Tensor<B, 2>>().await?;
            Ok((text, vision, words, images, m.output().await?))
        })
        .unwrap()
}

#[test]
fn each_invoke_sees_its_rows_of_its_own_tower() {
    let (model, expected) = load();
    let (text, vision, words, images, logits) = plain(&model, &expected);
    let (ids, mask) = texts(&expected);
    let pixels: Tensor<B, 4> = expected.tensor("pixel_values");
    // Texts 0..2 and 2..3, images 0..1 and 1..3, interleaved: the same batches as the plain
    // trace, so every value is bit-identical to its rows there.
    let ((t01, w01, whole), (v0, i0), (t2, w2), (v12, i12, seen_text)) = model
        .tracer()
        .invoke_texts((rows(&ids, 0, 2), rows(&mask, 0, 2)), async |m| {
            let layer = m.text_model.encoder.layers[1].output().await?;
            let words = m.text_projection.output::<Tensor<B, 2>>().await?;
            Ok((layer, words, m.output().await?))
        })
        .invoke_images(rows(&pixels, 0, 1), async |m| {
            let layer = m.vision_model.encoder.layers[0].output().await?;
            Ok((layer, m.visual_projection.output::<Tensor<B, 2>>().await?))
        })
        .invoke_texts((rows(&ids, 2, 1), rows(&mask, 2, 1)), async |m| {
            let layer = m.text_model.encoder.layers[1].output().await?;
            Ok((layer, m.text_projection.output::<Tensor<B, 2>>().await?))
        })
        .invoke_images(rows(&pixels, 1, 2), async |m| {
            let layer = m.vision_model.encoder.layers[0].output().await?;
            let images = m.visual_projection.output::<Tensor<B, 2>>().await?;
            // Another part's module: seen whole.
            let text = m.text_model.encoder.layers[1].output().await?;
            Ok((layer, images, text))
        })
        .run()
        .unwrap();
    support::assert_identical(&t01, &rows(&text[1], 0, 2));
    support::assert_identical(&w01, &rows(&words, 0, 2));
    support::assert_identical(&t2, &rows(&text[1], 2, 1));
    support::assert_identical(&w2, &rows(&words, 2, 1));
    support::assert_identical(&v0, &rows(&vision[0], 0, 1));
    support::assert_identical(&i0, &rows(&images, 0, 1));
    support::assert_identical(&v12, &rows(&vision[0], 1, 2));
    support::assert_identical(&i12, &rows(&images, 1, 2));
    support::assert_identical(&seen_text, &text[1]);
    // The logits combine both towers: every invoke reads all of `logits_per_image`.
    support::assert_identical(&whole, &logits);
    assert_close("logits", &whole, &expected.tensor("logits_per_image"), 1e-4);
}

#[test]
fn texts_of_different_lengths_are_padded_without_changing_their_results() {
    let (model, expected) = load();
    let tokenizer =
        tokenizers::Tokenizer::from_file(fixture_dir("tiny-clip").join("tokenizer.json")).unwrap();
    let config = ClipConfig::from_file(&fixture_dir("tiny-clip").join("config.json")).unwrap().text_config;
    let device = Default::default();
    // "a dog" alone is narrower than the other two; the batcher widens it.
    let long =
        encode_texts::<B>(&tokenizer, &["a photo of a cat", "The Eiffel Tower"], &config, &device).unwrap();
    let short = encode_texts::<B>(&tokenizer, &["a dog"], &config, &device).unwrap();
    assert!(short.0.dims()[1] < long.0.dims()[1]);
    let (_, _, words, _, logits) = plain(&model, &expected);
    let pixels: Tensor<B, 4> = expected.tensor("pixel_values");
    let (a, b, all) = model
        .tracer()
        .invoke_texts(long, async |m| m.text_projection.output::<Tensor<B, 2>>().await)
        .invoke_texts(short, async |m| m.text_projection.output::<Tensor<B, 2>>().await)
        .invoke_images(pixels, async |m| m.output().await)
        .run()
        .unwrap();
    assert_close("long texts", &a, &rows(&words, 0, 2), 1e-5);
    assert_close("short text", &b, &rows(&words, 2, 1), 1e-5);
    assert_close("logits", &all, &logits, 1e-5);
}

#[test]
fn a_patch_between_image_invokes_equals_the_patch_by_hand() {
    // Image 1's class token at the vision tower's first layer, patched into image 0's invoke:
    // as in one plain trace whose body writes row 1's class token into row 0.
    let (model, expected) = load();
    let (ids, mask) = texts(&expected);
    let pixels: Tensor<B, 4> = expected.tensor("pixel_values");
    let by_hand = model
        .trace((ids.clone(), mask.clone(), pixels.clone()))
        .run(async |m| {
            m.vision_model.encoder.layers[0]
                .output()
                .edit(|h: Tensor<B, 3>| {
                    let d = h.dims()[2];
                    let donor = h.clone().narrow(0, 1, 1).narrow(1, 0, 1);
                    h.slice_assign([0..1, 0..1, 0..d], donor)
                })
                .await?;
            m.output().await
        })
        .unwrap();
    let donor = nnsight::Shared::new("image 1's class token");
    let ((), (), logits) = model
        .tracer()
        .invoke_images(rows(&pixels, 1, 2), async |m| {
            let h: Tensor<B, 3> = m.vision_model.encoder.layers[0].output().await?;
            donor.set(h.narrow(0, 0, 1).narrow(1, 0, 1))
        })
        .invoke_images(rows(&pixels, 0, 1), async |m| {
            m.vision_model.encoder.layers[0]
                .output()
                .edit(|h: Tensor<B, 3>| {
                    let d = h.dims()[2];
                    h.slice_assign([0..1, 0..1, 0..d], donor.get().unwrap())
                })
                .await
        })
        .invoke_texts((ids, mask), async |m| m.output().await)
        .run()
        .unwrap();
    // The invokes' images are in the order they were added: [1, 2, 0].
    let order = Tensor::<B, 1, Int>::from_ints([2, 0, 1], &Default::default());
    support::assert_identical(&logits.select(0, order), &by_hand);
}

#[test]
fn writes_outside_an_invokes_part_are_refused_and_the_model_stays_usable() {
    let (model, expected) = load();
    let (ids, mask) = texts(&expected);
    let pixels: Tensor<B, 4> = expected.tensor("pixel_values");
    let reference: Tensor<B, 2> = expected.tensor("logits_per_image");
    // A text invoke writing the vision tower, and one writing the logits (which combine both).
    let error = model
        .tracer()
        .invoke_texts((ids.clone(), mask.clone()), async |m| {
            m.vision_model.post_layernorm.output().edit(|h: Tensor<B, 3>| h * 2.0).await
        })
        .invoke_images(pixels.clone(), async |_| Ok(()))
        .run()
        .unwrap_err();
    assert!(matches!(error, Error::OtherPart { .. }), "{error}");
    assert!(
        error.to_string().contains("invoke 0 cannot write `vision_model.post_layernorm.output"),
        "{error}"
    );
    let error = model
        .tracer()
        .invoke_texts((ids.clone(), mask.clone()), async |_| Ok(()))
        .invoke_images(pixels.clone(), async |m| m.output().edit(|l: Tensor<B, 2>| l * 0.0).await)
        .run()
        .unwrap_err();
    assert!(matches!(error, Error::OtherPart { .. }), "{error}");
    // `invoke_all` sees and writes everything.
    let (scaled, (), ()) = model
        .tracer()
        .invoke_all(async |m| {
            m.output().edit(|l: Tensor<B, 2>| l * 2.0).await?;
            m.output().await
        })
        .invoke_texts((ids.clone(), mask.clone()), async |_| Ok(()))
        .invoke_images(pixels.clone(), async |_| Ok(()))
        .run()
        .unwrap();
    assert_close("invoke_all's write", &scaled, &(reference.clone() * 2.0), 1e-4);

    // An invoke alone in its part may skip that part's modules; one of two may not.
    let (skipped, ()) = model
        .tracer()
        .invoke_images(pixels.clone(), async |m| {
            let h: Tensor<B, 3> = m.vision_model.encoder.layers[0].output().await?;
            m.vision_model.encoder.layers[1].skip(h).await?;
            m.output().await
        })
        .invoke_texts((ids.clone(), mask.clone()), async |_| Ok(()))
        .run()
        .unwrap();
    let by_hand = model
        .trace((ids.clone(), mask.clone(), pixels.clone()))
        .run(async |m| {
            let h: Tensor<B, 3> = m.vision_model.encoder.layers[0].output().await?;
            m.vision_model.encoder.layers[1].skip(h).await?;
            m.output().await
        })
        .unwrap();
    support::assert_identical(&skipped, &by_hand);
    let error = model
        .tracer()
        .invoke_images(rows(&pixels, 0, 1), async |m| {
            m.vision_model.encoder.layers[1].skip(m.vision_model.encoder.layers[0].output().await?).await
        })
        .invoke_images(rows(&pixels, 1, 2), async |_| Ok(()))
        .invoke_texts((ids.clone(), mask.clone()), async |_| Ok(()))
        .run()
        .unwrap_err();
    assert!(matches!(error, Error::PartialSkip { .. }), "{error}");

    let logits = model.forward(ids, mask, pixels);
    assert_close("after the errors", &logits, &reference, 1e-4);
}

#[test]
fn inputs_that_cannot_form_the_two_batches_are_typed_errors() {
    let (model, expected) = load();
    let (ids, mask) = texts(&expected);
    let pixels: Tensor<B, 4> = expected.tensor("pixel_values");
    let device = Default::default();
    let run = |texts: Option<Texts>, images: Vec<Tensor<B, 4>>| {
        let tracer = model.tracer();
        match (texts, images.len()) {
            (Some(t), 0) => tracer.invoke_texts(t, async |_| Ok(())).run().map(drop),
            (None, 1) => tracer.invoke_images(images[0].clone(), async |_| Ok(())).run().map(drop),
            (Some(t), 1) => tracer
                .invoke_texts(t, async |_| Ok(()))
                .invoke_images(images[0].clone(), async |_| Ok(()))
                .run()
                .map(drop),
            (Some(t), _) => tracer
                .invoke_texts(t, async |_| Ok(()))
                .invoke_images(images[0].clone(), async |_| Ok(()))
                .invoke_images(images[1].clone(), async |_| Ok(()))
                .run()
                .map(drop),
            (None, _) => tracer.invoke_all(async |_| Ok(())).run().map(drop),
        }
    };
    let cases: Vec<Case> = vec![
        ("texts only", Some((ids.clone(), mask.clone())), vec![], "at least one image"),
        ("images only", None, vec![pixels.clone()], "at least one text"),
        ("no input", None, vec![], "no invoke has an input"),
        ("mask of another shape", Some((ids.clone(), rows(&mask, 0, 2))), vec![pixels.clone()], "one shape"),
        (
            "no text",
            Some((Tensor::zeros([0, 4], &device), Tensor::zeros([0, 4], &device))),
            vec![pixels.clone()],
            "has no text",
        ),
        (
            "too long",
            Some((Tensor::zeros([1, 40], &device), Tensor::ones([1, 40], &device))),
            vec![pixels.clone()],
            "at most 16",
        ),
        (
            "images of two sizes",
            Some((ids.clone(), mask.clone())),
            vec![pixels.clone(), pixels.clone().narrow(3, 0, 8)],
            "cannot form one batch",
        ),
    ];
    for (case, texts, images, message) in cases {
        let error = run(texts, images).unwrap_err();
        assert!(matches!(error, Error::Input { .. }), "{case}: {error}");
        assert!(error.to_string().contains(message), "{case}: {error}");
    }
    let logits = model.forward(ids, mask, pixels);
    assert_close("after the errors", &logits, &expected.tensor("logits_per_image"), 1e-4);
}
