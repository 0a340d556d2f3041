//! What the integration tests share: tiny models, the GPT-2 fixture, comparisons.
#![allow(dead_code, unreachable_pub)]

pub mod causal_lms;
pub mod checkpoint;
pub mod fixture;
pub mod llama_fixture;
pub mod models;

use burn::prelude::*;

/// The backend of the tests: burn's CPU backend, or LibTorch / CUDA with the crate's `tch` /
/// `cuda` feature.
pub type B = nnsight_support::backend::Backend;

/// A deterministic input tensor of the given shape (a fixed pseudo-random pattern).
pub fn input<const D: usize>(dims: [usize; D], salt: u64) -> Tensor<B, D> {
    let count: usize = dims.iter().product();
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ salt;
    let values: Vec<f32> = (0..count)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_data(TensorData::new(values, dims), &Default::default())
}

/// Asserts that two tensors are bit-identical.
pub fn assert_identical<const D: usize>(a: &Tensor<B, D>, b: &Tensor<B, D>) {
    let (a, b) = (a.to_data(), b.to_data());
    assert_eq!(a.shape, b.shape, "shapes differ");
    let (a, b) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x.to_bits(), y.to_bits(), "element {i} differs: {x} vs {y}");
    }
}

/// Asserts that two tensors differ somewhere.
pub fn assert_differs<const D: usize>(a: &Tensor<B, D>, b: &Tensor<B, D>) {
    let (a, b) = (a.to_data().to_vec::<f32>().unwrap(), b.to_data().to_vec::<f32>().unwrap());
    assert!(a.iter().zip(&b).any(|(x, y)| x != y), "tensors are equal");
}

/// The logits of `prompts` on the language model `lm` with its attention fused (nothing watches
/// the probabilities) and explicit (a cache records every layer's probabilities, at the paths
/// `|m| paths` lists from the root envoy), and how many values the cache recorded:
/// `(fused, explicit, cached)`.
#[allow(unused_macros)]
macro_rules! fused_and_explicit {
    ($lm:expr, $prompts:expr, |$m:ident| $paths:expr) => {{
        let fused = $lm.trace($prompts.clone()).run(async |m| m.output().await).unwrap();
        let (explicit, cache) = $lm
            .trace($prompts.clone())
            .run(async |$m| {
                let paths: Vec<String> = $paths;
                let cache = $m.cache(nnsight::CacheOptions::only(paths))?;
                Ok(($m.output().await?, cache))
            })
            .unwrap();
        (fused, explicit, cache.len())
    }};
}
#[allow(unused_imports)]
pub(crate) use fused_and_explicit;
