//! Products with many rows on x86-64 CPUs with AVX2 and FMA: a register-tiled kernel for the
//! medium-sized products of patching sweeps and prompts (tens to hundreds of rows against a
//! projection), where the general-purpose `gemm` reaches about a third of this machine's peak.
//!
//! The output is computed in tiles of [`ROWS`] × [`COLUMNS`] held in twelve vector registers; each
//! step of the depth loop loads two vectors of the weight and broadcasts one value per row, so
//! every load feeds six fused multiply-adds. Both operands are first copied into the order the
//! kernel reads them: the rows of `x` for a depth block, and one panel of the weight
//! ([`DEPTH`] × [`COLUMNS`], 16 KiB) that then stays in the L1 cache while every row tile uses
//! it. The copy matters: a weight row is 3–12 KiB apart from the next, so the rows of an unpacked
//! panel fall into a handful of cache sets and evict one another.
//!
//! Every output element is the sum over depth blocks (in order) of fused multiply-add chains (in
//! order), whatever the number of rows and threads: a row's result does not depend on the rest of
//! the batch.

use std::arch::x86_64::{
    __m256, _MM_HINT_T0, _mm_prefetch, _mm256_add_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps,
    _mm256_setzero_ps, _mm256_storeu_ps,
};

use super::many_rows::THREADED_FROM;

/// Rows of a register tile.
const ROWS: usize = 6;
/// Columns of a register tile: two vectors of eight.
const COLUMNS: usize = 16;
/// Depth of one pass: a packed weight panel holds `DEPTH × COLUMNS` values (16 KiB, in L1).
const DEPTH: usize = 256;
/// Weight columns packed at a time: `DEPTH × BLOCK` values (256 KiB, in L2), read as rows of 1 KiB.
const BLOCK: usize = 256;

/// Whether this CPU runs the kernel (AVX2 and FMA).
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// `x · w` for `x` `[m, k]` and `w` `[k, n]`, both row-major: `[m, n]`.
///
/// # Panics
/// When the slices do not have the stated shapes, or the CPU lacks AVX2 or FMA ([`available`]).
pub(super) fn rows_times(x: &[f32], m: usize, w: &[f32], k: usize, n: usize) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "x is [{m}, {k}]");
    assert_eq!(w.len(), k * n, "w is [{k}, {n}]");
    assert!(available(), "the tiled kernel needs AVX2 and FMA");
    if m == 0 || n == 0 || k == 0 {
        return vec![0.0f32; m * n];
    }
    // Not zeroed: the first depth pass writes every element before any is read.
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let panels = n.div_ceil(COLUMNS);
    let threads = if m * n * k >= THREADED_FROM { rayon::current_num_threads().clamp(1, panels) } else { 1 };
    let out_ptr = SharedOut(out.as_mut_ptr());
    let share = |t: usize| {
        let first = panels * t / threads * COLUMNS;
        let last = (panels * (t + 1) / threads * COLUMNS).min(n);
        // SAFETY: the CPU has AVX2 and FMA (asserted above); the threads write disjoint column
        // ranges `first..last` of `out`, which is `[m, n]`, and `x`, `w` have the shapes asserted.
        unsafe { columns_times(x, m, w, k, n, first..last, out_ptr.get()) };
    };
    if threads == 1 {
        share(0);
    } else {
        rayon::broadcast(|context| {
            if context.index() < threads {
                share(context.index());
            }
        });
    }
    // SAFETY: the threads' column ranges cover `0..n`, and `columns_times` writes every row of
    // its columns in the first depth pass.
    unsafe { out.set_len(m * n) };
    out
}

/// The output pointer, shared by threads that write disjoint columns.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);

// SAFETY: each thread writes a disjoint set of elements (see `rows_times`).
unsafe impl Send for SharedOut {}
// SAFETY: as above.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Columns `columns` of `x · w` into `out` (`[m, n]`). The first depth pass writes these columns
/// of every row without reading them, so `out` need not be initialized.
///
/// # Safety
/// The CPU has AVX2 and FMA; `out` points to room for `m × n` values of which no other thread
/// writes these columns; `columns` lies within `0..n`.
#[target_feature(enable = "avx2,fma")]
unsafe fn columns_times(
    x: &[f32],
    m: usize,
    w: &[f32],
    k: usize,
    n: usize,
    columns: std::ops::Range<usize>,
    out: *mut f32,
) {
    let tiles = m.div_ceil(ROWS);
    let mut rows_packed = vec![0.0f32; tiles * ROWS * DEPTH];
    let mut panels = vec![0.0f32; DEPTH * BLOCK];
    let mut edge = [0.0f32; ROWS * COLUMNS];
    for depth_start in (0..k).step_by(DEPTH) {
        let depth = DEPTH.min(k - depth_start);
        pack_rows(x, m, k, depth_start, depth, &mut rows_packed);
        let accumulate = depth_start > 0;
        for block_first in columns.clone().step_by(BLOCK) {
            let block_width = BLOCK.min(columns.end - block_first);
            pack_panels(w, n, depth_start, depth, block_first..block_first + block_width, &mut panels);
            for (index, panel) in
                panels.chunks_exact(depth * COLUMNS).take(block_width.div_ceil(COLUMNS)).enumerate()
            {
                let first = block_first + index * COLUMNS;
                let width = COLUMNS.min(block_first + block_width - first);
                for tile in 0..tiles {
                    let rows = ROWS.min(m - tile * ROWS);
                    let a = &rows_packed[tile * ROWS * depth..(tile + 1) * ROWS * depth];
                    // SAFETY: the tile's rows and columns lie inside `out` (`[m, n]`), which only
                    // this thread writes in these columns; `edge` holds a whole tile.
                    unsafe {
                        let c = out.add(tile * ROWS * n + first);
                        if width == COLUMNS {
                            kernel(depth, a, panel, c, n, rows, accumulate);
                        } else {
                            for r in 0..rows {
                                for j in 0..width {
                                    edge[r * COLUMNS + j] = if accumulate { *c.add(r * n + j) } else { 0.0 };
                                }
                            }
                            kernel(depth, a, panel, edge.as_mut_ptr(), COLUMNS, rows, true);
                            for r in 0..rows {
                                for j in 0..width {
                                    *c.add(r * n + j) = edge[r * COLUMNS + j];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Copies `x[.., depth_start..depth_start + depth]` tile by tile, `[tile][d][row]`, rows past `m`
/// as zeros.
fn pack_rows(x: &[f32], m: usize, k: usize, depth_start: usize, depth: usize, packed: &mut [f32]) {
    for (tile, block) in packed.chunks_exact_mut(ROWS * depth).enumerate().take(m.div_ceil(ROWS)) {
        for r in 0..ROWS {
            let row = tile * ROWS + r;
            if row < m {
                let values = &x[row * k + depth_start..row * k + depth_start + depth];
                for (d, &value) in values.iter().enumerate() {
                    block[d * ROWS + r] = value;
                }
            } else {
                for d in 0..depth {
                    block[d * ROWS + r] = 0.0;
                }
            }
        }
    }
}

/// Copies the weight columns `block` of rows `depth_start..depth_start + depth` as panels of
/// [`COLUMNS`], each `[d][column]` (`depth × COLUMNS` values), columns past the block as zeros.
/// Each weight row is read as one stretch of the block's width, which the prefetchers follow.
fn pack_panels(
    w: &[f32],
    n: usize,
    depth_start: usize,
    depth: usize,
    block: std::ops::Range<usize>,
    panels: &mut [f32],
) {
    let panel_len = depth * COLUMNS;
    for d in 0..depth {
        let row = (depth_start + d) * n;
        let source = &w[row + block.start..row + block.end];
        for (index, values) in source.chunks(COLUMNS).enumerate() {
            let target = &mut panels[index * panel_len + d * COLUMNS..index * panel_len + (d + 1) * COLUMNS];
            if let (Ok(target), Ok(values)) =
                (<&mut [f32; COLUMNS]>::try_from(&mut *target), <&[f32; COLUMNS]>::try_from(values))
            {
                // A copy of known length, inlined (a call to `memmove` per 64 bytes costs more).
                *target = *values;
            } else {
                target[..values.len()].copy_from_slice(values);
                target[values.len()..].fill(0.0);
            }
        }
    }
}

/// One register tile: `c[r][..16] (+)= Σ_d a[d][r] · panel[d][..16]` for the first `rows` rows.
///
/// # Safety
/// The CPU has AVX2 and FMA; `a` holds `depth × ROWS` values, `panel` at least `depth × COLUMNS`;
/// `c` points to `rows` rows of 16 values, `ldc` apart.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel(
    depth: usize,
    a: &[f32],
    panel: &[f32],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    accumulate: bool,
) {
    assert!(a.len() >= depth * ROWS && panel.len() >= depth * COLUMNS, "a tile of {depth} steps");
    // The tile's rows of `c` are read (or written) only after the depth loop: ask for them now,
    // so that they arrive during the loop (they lie `ldc` apart, rarely in the L1 or L2 cache).
    for r in 0..rows {
        let row = c.wrapping_add(r * ldc).cast::<i8>();
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(4 * COLUMNS - 1));
    }
    let mut acc: [__m256; 2 * ROWS] = [_mm256_setzero_ps(); 2 * ROWS];
    let (mut xs, mut w) = (a.as_ptr(), panel.as_ptr());
    for _ in 0..depth {
        // SAFETY: `d < depth` steps in: `w` has 16 values left in `panel`, `xs` 6 in `a`
        // (asserted above).
        unsafe {
            let (w0, w1) = (_mm256_loadu_ps(w), _mm256_loadu_ps(w.add(8)));
            for r in 0..ROWS {
                let value = _mm256_broadcast_ss(&*xs.add(r));
                acc[2 * r] = _mm256_fmadd_ps(value, w0, acc[2 * r]);
                acc[2 * r + 1] = _mm256_fmadd_ps(value, w1, acc[2 * r + 1]);
            }
            xs = xs.add(ROWS);
            w = w.add(COLUMNS);
        }
    }
    for (r, pair) in acc.chunks_exact(2).enumerate() {
        if r < rows {
            // SAFETY: row `r` of `c` holds 16 values (the caller's contract).
            unsafe {
                let row = c.add(r * ldc);
                let (mut y0, mut y1) = (pair[0], pair[1]);
                if accumulate {
                    y0 = _mm256_add_ps(_mm256_loadu_ps(row), y0);
                    y1 = _mm256_add_ps(_mm256_loadu_ps(row.add(8)), y1);
                }
                _mm256_storeu_ps(row, y0);
                _mm256_storeu_ps(row.add(8), y1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * 7919 + seed * 104_729) % 401) as f32 / 200.0 - 1.0).collect()
    }

    #[test]
    fn matches_a_plain_product_on_every_edge() {
        if !available() {
            return;
        }
        // Rows not a multiple of 6, columns not a multiple of 16, depth over two passes.
        for (m, k, n) in [(17, 300, 37), (6, 256, 16), (40, 513, 200), (1, 5, 3)] {
            let (x, w) = (values(m * k, 1), values(k * n, 2));
            let got = rows_times(&x, m, &w, k, n);
            for i in 0..m {
                for j in 0..n {
                    let exact: f64 = (0..k).map(|l| f64::from(x[i * k + l]) * f64::from(w[l * n + j])).sum();
                    let error = (f64::from(got[i * n + j]) - exact).abs();
                    assert!(error < 1e-4, "[{m}×{k}×{n}] [{i}, {j}]: {} vs {exact}", got[i * n + j]);
                }
            }
        }
    }

    #[test]
    fn a_row_does_not_depend_on_the_other_rows() {
        if !available() {
            return;
        }
        let (m, k, n) = (50, 700, 300);
        let (x, w) = (values(m * k, 3), values(k * n, 4));
        let all = rows_times(&x, m, &w, k, n);
        for i in [0, 7, 49] {
            let alone = rows_times(&x[i * k..(i + 1) * k], 1, &w, k, n);
            assert_eq!(alone, all[i * n..(i + 1) * n], "row {i}");
        }
    }
}
