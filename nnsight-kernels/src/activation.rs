//! Activations as one vectorized, multi-threaded pass on the CPU backend: GELU with the tanh
//! approximation (GPT-2's `gelu_new`) and SiLU (Llama's gate). burn evaluates them element by
//! element with the C library's `powf`, `tanh` and `exp`, which took a fifth of a GPT-2 patching
//! sweep's time.
//!
//! Both are `x / (1 + e^(−t))`: SiLU with `t = x`; the GELU's `0.5 · x · (1 + tanh(u))` with
//! `t = 2u`, `u = √(2/π) · (x + 0.044715 · x³)` (the same function). `e^t` comes from a degree-6
//! polynomial after range reduction (relative error below 4·10⁻⁷: a few units of float rounding).

use burn::nn::Gelu;
use burn::prelude::*;
use rayon::prelude::*;

use crate::flex::map_values;

/// Values per rayon task: large enough that scheduling costs little.
const CHUNK: usize = 1 << 15;

/// `Gelu::forward`, as one vectorized pass on the CPU backend when it uses the tanh
/// approximation.
pub trait FastGelu {
    /// The GELU of every element of `x` (burn's `forward` on other backends and for the exact
    /// GELU).
    fn forward_fast<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D>;
}

impl FastGelu for Gelu {
    fn forward_fast<B: Backend, const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        if self.approximate
            && let Some(y) = map_values(&x, |values| each_value(values, gelu_tanh_avx2, gelu_tanh))
        {
            return y;
        }
        self.forward(x)
    }
}

/// SiLU, `x · sigmoid(x)`, of every element of `x`: one vectorized pass on the CPU backend, burn's
/// `silu` on others.
pub fn silu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    map_values(&x, |values| each_value(values, silu_avx2, silu_of))
        .unwrap_or_else(|| burn::tensor::activation::silu(x))
}

/// `function` of each value, in parallel chunks; `vectorized` is the same function compiled for
/// AVX2 and FMA, used where the CPU has them.
fn each_value(
    x: &[f32],
    vectorized: unsafe fn(&[f32], &mut [f32]),
    function: fn(&[f32], &mut [f32]),
) -> Vec<f32> {
    let mut out = vec![0.0f32; x.len()];
    let run = |(input, output): (&[f32], &mut [f32])| {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            unsafe { vectorized(input, output) };
            return;
        }
        let _ = vectorized;
        function(input, output);
    };
    if x.len() <= CHUNK {
        run((x, &mut out));
    } else {
        x.par_chunks(CHUNK).zip(out.par_chunks_mut(CHUNK)).for_each(run);
    }
    out
}

/// [`gelu_tanh`] compiled for AVX2 and FMA.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn gelu_tanh_avx2(x: &[f32], out: &mut [f32]) {
    gelu_tanh(x, out);
}

/// [`silu_of`] compiled for AVX2 and FMA.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn silu_avx2(x: &[f32], out: &mut [f32]) {
    silu_of(x, out);
}

/// `out[i] = x[i] / (1 + e^(−2u))`, `u = √(2/π) · (x + 0.044715 · x³)`: written without branches so
/// that the loop vectorizes.
#[inline(always)]
fn gelu_tanh(x: &[f32], out: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for (y, &x) in out.iter_mut().zip(x) {
        let u = SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x);
        *y = x / (1.0 + exp(-2.0 * u));
    }
}

/// `out[i] = x[i] / (1 + e^(−x[i]))`, without branches.
#[inline(always)]
fn silu_of(x: &[f32], out: &mut [f32]) {
    for (y, &x) in out.iter_mut().zip(x) {
        *y = x / (1.0 + exp(-x));
    }
}

/// `e^t` for `t` clamped to `[−87, 88]` (outside, `e^t` under- or overflows `f32` anyway, and
/// the GELU is `0` or `x` there).
#[inline(always)]
fn exp(t: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that `n · LN2_HIGH` is exact.
    const LN2_HIGH: f32 = 0.693_359_4;
    const LN2_LOW: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 · 2²³ rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let t = t.clamp(-87.0, 88.0);
    let n = (t * LOG2_E + ROUND) - ROUND;
    let r = t - n * LN2_HIGH - n * LN2_LOW;
    // e^r for |r| ≤ ln 2 / 2: Taylor to degree 6.
    let p = 1.0
        + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    /// `0.5 · x · (1 + tanh(u))` in `f64`.
    fn reference(x: f32) -> f64 {
        let x = f64::from(x);
        let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3));
        0.5 * x * (1.0 + u.tanh())
    }

    #[test]
    fn exp_is_accurate_to_float_rounding() {
        for i in -8700..=8800 {
            let t = i as f32 / 100.0;
            let error = (f64::from(exp(t)) - f64::from(t).exp()).abs() / f64::from(t).exp();
            assert!(error < 4e-7, "e^{t}: relative error {error:e}");
        }
    }

    #[test]
    fn matches_the_formula_everywhere() {
        let x: Vec<f32> =
            (-20_000..=20_000).map(|i| i as f32 / 1000.0).chain([-1e4, 1e4, -100.0, 100.0]).collect();
        let y = each_value(&x, gelu_tanh_avx2, gelu_tanh);
        for (&x, &y) in x.iter().zip(&y) {
            let expected = reference(x);
            let error = (f64::from(y) - expected).abs();
            assert!(error <= 1e-6 * expected.abs().max(1e-3), "gelu({x}) = {y}, expected {expected}");
        }
    }

    #[test]
    fn silu_matches_the_formula_and_burn() {
        let values: Vec<f32> = (-20_000..=20_000).map(|i| i as f32 / 500.0).chain([-1e4, 1e4]).collect();
        let x = Tensor::<Flex, 1>::from_data(
            TensorData::new(values.clone(), [values.len()]),
            &Default::default(),
        );
        let fast = silu(x.clone()).into_data().to_vec::<f32>().unwrap();
        for (&x, &y) in values.iter().zip(&fast) {
            let expected = f64::from(x) / (1.0 + (-f64::from(x)).exp());
            let error = (f64::from(y) - expected).abs();
            assert!(error <= 1e-6 * expected.abs().max(1e-3), "silu({x}) = {y}, expected {expected}");
        }
        let burn = burn::tensor::activation::silu(x).into_data();
        Tensor::<Flex, 1>::from_data(TensorData::new(fast, [values.len()]), &Default::default())
            .into_data()
            .assert_approx_eq::<f32>(&burn, burn::tensor::Tolerance::absolute(1e-5));
    }

    #[test]
    fn the_layer_gives_what_burn_gives() {
        let device = Default::default();
        let values: Vec<f32> = (0..100_000).map(|i| (i as f32 - 50_000.0) / 4000.0).collect();
        let x = Tensor::<Flex, 2>::from_data(TensorData::new(values, [250, 400]), &device);
        let fast = Gelu::new_approximate().forward_fast(x.clone());
        let burn = Gelu::new_approximate().forward(x.clone());
        fast.into_data().assert_approx_eq::<f32>(&burn.into_data(), burn::tensor::Tolerance::absolute(1e-6));
        // The exact GELU is burn's own.
        let exact = Gelu::new().forward_fast(x.clone());
        assert_eq!(exact.into_data(), Gelu::new().forward(x).into_data());
    }
}
