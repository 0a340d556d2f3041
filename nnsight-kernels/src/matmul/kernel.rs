//! Matrix products with few rows, on plain `f32` slices: the products of decoding (one row) and of
//! short prompts, which general-purpose `gemm` runs single-threaded and far below memory bandwidth.
//!
//! The work is split into tasks, each streaming one contiguous stretch of the weight once, for all
//! rows; the calling thread and rayon's pool take them ([`run_tasks`]). Inner loops are written so
//! that LLVM vectorizes them, and compiled a second time for AVX2, which runs where the CPU has it
//! (checked at run time; the arithmetic is the same, so are the results).
//!
//! Every output element is summed in the same order whatever the number of rows, so a row's result
//! does not depend on the other rows of the batch.

use std::ops::Range;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Rows up to which [`rows_times`] and [`rows_times_transposed`] are the faster path (measured on
/// the project's 2-core machine against burn-flex's `gemm`: BENCHMARKS.md).
pub(crate) const MAX_ROWS: usize = 16;

/// Weight rows combined per pass over an output tile.
const UNROLL: usize = 4;

/// Columns per tile: small enough that every core gets several tiles, a multiple of 16.
pub(super) fn tile_width(columns: usize) -> usize {
    let per_thread = columns / (4 * rayon::current_num_threads().max(1));
    per_thread.clamp(64, 512).next_multiple_of(16).min(columns.max(1))
}

/// Bytes of weight one task of [`rows_times`] reads: large enough that scheduling costs little,
/// small enough that every core gets several tasks.
const TASK_BYTES: usize = 256 << 10;

/// Widest column tile of [`rows_times`]: narrower tiles keep the partial sums of wide products
/// small.
const MAX_TILE: usize = 2048;

/// `x · w` for `x` `[m, k]` and `w` `[k, n]` (row-major): `[m, n]`.
///
/// Split into tasks of consecutive weight rows (within a column tile), so that each task streams
/// one stretch of memory; the tasks' partial products are added in row order. The split depends
/// only on `k` and `n`.
pub(crate) fn rows_times(x: &[f32], m: usize, w: &[f32], k: usize, n: usize) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "x is [{m}, {k}]");
    assert_eq!(w.len(), k * n, "w is [{k}, {n}]");
    if m == 0 || n == 0 || k == 0 {
        return vec![0.0; m * n];
    }
    let tile = n.min(MAX_TILE);
    let block = (TASK_BYTES / (4 * tile)).next_multiple_of(UNROLL).min(k);
    let (tiles, blocks) = (n.div_ceil(tile), k.div_ceil(block));
    let partials = run_tasks(tiles * blocks, |task| {
        let (t, b) = (task / blocks, task % blocks);
        let columns = t * tile..n.min((t + 1) * tile);
        let rows = b * block..k.min((b + 1) * block);
        let mut out = vec![0.0; m * columns.len()];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { avx2::accumulate_block(x, w, k, n, rows, columns, &mut out) };
            return out;
        }
        accumulate_block(x, w, k, n, rows, columns, &mut out);
        out
    });
    let mut out = vec![0.0; m * n];
    for (t, tile_partials) in partials.chunks(blocks).enumerate() {
        let first = t * tile;
        let mut parts = tile_partials.iter();
        let mut sum = parts.next().expect("k > 0").clone();
        for part in parts {
            for (y, p) in sum.iter_mut().zip(part) {
                *y += p;
            }
        }
        let width = sum.len() / m;
        for (i, row) in sum.chunks_exact(width).enumerate() {
            out[i * n + first..i * n + first + width].copy_from_slice(row);
        }
    }
    out
}

/// `x · wᵀ` for `x` `[m, k]` and `w` `[n, k]` (row-major): `[m, n]` — a product with a weight kept
/// in the layout `[out, in]`, such as a language-model head tied to the token embedding.
pub(crate) fn rows_times_transposed(x: &[f32], m: usize, w: &[f32], k: usize, n: usize) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "x is [{m}, {k}]");
    assert_eq!(w.len(), n * k, "w is [{n}, {k}]");
    if m == 0 || n == 0 {
        return vec![0.0; m * n];
    }
    let tile = tile_width(n);
    let tiles = run_tasks(n.div_ceil(tile), |t| {
        let first = t * tile;
        let width = tile.min(n - first);
        let mut out = vec![0.0; m * width];
        let weights = &w[first * k..(first + width) * k];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            unsafe { avx2::dots(x, weights, k, &mut out) };
            return out;
        }
        dots(x, weights, k, &mut out);
        out
    });
    scatter(&tiles, m, n, tile)
}

/// Runs `task(0..count)` on the calling thread and on rayon's pool, and returns the results in
/// task order.
///
/// The calling thread takes tasks itself instead of handing the whole job to the pool and
/// sleeping until it is done: with products that take tens of microseconds, waking threads
/// would otherwise cost as much as the work. Tasks are taken from a shared counter, so a helper
/// that wakes late just takes fewer.
pub(super) fn run_tasks(count: usize, task: impl Fn(usize) -> Vec<f32> + Sync) -> Vec<Vec<f32>> {
    let slots: Vec<OnceLock<Vec<f32>>> = (0..count).map(|_| OnceLock::new()).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        loop {
            let at = next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = slots.get(at) else { break };
            // Each index is taken once, so the slot is empty.
            let _ = slot.set(task(at));
        }
    };
    let helpers = rayon::current_num_threads().saturating_sub(1).min(count.saturating_sub(1));
    rayon::in_place_scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(|_| work());
        }
        work();
    });
    slots.into_iter().map(|slot| slot.into_inner().expect("every task ran")).collect()
}

/// `out[i, ..] += Σ_{r ∈ rows} x[i, r] · w[r, columns]`, [`UNROLL`] weight rows per pass.
#[inline(always)]
fn accumulate_block(
    x: &[f32],
    w: &[f32],
    k: usize,
    n: usize,
    rows: Range<usize>,
    columns: Range<usize>,
    out: &mut [f32],
) {
    let width = columns.len();
    let weights = |r: usize| &w[r * n + columns.start..r * n + columns.end];
    let mut at = rows.start;
    while at + UNROLL <= rows.end {
        let (w0, w1, w2, w3) = (weights(at), weights(at + 1), weights(at + 2), weights(at + 3));
        for (i, y) in out.chunks_exact_mut(width).enumerate() {
            let a = &x[i * k + at..i * k + at + UNROLL];
            let (a0, a1, a2, a3) = (a[0], a[1], a[2], a[3]);
            for ((((y, &b0), &b1), &b2), &b3) in y.iter_mut().zip(w0).zip(w1).zip(w2).zip(w3) {
                *y += a0 * b0 + a1 * b1 + a2 * b2 + a3 * b3;
            }
        }
        at += UNROLL;
    }
    for r in at..rows.end {
        let w0 = weights(r);
        for (i, y) in out.chunks_exact_mut(width).enumerate() {
            let a0 = x[i * k + r];
            for (y, &b0) in y.iter_mut().zip(w0) {
                *y += a0 * b0;
            }
        }
    }
}

/// `out[i, j] = x[i] · weights[j]` for the rows of `x` and `weights` (`k` values each), `out`
/// `[rows of x, rows of weights]`.
#[inline(always)]
fn dots(x: &[f32], weights: &[f32], k: usize, out: &mut [f32]) {
    let width = weights.len() / k;
    for (j, weights) in weights.chunks_exact(k).enumerate() {
        for (i, row) in x.chunks_exact(k).enumerate() {
            out[i * width + j] = dot(row, weights);
        }
    }
}

/// The inner loops compiled for AVX2 (the same code: LLVM vectorizes it 8 lanes wide instead of
/// 4).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::ops::Range;

    /// [`super::accumulate_block`] for AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) fn accumulate_block(
        x: &[f32],
        w: &[f32],
        k: usize,
        n: usize,
        rows: Range<usize>,
        columns: Range<usize>,
        out: &mut [f32],
    ) {
        super::accumulate_block(x, w, k, n, rows, columns, out);
    }

    /// [`super::dots`] for AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) fn dots(x: &[f32], weights: &[f32], k: usize, out: &mut [f32]) {
        super::dots(x, weights, k, out);
    }
}

/// Dot product with sixteen partial sums (vectorizable without reassociating a single sum).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let mut partial = [0.0f32; LANES];
    let (a_blocks, a_rest) = a.as_chunks::<LANES>();
    let (b_blocks, b_rest) = b.as_chunks::<LANES>();
    for (a, b) in a_blocks.iter().zip(b_blocks) {
        for lane in 0..LANES {
            partial[lane] += a[lane] * b[lane];
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(a, b)| a * b).sum();
    partial.iter().sum::<f32>() + tail
}

/// Joins column tiles (`tiles[t]` is `[m, width_t]`) into one row-major `[m, n]`.
pub(super) fn scatter(tiles: &[Vec<f32>], m: usize, n: usize, tile: usize) -> Vec<f32> {
    if tiles.len() == 1 {
        return tiles[0].clone();
    }
    let mut out = vec![0.0; m * n];
    for (t, part) in tiles.iter().enumerate() {
        let first = t * tile;
        let width = part.len() / m.max(1);
        for (i, row) in part.chunks_exact(width).enumerate() {
            out[i * n + first..i * n + first + width].copy_from_slice(row);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    fn reference(x: &[f32], m: usize, w: &[f32], k: usize, n: usize, transposed: bool) -> Vec<f32> {
        let mut out = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for l in 0..k {
                    let weight = if transposed { w[j * k + l] } else { w[l * n + j] };
                    out[i * n + j] += f64::from(x[i * k + l]) * f64::from(weight);
                }
            }
        }
        out.into_iter().map(|v| v as f32).collect()
    }

    #[test]
    fn both_layouts_match_a_plain_product() {
        for (m, k, n) in [(1, 1, 1), (1, 7, 5), (3, 13, 70), (1, 64, 1000), (16, 131, 333), (5, 576, 192)] {
            let x = values(m * k, 1);
            let w = values(k * n, 2);
            let expected = reference(&x, m, &w, k, n, false);
            let got = rows_times(&x, m, &w, k, n);
            let worst = expected.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-3 * (k as f32).sqrt(), "[{m},{k}]·[{k},{n}]: {worst}");
            let expected = reference(&x, m, &w, k, n, true);
            let got = rows_times_transposed(&x, m, &w, k, n);
            let worst = expected.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-3 * (k as f32).sqrt(), "[{m},{k}]·[{n},{k}]ᵀ: {worst}");
        }
    }

    #[test]
    fn a_row_does_not_depend_on_the_other_rows() {
        let (k, n) = (100, 300);
        let x = values(4 * k, 3);
        let w = values(k * n, 4);
        let batch = rows_times(&x, 4, &w, k, n);
        let alone = rows_times(&x[2 * k..3 * k], 1, &w, k, n);
        assert_eq!(&batch[2 * n..3 * n], &alone[..]);
        let batch = rows_times_transposed(&x, 4, &w, k, n);
        let alone = rows_times_transposed(&x[2 * k..3 * k], 1, &w, k, n);
        assert_eq!(&batch[2 * n..3 * n], &alone[..]);
    }
}
