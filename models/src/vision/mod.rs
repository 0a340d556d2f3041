//! Images in: the preprocessing of transformers' image processors ([`ImageProcessor`]), with
//! Pillow's resampling reproduced exactly ([`resize`]).

mod processor;
mod resample;

pub use image::RgbImage;
pub use processor::{ImageProcessor, open_image};
pub use resample::{Resample, resize};
