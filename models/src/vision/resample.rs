//! Image resizing exactly as Pillow's `Image.resize` computes it for 8-bit images (its
//! `Resample.c`, Pillow 13): a separable convolution in two passes, with the filter widened by the
//! scale when shrinking (antialiasing), coefficients in 22-bit fixed point, each pass rounded to
//! 8 bits. transformers' image processors resize with Pillow, so the same pixels come out.

use image::RgbImage;

/// A resampling filter, as Pillow's `Image.Resampling`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    /// Pillow's `BILINEAR` (2): the triangle filter, support 1.
    Bilinear,
    /// Pillow's `BICUBIC` (3): the cubic convolution with a = -0.5, support 2.
    Bicubic,
}

impl Resample {
    /// The filter for Pillow's numeric code (`resample` in `preprocessor_config.json`).
    pub fn from_pil_code(code: u32) -> Option<Self> {
        match code {
            2 => Some(Resample::Bilinear),
            3 => Some(Resample::Bicubic),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Resample::Bilinear => 1.0,
            Resample::Bicubic => 2.0,
        }
    }

    fn filter(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Resample::Bilinear if x < 1.0 => 1.0 - x,
            Resample::Bicubic if x < 1.0 => ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0,
            Resample::Bicubic if x < 2.0 => (((x - 5.0) * x + 8.0) * x - 4.0) * A,
            _ => 0.0,
        }
    }
}

/// The bicubic filter's parameter.
const A: f64 = -0.5;

/// Bits of the fixed-point coefficients for 8-bit images (`32 - 8 - 2` in Pillow).
const PRECISION_BITS: u32 = 22;

/// One half in the fixed point: the sums round to nearest.
const ROUNDING: i32 = 1 << (PRECISION_BITS - 1);

/// The taps of one output pixel: the first input pixel and the fixed-point weights.
struct Taps {
    first: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` and `normalize_coeffs_8bpc` for `input` pixels → `output`.
fn taps(input: usize, output: usize, filter: Resample) -> Vec<Taps> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    let inverse_scale = 1.0 / filter_scale;
    (0..output)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // Pillow rounds with a C cast (toward zero), then clamps.
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let weights: Vec<f64> =
                (first..end).map(|x| filter.filter((x as f64 - center + 0.5) * inverse_scale)).collect();
            let total: f64 = weights.iter().sum();
            let weights = weights
                .into_iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { w };
                    let fixed = w * f64::from(1u32 << PRECISION_BITS);
                    (if fixed < 0.0 { fixed - 0.5 } else { fixed + 0.5 }) as i32
                })
                .collect();
            Taps { first, weights }
        })
        .collect()
}

/// A weighted sum in fixed point, rounded and clamped to 8 bits (Pillow's `clip8`).
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `image` resized to `width × height` as Pillow's `image.resize((width, height), filter)`
/// (Pillow ≥ 12's pass order: vertical first when the height shrinks by more than twice what the
/// width does, horizontal first otherwise).
pub fn resize(image: &RgbImage, width: u32, height: u32, filter: Resample) -> RgbImage {
    let (in_w, in_h) = (image.width() as usize, image.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    if (in_w, in_h) == (out_w, out_h) {
        return image.clone();
    }
    let shrink_h = in_h as i64 - out_h as i64;
    let vertical_first = shrink_h > 0 && shrink_h > (in_w as i64 - out_w as i64) * 2;
    let pixels = image.as_raw().clone();
    let pixels = if vertical_first {
        horizontal(&vertical(&pixels, in_w, in_h, out_h, filter), in_w, out_h, out_w, filter)
    } else {
        vertical(&horizontal(&pixels, in_w, in_h, out_w, filter), out_w, in_h, out_h, filter)
    };
    RgbImage::from_raw(width, height, pixels).expect("the buffer has width × height × 3 bytes")
}

/// The horizontal pass: `w × h` RGB pixels to `out_w × h` (a copy when the width stays).
fn horizontal(pixels: &[u8], w: usize, h: usize, out_w: usize, filter: Resample) -> Vec<u8> {
    if out_w == w {
        return pixels.to_vec();
    }
    let taps = taps(w, out_w, filter);
    let mut out = vec![0u8; out_w * h * 3];
    for y in 0..h {
        let row = &pixels[y * w * 3..(y + 1) * w * 3];
        for (x, tap) in taps.iter().enumerate() {
            for c in 0..3 {
                let mut sum = ROUNDING;
                for (k, &weight) in tap.weights.iter().enumerate() {
                    sum += i32::from(row[(tap.first + k) * 3 + c]) * weight;
                }
                out[(y * out_w + x) * 3 + c] = clip8(sum);
            }
        }
    }
    out
}

/// The vertical pass: `w × h` RGB pixels to `w × out_h` (a copy when the height stays).
fn vertical(pixels: &[u8], w: usize, h: usize, out_h: usize, filter: Resample) -> Vec<u8> {
    if out_h == h {
        return pixels.to_vec();
    }
    let taps = taps(h, out_h, filter);
    let mut out = vec![0u8; w * out_h * 3];
    for (y, tap) in taps.iter().enumerate() {
        for x in 0..w {
            for c in 0..3 {
                let mut sum = ROUNDING;
                for (k, &weight) in tap.weights.iter().enumerate() {
                    sum += i32::from(pixels[((tap.first + k) * w + x) * 3 + c]) * weight;
                }
                out[(y * w + x) * 3 + c] = clip8(sum);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_image_stays_constant_and_weights_sum_to_one() {
        let image = RgbImage::from_pixel(7, 5, image::Rgb([10, 200, 255]));
        for filter in [Resample::Bilinear, Resample::Bicubic] {
            let out = resize(&image, 3, 11, filter);
            assert!(out.pixels().all(|p| p.0 == [10, 200, 255]), "{filter:?}");
            for tap in taps(37, 5, filter).iter().chain(&taps(5, 37, filter)) {
                let total: i32 = tap.weights.iter().sum();
                assert!((total - (1 << PRECISION_BITS)).abs() <= tap.weights.len() as i32, "{total}");
            }
        }
    }

    #[test]
    fn halving_with_the_triangle_averages_neighbours() {
        // Two pixels → one: the widened triangle weighs the two equally (1/2, 1/2 after the
        // zero-weight edges), so 0 and 100 give 50.
        let image = RgbImage::from_fn(2, 1, |x, _| image::Rgb([if x == 0 { 0 } else { 100 }; 3]));
        assert_eq!(resize(&image, 1, 1, Resample::Bilinear).get_pixel(0, 0).0, [50; 3]);
    }
}
