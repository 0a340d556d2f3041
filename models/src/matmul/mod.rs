//! Matrix products of the models' projections.
//!
//! Every projection is one 2-D product over all rows (batch × tokens flattened), which lets the
//! backend's matrix multiplication use its large-product path instead of one small product per
//! sequence. On the default CPU backend (`Flex`, `f32`), products with at most 16 rows — a
//! decoding step has one, a short prompt a few — run on a multi-threaded kernel of this crate
//! that streams each weight once per call; burn-flex's `gemm` runs such products
//! single-threaded. Other backends, autodiff included, take burn's `matmul` unchanged.
//!
//! Models call [`FastLinear::forward_fast`] where they would call `Linear::forward`; as a
//! `forward*` call on a submodule it is a site, like `forward`.

mod flex;
mod kernel;
mod linear;

use burn::prelude::*;

pub use linear::FastLinear;

/// `x · w` over the last dimension of `x`: `x` `[.., k]`, `w` `[k, n]` → `[.., n]`, as one 2-D
/// product.
pub fn matmul_last<B: Backend, const D: usize>(x: Tensor<B, D>, w: Tensor<B, 2>) -> Tensor<B, D> {
    let (rows, shape) = flatten(&x);
    let [k, n] = w.dims();
    let x = x.reshape([rows, k]);
    let y = flex::rows_times(&x, &w, false).unwrap_or_else(|| x.matmul(w));
    y.reshape(with_last(shape, n))
}

/// `x · wᵀ` over the last dimension of `x`: `x` `[.., k]`, `w` `[n, k]` → `[.., n]`, as one 2-D
/// product (no copy of the transposed weight).
pub fn matmul_last_transposed<B: Backend, const D: usize>(x: Tensor<B, D>, w: Tensor<B, 2>) -> Tensor<B, D> {
    let (rows, shape) = flatten(&x);
    let [n, k] = w.dims();
    let x = x.reshape([rows, k]);
    let y = flex::rows_times(&x, &w, true).unwrap_or_else(|| x.matmul(w.transpose()));
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
