//! CLIP's image preprocessing against transformers' `CLIPImageProcessorPil`
//! (`tools/fixtures/make_clip_fixture.py`): shortest-edge resize with Pillow's filters, center
//! crop (zero-padded where the crop is larger than the resized image), rescale, OpenAI's mean and
//! std, on three images of other shapes — pixel values within 1e-6.

use crate::support;

use nnsight::Error;
use nnsight_models::vision::{ImageProcessor, Resize, RgbImage, open_image};
use support::B;
use support::fixture::{Expected, assert_close, fixture_dir};

fn images() -> Vec<RgbImage> {
    ["small", "tall", "wide"]
        .iter()
        .map(|name| open_image(&fixture_dir("tiny-vit").join(format!("images/{name}.png"))).unwrap())
        .collect()
}

fn processor(config: &str) -> ImageProcessor {
    ImageProcessor::from_file(
        &fixture_dir("tiny-clip/processor").join(config).join("preprocessor_config.json"),
    )
    .unwrap()
}

#[test]
fn shortest_edge_resize_and_center_crop_match_transformers() {
    let expected = Expected::load_from("tiny-clip/processor");
    let defaults = processor("defaults");
    assert_eq!((defaults.size, defaults.crop), (Some(Resize::ShortestEdge(24)), Some((24, 24))));
    for (config, dims) in [("defaults", [3, 3, 24, 24]), ("padded", [3, 3, 20, 18]), ("odd", [3, 3, 15, 17])]
    {
        let pixels = processor(config).preprocess::<B>(&images(), &Default::default()).unwrap();
        assert_eq!(pixels.dims(), dims, "{config}");
        assert_close(config, &pixels, &expected.tensor(&format!("{config}.pixel_values")), 1e-6);
    }
}

#[test]
fn images_that_cannot_be_batched_or_resized_are_typed_errors() {
    // Without a crop, a shortest-edge resize keeps each image's aspect: no common size.
    let text = r#"{"size": {"shortest_edge": 24}, "do_center_crop": false}"#;
    let uncropped = ImageProcessor::from_json(text).unwrap();
    let error = uncropped.preprocess::<B>(&images(), &Default::default()).unwrap_err();
    assert!(
        matches!(error, Error::Input { .. }) && error.to_string().contains("a batch needs one size"),
        "{error}"
    );
    // One image alone is fine, at its own aspect.
    let one = uncropped.preprocess::<B>(&images()[1..2], &Default::default()).unwrap();
    assert_eq!(one.dims(), [1, 3, 48, 24]);
    // An empty image, and a thin one whose other edge rounds to nothing.
    let empty = RgbImage::new(0, 5);
    let error = processor("defaults").preprocess::<B>(&[empty], &Default::default()).unwrap_err();
    assert!(error.to_string().contains("has no pixels"), "{error}");
    let thin = RgbImage::new(1000, 1);
    let error = ImageProcessor::from_json(r#"{"size": {"shortest_edge": 1}}"#)
        .unwrap()
        .preprocess::<B>(&[RgbImage::new(1, 1000), thin], &Default::default())
        .unwrap_err();
    assert!(matches!(error, Error::Input { .. }), "{error}");
    // A resize past any sensible size is refused before anything is allocated.
    let huge = ImageProcessor::from_json(r#"{"size": {"shortest_edge": 60000}}"#).unwrap();
    let error = huge.preprocess::<B>(&[RgbImage::new(1, 400)], &Default::default()).unwrap_err();
    assert!(error.to_string().contains("more than"), "{error}");
}
