//! Matrix products of the models' projections.
//!
//! Every projection is one 2-D product over all rows (batch × tokens flattened), which lets the
//! backend's matrix multiplication use its large-product path instead of one small product per
//! sequence. On the default CPU backend (`Flex`, `f32`), products with at most 16 rows — a
//! decoding step has one, a short prompt a few — run on a multi-threaded kernel of this crate
//! that streams each weight once per call; burn-flex's `gemm` runs such products
//! single-threaded. Larger products (prompts, batches, patching sweeps) run on this crate's
//! register-tiled AVX2 + FMA kernel, on both cores for every size (burn-flex keeps products below
//! 192³ multiply-adds on one thread), or on the `gemm` crate where the CPU lacks AVX2 or the
//! weight is stored transposed. Other backends, autodiff included, take burn's `matmul`
//! unchanged.
//!
//! A model loaded from a GGUF file keeps the blocks of its Q4_0, Q4_1 and Q8_0 projections in the
//! projections themselves ([`WeightBlocks`], passed to [`matmul_last_with`]); those few-rows
//! products read the blocks (0.56–1.06 bytes per weight instead of 4) and compute from the quants
//! directly, `x · (d·q + m) = d·(x · q) + m·Σx` per block of 32 — the same weights, so the same
//! result up to float rounding. A decoding step reads every weight once and is bound by memory
//! bandwidth, so this makes it several times faster. A weight changed after loading is read from
//! its `f32` values.
//!
//! Models call [`FastLinear::forward_fast`] where they would call `Linear::forward`; as a
//! `forward*` call on a submodule it is a site, like `forward`.

mod blocks;
mod flex;
mod kernel;
mod linear;
mod many_rows;
#[cfg(target_arch = "x86_64")]
mod tiled;

use burn::prelude::*;

pub use blocks::{BlockMatrix, Stored, WeightBlocks};
pub use linear::FastLinear;

/// `x · w` over the last dimension of `x`: `x` `[.., k]`, `w` `[k, n]` → `[.., n]`, as one 2-D
/// product.
pub fn matmul_last<B: Backend, const D: usize>(x: Tensor<B, D>, w: Tensor<B, 2>) -> Tensor<B, D> {
    matmul_last_with(x, w, None)
}

/// [`matmul_last`], reading `w` from `blocks` in few-rows products while they stand for it (its
/// GGUF blocks, stored [`Stored::InOut`]).
pub fn matmul_last_with<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    w: Tensor<B, 2>,
    blocks: Option<&WeightBlocks>,
) -> Tensor<B, D> {
    let (rows, shape) = flatten(&x);
    let [k, n] = w.dims();
    let x = x.reshape([rows, k]);
    let y = flex::rows_times(&x, &w, false, blocks).unwrap_or_else(|| x.matmul(w));
    y.reshape(with_last(shape, n))
}

/// `x · wᵀ` over the last dimension of `x`: `x` `[.., k]`, `w` `[n, k]` → `[.., n]`, as one 2-D
/// product (no copy of the transposed weight).
pub fn matmul_last_transposed<B: Backend, const D: usize>(x: Tensor<B, D>, w: Tensor<B, 2>) -> Tensor<B, D> {
    matmul_last_transposed_with(x, w, None)
}

/// [`matmul_last_transposed`], reading `w` from `blocks` in few-rows products while they stand
/// for it (stored [`Stored::OutIn`]).
pub fn matmul_last_transposed_with<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    w: Tensor<B, 2>,
    blocks: Option<&WeightBlocks>,
) -> Tensor<B, D> {
    let (rows, shape) = flatten(&x);
    let [n, k] = w.dims();
    let x = x.reshape([rows, k]);
    let y = flex::rows_times(&x, &w, true, blocks).unwrap_or_else(|| x.matmul(w.transpose()));
    y.reshape(with_last(shape, n))
}

/// The number of rows of `x` seen as `[rows, last]`, and its shape.
fn flatten<B: Backend, const D: usize>(x: &Tensor<B, D>) -> (usize, [usize; D]) {
    let shape = x.dims();
    (shape[..D - 1].iter().product(), shape)
}

/// `shape` with its last dimension replaced by `last`.
fn with_last<const D: usize>(mut shape: [usize; D], last: usize) -> [usize; D] {
    shape[D - 1] = last;
    shape
}
