//! Images in: the preprocessing of transformers' image processors ([`ImageProcessor`]), with
//! Pillow's resampling reproduced exactly ([`resize`]), and transformers' center crop ([`center_crop`]).

mod processor;
mod resample;

pub use image::RgbImage;
pub use processor::{ImageProcessor, Resize, center_crop, open_image};
pub use resample::{Resample, resize};
