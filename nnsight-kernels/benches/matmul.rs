//! The many-rows matrix products of a patching sweep: `matmul_last` (`x · w`, `w` stored
//! `[k, n]`) with the shapes of SmolLM2-135M's projections — q/o `576 → 576`, k/v `576 → 192`,
//! gate/up `576 → 1536`, down `1536 → 576` — for 60 and 540 rows (a SmolLM2 sweep's layers have
//! 36–1,000 rows), on the default CPU backend.
//!
//! Throughput is in floating-point operations (criterion's "elem/s" are FLOP/s, `2 · m · k · n`
//! per product). `benches/numpy_matmul.py` (beside this file) times the same products with numpy's BLAS
//! (OpenBLAS, 2 threads), the library PyTorch-class tools run them on; both are recorded in
//! BENCHMARKS.md. Under `cargo test --benches` each product runs once.
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use std::hint::black_box;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::Distribution;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nnsight_kernels::matmul::matmul_last;

type B = Flex;

/// `(name, k, n)` of SmolLM2-135M's projections.
const PROJECTIONS: [(&str, usize, usize); 4] =
    [("q_o", 576, 576), ("k_v", 576, 192), ("gate_up", 576, 1536), ("down", 1536, 576)];

/// Rows of the products.
const ROWS: [usize; 2] = [60, 540];

fn bench(c: &mut Criterion) {
    let device = Default::default();
    let mut group = c.benchmark_group("matmul");
    group.sample_size(20);
    for rows in ROWS {
        for (name, k, n) in PROJECTIONS {
            let x = Tensor::<B, 2>::random([rows, k], Distribution::Uniform(-1.0, 1.0), &device);
            let w = Tensor::<B, 2>::random([k, n], Distribution::Uniform(-1.0, 1.0), &device);
            group.throughput(Throughput::Elements((2 * rows * k * n) as u64));
            group.bench_function(format!("{rows}x{k}x{n}_{name}"), |b| {
                b.iter(|| black_box(matmul_last(x.clone(), w.clone())))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
