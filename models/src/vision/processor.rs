//! [`ImageProcessor`]: images to `pixel_values` as transformers' image processors make them
//! (`preprocessor_config.json`: resize with Pillow's filters — to a size, or so that the shortest
//! edge has a length —, center crop, rescale, normalize).

use std::path::Path;

use burn::prelude::*;
use image::RgbImage;
use serde::Deserialize;

use nnsight::{Error, Result};

use super::resample::{Resample, resize};

/// What transformers' `ViTImageProcessor` and `CLIPImageProcessor` (their PIL backends) do to an
/// image, read from a `preprocessor_config.json`: resize with a Pillow filter, center crop,
/// multiply by `rescale_factor`, subtract `image_mean` and divide by `image_std` per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    /// How to resize, when resizing.
    pub size: Option<Resize>,
    /// The center crop `(height, width)`, when cropping (zero-padded where the image is smaller).
    pub crop: Option<(u32, u32)>,
    /// The resampling filter.
    pub resample: Resample,
    /// The factor applied to the 8-bit values (`1/255`), when rescaling.
    pub rescale_factor: Option<f64>,
    /// Per-channel `(mean, std)` when normalizing.
    pub normalize: Option<([f64; 3], [f64; 3])>,
}

/// The size an image is resized to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Exactly `height × width` (`{"height": h, "width": w}`).
    To {
        /// Rows.
        height: u32,
        /// Columns.
        width: u32,
    },
    /// The shortest edge to this length, the other edge `int(length · long / short)`, as
    /// transformers' `get_resize_output_image_size(default_to_square=False)` (`{"shortest_edge": n}`).
    ShortestEdge(u32),
}

impl Resize {
    /// The `(height, width)` an image of `height × width` is resized to.
    pub fn output(self, height: u32, width: u32) -> (u32, u32) {
        match self {
            Resize::To { height, width } => (height, width),
            Resize::ShortestEdge(edge) => {
                let (short, long) = if width <= height { (width, height) } else { (height, width) };
                let long = (f64::from(edge) * f64::from(long) / f64::from(short.max(1))) as u32;
                if width <= height { (long, edge) } else { (edge, long) }
            }
        }
    }
}

/// The fields of a `preprocessor_config.json` this processor reads.
#[derive(Deserialize)]
struct Config {
    #[serde(default = "yes")]
    do_resize: bool,
    #[serde(default)]
    size: Option<serde_json::Value>,
    #[serde(default = "bilinear")]
    resample: u32,
    #[serde(default)]
    do_center_crop: bool,
    #[serde(default)]
    crop_size: Option<serde_json::Value>,
    #[serde(default = "yes")]
    do_rescale: bool,
    #[serde(default = "one_in_255")]
    rescale_factor: f64,
    #[serde(default = "yes")]
    do_normalize: bool,
    #[serde(default)]
    image_mean: Option<Vec<f64>>,
    #[serde(default)]
    image_std: Option<Vec<f64>>,
}

fn yes() -> bool {
    true
}

fn bilinear() -> u32 {
    2
}

fn one_in_255() -> f64 {
    1.0 / 255.0
}

/// The most pixels a resized image may have (a 64-megapixel image; more is a mistake in the
/// config or the image, not a preprocessing to attempt).
const MAX_PIXELS: u64 = 1 << 26;

/// ImageNet's "standard" mean and std of transformers (`IMAGENET_STANDARD_MEAN` / `_STD`).
const STANDARD: [f64; 3] = [0.5, 0.5, 0.5];

impl ImageProcessor {
    /// transformers' `ViTImageProcessor` defaults for a model of `image_size`: bilinear resize to
    /// `image_size × image_size`, rescale by 1/255, normalize with mean and std 0.5.
    pub fn vit(image_size: u32) -> Self {
        ImageProcessor {
            size: Some(Resize::To { height: image_size, width: image_size }),
            crop: None,
            resample: Resample::Bilinear,
            rescale_factor: Some(1.0 / 255.0),
            normalize: Some((STANDARD, STANDARD)),
        }
    }

    /// Reads a `preprocessor_config.json`.
    ///
    /// # Errors
    /// [`Error::Load`] naming the file when it cannot be read or asks for a step this processor
    /// does not compute (center crop, shortest-edge resize, a filter other than bilinear or
    /// bicubic).
    pub fn from_file(path: &Path) -> Result<Self> {
        let load_error = |problem: String| Error::Load { source_name: path.display().to_string(), problem };
        let text = std::fs::read_to_string(path).map_err(|e| load_error(format!("cannot read it: {e}")))?;
        Self::from_json(&text).map_err(|e| e.in_source(path.display()))
    }

    /// Parses the text of a `preprocessor_config.json` (see [`from_file`](Self::from_file)).
    ///
    /// # Errors
    /// [`Error::Config`] saying what is wrong or unsupported.
    pub fn from_json(text: &str) -> Result<Self> {
        let config: Config = serde_json::from_str(text)
            .map_err(|e| Error::Config { problem: format!("not a preprocessor_config.json: {e}") })?;
        let problem = |problem: String| Error::Config { problem };
        let side = |size: &serde_json::Value, name: &str| {
            size.get(name)
                .and_then(serde_json::Value::as_u64)
                .filter(|&n| n > 0 && n <= 1 << 16)
                .map(|n| n as u32)
        };
        let size = match (config.do_resize, &config.size) {
            (false, _) => None,
            (true, Some(size)) => {
                match (side(size, "height"), side(size, "width"), side(size, "shortest_edge")) {
                    (Some(height), Some(width), _) => Some(Resize::To { height, width }),
                    (None, None, Some(edge))
                        if size.get("longest_edge").is_none_or(serde_json::Value::is_null) =>
                    {
                        Some(Resize::ShortestEdge(edge))
                    }
                    _ => {
                        return Err(problem(format!(
                            "size {size} is not supported (a positive height and width, or a shortest_edge, are)"
                        )));
                    }
                }
            }
            (true, None) => return Err(problem("do_resize is set but size is missing".to_owned())),
        };
        let crop = match (config.do_center_crop, &config.crop_size) {
            (false, _) => None,
            (true, Some(crop)) => {
                let square = crop.as_u64().filter(|&n| n > 0 && n <= 1 << 16).map(|n| (n as u32, n as u32));
                match (square, side(crop, "height"), side(crop, "width")) {
                    (Some(both), _, _) => Some(both),
                    (None, Some(height), Some(width)) => Some((height, width)),
                    _ => {
                        return Err(problem(format!(
                            "crop_size {crop} is not supported (a positive height and width are)"
                        )));
                    }
                }
            }
            (true, None) => return Err(problem("do_center_crop is set but crop_size is missing".to_owned())),
        };
        let resample = Resample::from_pil_code(config.resample).ok_or_else(|| {
            problem(format!(
                "resample {} is not supported (2, bilinear, and 3, bicubic, are)",
                config.resample
            ))
        })?;
        let channels = |name: &str, values: Option<Vec<f64>>| -> Result<[f64; 3]> {
            let values = values.unwrap_or(STANDARD.to_vec());
            <[f64; 3]>::try_from(values.as_slice())
                .map_err(|_| problem(format!("{name} has {} values, an RGB image needs 3", values.len())))
        };
        let normalize = if config.do_normalize {
            let std = channels("image_std", config.image_std)?;
            if std.iter().any(|s| !(s.is_finite() && *s != 0.0)) {
                return Err(problem(format!("image_std {std:?} must be finite and non-zero")));
            }
            Some((channels("image_mean", config.image_mean)?, std))
        } else {
            None
        };
        let rescale_factor = config.do_rescale.then_some(config.rescale_factor);
        Ok(ImageProcessor { size, crop, resample, rescale_factor, normalize })
    }

    /// The pixel values `[batch, 3, height, width]` of `images`, in order.
    ///
    /// # Errors
    /// [`Error::Input`] when there is no image, or (without resizing) the images differ in size.
    pub fn preprocess<B: Backend>(&self, images: &[RgbImage], device: &B::Device) -> Result<Tensor<B, 4>> {
        let first =
            images.first().ok_or_else(|| Error::Input { problem: "no image to preprocess".to_owned() })?;
        let mut values = Vec::new();
        let mut shape = None;
        for (i, image) in images.iter().enumerate() {
            if image.width() == 0 || image.height() == 0 {
                return Err(Error::Input { problem: format!("image {i} has no pixels") });
            }
            let resized = match self.size {
                Some(size) => {
                    let (h, w) = size.output(image.height(), image.width());
                    if u64::from(h) * u64::from(w) > MAX_PIXELS {
                        return Err(Error::Input {
                            problem: format!(
                                "image {i} ({}×{}) would resize to {w}×{h}, more than {MAX_PIXELS} pixels",
                                image.width(),
                                image.height()
                            ),
                        });
                    }
                    if h == 0 || w == 0 {
                        return Err(Error::Input {
                            problem: format!(
                                "image {i} ({}×{}) resizes to nothing ({w}×{h})",
                                image.width(),
                                image.height()
                            ),
                        });
                    }
                    resize(image, w, h, self.resample)
                }
                None => image.clone(),
            };
            let prepared = match self.crop {
                Some((h, w)) => center_crop(&resized, h, w),
                None => resized,
            };
            let dims = (prepared.height(), prepared.width());
            match shape {
                None => shape = Some(dims),
                Some(first_dims) if first_dims != dims => {
                    return Err(Error::Input {
                        problem: format!(
                            "image {i} becomes {}×{}, image 0 {}×{} ({}×{} before): a batch needs one size",
                            dims.1,
                            dims.0,
                            first_dims.1,
                            first_dims.0,
                            first.width(),
                            first.height()
                        ),
                    });
                }
                Some(_) => {}
            }
            for c in 0..3 {
                values.extend(prepared.pixels().map(|p| self.value(p.0[c], c)));
            }
        }
        let (height, width) = shape.expect("one image at least");
        let shape = [images.len(), 3, height as usize, width as usize];
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }

    /// One channel value as transformers computes it: rescaled in `f64`, then normalized in `f32`.
    fn value(&self, v: u8, channel: usize) -> f32 {
        let x = match self.rescale_factor {
            Some(factor) => (f64::from(v) * factor) as f32,
            None => f32::from(v),
        };
        match self.normalize {
            Some((mean, std)) => (x - mean[channel] as f32) / std[channel] as f32,
            None => x,
        }
    }
}

/// The `height × width` center of `image`, as transformers' `center_crop`: the window starts at
/// `⌊(size - crop) / 2⌋`; where the crop is larger than the image, the image is first placed at
/// `⌈(new - size) / 2⌉` on a zero (black) canvas of the larger size.
pub fn center_crop(image: &RgbImage, height: u32, width: u32) -> RgbImage {
    let (orig_h, orig_w) = (i64::from(image.height()), i64::from(image.width()));
    let (crop_h, crop_w) = (i64::from(height), i64::from(width));
    let (top, left) = ((orig_h - crop_h).div_euclid(2), (orig_w - crop_w).div_euclid(2));
    let (pad_top, pad_left) = if top >= 0 && left >= 0 && top + crop_h <= orig_h && left + crop_w <= orig_w {
        (0, 0)
    } else {
        let (new_h, new_w) = (crop_h.max(orig_h), crop_w.max(orig_w));
        ((new_h - orig_h + 1) / 2, (new_w - orig_w + 1) / 2)
    };
    let (top, left) = (top + pad_top, left + pad_left);
    RgbImage::from_fn(width, height, |x, y| {
        // The canvas pixel (top + y, left + x) is the image's (.. - pad) when inside it, else 0.
        let (row, column) = (top + i64::from(y) - pad_top, left + i64::from(x) - pad_left);
        if (0..orig_h).contains(&row) && (0..orig_w).contains(&column) {
            *image.get_pixel(column as u32, row as u32)
        } else {
            image::Rgb([0, 0, 0])
        }
    })
}

/// Opens an image file (PNG, JPEG) as 8-bit RGB, as transformers' `load_image(..).convert("RGB")`.
/// PNG decodes to the same pixels as Pillow; JPEG decoders may differ from Pillow's libjpeg by one
/// level in some pixels.
///
/// # Errors
/// [`Error::Load`] naming the file when it cannot be read or decoded.
pub fn open_image(path: &Path) -> Result<RgbImage> {
    let image = image::open(path).map_err(|e| Error::Load {
        source_name: path.display().to_string(),
        problem: format!("cannot decode it: {e}"),
    })?;
    Ok(image.to_rgb8())
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;

    #[test]
    fn unsupported_steps_are_named() {
        for (text, part) in [
            (r#"{"do_center_crop": true, "size": {"shortest_edge": 8}}"#, "crop_size is missing"),
            (
                r#"{"do_center_crop": true, "size": {"shortest_edge": 8}, "crop_size": {"height": 4}}"#,
                "crop_size",
            ),
            (r#"{"size": {"shortest_edge": 224, "longest_edge": 300}}"#, "shortest_edge"),
            (r#"{"size": {"height": 8, "width": 8}, "resample": 1}"#, "resample 1"),
            (r#"{"size": {"height": 8, "width": 8}, "image_mean": [0.5]}"#, "image_mean has 1"),
            (r#"{"size": {"height": 8, "width": 8}, "image_std": [0.5, 0.0, 0.5]}"#, "image_std"),
            (r#"{"size": {"height": 0, "width": 8}}"#, "size"),
        ] {
            let error = ImageProcessor::from_json(text).unwrap_err().to_string();
            assert!(error.contains(part), "{text}: {error}");
        }
    }

    #[test]
    fn values_are_rescaled_then_normalized_channel_first() {
        let processor = ImageProcessor::from_json(r#"{"do_resize": false}"#).unwrap();
        let image = RgbImage::from_fn(2, 1, |x, _| image::Rgb([255, 0, if x == 0 { 51 } else { 204 }]));
        let pixels = processor.preprocess::<Flex>(&[image], &Default::default()).unwrap();
        assert_eq!(pixels.dims(), [1, 3, 1, 2]);
        let values = pixels.into_data().to_vec::<f32>().unwrap();
        assert_eq!(values, [1.0, 1.0, -1.0, -1.0, -0.6, 0.6]);
        assert!(processor.preprocess::<Flex>(&[], &Default::default()).is_err());
    }

    #[test]
    fn shortest_edge_sizes_are_transformers() {
        let edge = Resize::ShortestEdge(224);
        assert_eq!(edge.output(480, 640), (224, 298), "int(224 * 640 / 480) = 298");
        assert_eq!(edge.output(640, 480), (298, 224));
        assert_eq!(edge.output(100, 100), (224, 224));
    }

    #[test]
    fn a_crop_larger_than_the_image_pads_it_with_black() {
        let image = RgbImage::from_fn(3, 2, |x, y| image::Rgb([(10 * (y * 3 + x) + 10) as u8, 0, 0]));
        let cropped = center_crop(&image, 4, 2);
        // Rows padded by 1 above and below; columns: start ⌊(3 - 2) / 2⌋ = 0.
        let reds: Vec<u8> = cropped.pixels().map(|p| p.0[0]).collect();
        assert_eq!(reds, [0, 0, 10, 20, 40, 50, 0, 0]);
        let same = center_crop(&image, 2, 3);
        assert_eq!(same, image);
    }
}
