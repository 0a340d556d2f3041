//! [`ImageProcessor`]: images to `pixel_values` as transformers' image processors make them
//! (`preprocessor_config.json`: resize with Pillow's filters, rescale, normalize).

use std::path::Path;

use burn::prelude::*;
use image::RgbImage;
use serde::Deserialize;

use nnsight::{Error, Result};

use super::resample::{Resample, resize};

/// What transformers' `ViTImageProcessor` (and its PIL backend) does to an image, read from a
/// `preprocessor_config.json`: resize to `height × width` with a Pillow filter, multiply by
/// `rescale_factor`, subtract `image_mean` and divide by `image_std` per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    /// Output size `(height, width)` when resizing.
    pub size: Option<(u32, u32)>,
    /// The resampling filter.
    pub resample: Resample,
    /// The factor applied to the 8-bit values (`1/255`), when rescaling.
    pub rescale_factor: Option<f64>,
    /// Per-channel `(mean, std)` when normalizing.
    pub normalize: Option<([f64; 3], [f64; 3])>,
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

/// ImageNet's "standard" mean and std of transformers (`IMAGENET_STANDARD_MEAN` / `_STD`).
const STANDARD: [f64; 3] = [0.5, 0.5, 0.5];

impl ImageProcessor {
    /// transformers' `ViTImageProcessor` defaults for a model of `image_size`: bilinear resize to
    /// `image_size × image_size`, rescale by 1/255, normalize with mean and std 0.5.
    pub fn vit(image_size: u32) -> Self {
        ImageProcessor {
            size: Some((image_size, image_size)),
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
        if config.do_center_crop {
            return Err(problem("do_center_crop is not supported yet".to_owned()));
        }
        let size = match (config.do_resize, &config.size) {
            (false, _) => None,
            (true, Some(size)) => {
                let side = |name: &str| size.get(name).and_then(serde_json::Value::as_u64);
                match (side("height"), side("width")) {
                    (Some(h), Some(w)) if h > 0 && w > 0 && h <= 1 << 16 && w <= 1 << 16 => {
                        Some((h as u32, w as u32))
                    }
                    _ => {
                        return Err(problem(format!(
                            "size {size} is not supported (a positive height and width are)"
                        )));
                    }
                }
            }
            (true, None) => return Err(problem("do_resize is set but size is missing".to_owned())),
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
        Ok(ImageProcessor { size, resample, rescale_factor, normalize })
    }

    /// The pixel values `[batch, 3, height, width]` of `images`, in order.
    ///
    /// # Errors
    /// [`Error::Input`] when there is no image, or (without resizing) the images differ in size.
    pub fn preprocess<B: Backend>(&self, images: &[RgbImage], device: &B::Device) -> Result<Tensor<B, 4>> {
        let first =
            images.first().ok_or_else(|| Error::Input { problem: "no image to preprocess".to_owned() })?;
        let (height, width) = self.size.unwrap_or((first.height(), first.width()));
        let mut values = Vec::with_capacity(images.len() * 3 * (height * width) as usize);
        for (i, image) in images.iter().enumerate() {
            let resized = match self.size {
                Some((h, w)) => resize(image, w, h, self.resample),
                None if (image.height(), image.width()) == (height, width) => image.clone(),
                None => {
                    return Err(Error::Input {
                        problem: format!(
                            "image {i} is {}×{}, image 0 is {width}×{height}: without resizing, a batch needs one size",
                            image.width(),
                            image.height()
                        ),
                    });
                }
            };
            if resized.width() == 0 || resized.height() == 0 {
                return Err(Error::Input { problem: format!("image {i} has no pixels") });
            }
            for c in 0..3 {
                values.extend(resized.pixels().map(|p| self.value(p.0[c], c)));
            }
        }
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
            (r#"{"do_center_crop": true}"#, "do_center_crop"),
            (r#"{"size": {"shortest_edge": 224}}"#, "shortest_edge"),
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
}
