//! Products with many rows on x86-64 CPUs with AVX2 and FMA: a register-tiled kernel for the
//! medium-sized products of patching sweeps and prompts (tens to hundreds of rows against a
//! projection), where the general-purpose `gemm` reaches about a third of this machine's peak.
//!
//! The output is computed in tiles of [`ROWS`] × [`COLUMNS`] held in twelve vector registers; each
//! step of the depth loop loads two vectors of the weight and broadcasts one value per row, so
//! every load feeds six fused multiply-adds. The weight is copied into the order the kernel reads
//! it, one panel ([`DEPTH`] × [`COLUMNS`], 16 KiB) at a time, which then stays in the L1 cache
//! while every row tile uses it: a weight row is 0.75–12 KiB apart from the next, so the rows of
//! an unpacked panel would fall into a handful of cache sets and evict one another. The weight
//! rows of the next panel are prefetched while the current one is in use, a share per row tile,
//! so that reading the weight from memory overlaps the arithmetic. The rows of `x` are read in
//! place, [`ROW_BLOCK`] rows at a time, which stay in the L2 cache while every panel of a column
//! block uses them.
//!
//! Every output element is the sum over depth passes (in order) of fused multiply-add chains (in
//! order), whatever the number of rows and threads: a row's result does not depend on the rest of
//! the batch.

use std::arch::x86_64::{
    __m256, _MM_HINT_T0, _MM_HINT_T1, _mm_prefetch, _mm256_add_ps, _mm256_broadcast_ss, _mm256_fmadd_ps,
    _mm256_loadu_ps, _mm256_setzero_ps, _mm256_storeu_ps,
};
use std::cell::RefCell;
use std::ops::Range;

use super::many_rows::THREADED_FROM;

/// Rows of a register tile.
const ROWS: usize = 6;
/// Columns of a register tile: two vectors of eight.
const COLUMNS: usize = 16;
/// Depth of one pass: a packed weight panel holds `DEPTH × COLUMNS` values (16 KiB, in L1).
const DEPTH: usize = 256;
/// Rows of `x` that every panel of a column block passes over before the next rows: at most
/// `ROW_BLOCK × DEPTH` values (144 KiB, in L2).
const ROW_BLOCK: usize = 144;
/// Weight columns packed for one depth pass, at most: `DEPTH × COLUMN_BLOCK` values (4 MiB).
const COLUMN_BLOCK: usize = 4096;

thread_local! {
    /// The packed weight panels of this thread's products, kept from one product to the next (a
    /// sweep makes hundreds): no allocation, zeroing or page faults per product.
    static PANELS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

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
        let product = Product { x, m, w, k, n, out: out_ptr.get() };
        // SAFETY: the CPU has AVX2 and FMA (asserted above); the threads write disjoint column
        // ranges `first..last` of `out`, which has room for `[m, n]`, and `x`, `w` have the
        // shapes asserted.
        unsafe { columns_times(&product, first..last) };
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

/// One product `x · w` (`x` `[m, k]`, `w` `[k, n]`) into `out` (room for `[m, n]`).
struct Product<'a> {
    x: &'a [f32],
    m: usize,
    w: &'a [f32],
    k: usize,
    n: usize,
    out: *mut f32,
}

/// Columns `columns` of the product. The first depth pass writes these columns of every row
/// without reading them, so `out` need not be initialized.
///
/// # Safety
/// The CPU has AVX2 and FMA; no other thread writes these columns of `out`; `columns` lies
/// within `0..n`.
#[target_feature(enable = "avx2,fma")]
unsafe fn columns_times(product: &Product<'_>, columns: Range<usize>) {
    let Product { x, m, w, k, n, out } = *product;
    PANELS.with_borrow_mut(|panels| {
        for depth_start in (0..k).step_by(DEPTH) {
            let depth = DEPTH.min(k - depth_start);
            let panel_len = depth * COLUMNS;
            let accumulate = depth_start > 0;
            for block_first in columns.clone().step_by(COLUMN_BLOCK) {
                let block = block_first..(block_first + COLUMN_BLOCK).min(columns.end);
                let block_panels = block.len().div_ceil(COLUMNS);
                if panels.len() < block_panels * panel_len {
                    panels.resize(block_panels * panel_len, 0.0);
                }
                for row_first in (0..m).step_by(ROW_BLOCK) {
                    let tiles = ROW_BLOCK.min(m - row_first).div_ceil(ROWS);
                    // The first row block packs each panel just before using it.
                    let packing = row_first == 0;
                    for index in 0..block_panels {
                        let first = block.start + index * COLUMNS;
                        let width = COLUMNS.min(block.end - first);
                        let panel = &mut panels[index * panel_len..(index + 1) * panel_len];
                        if packing {
                            pack_panel(w, n, depth_start..depth_start + depth, first..first + width, panel);
                        }
                        // The next panel's columns, whose weight rows the tiles prefetch.
                        let next = first + COLUMNS;
                        let next =
                            (packing && next < block.end).then(|| next..(next + COLUMNS).min(block.end));
                        for tile in 0..tiles {
                            if let Some(next) = next.clone() {
                                let share = depth * tile / tiles..depth * (tile + 1) / tiles;
                                let weight_rows = depth_start + share.start..depth_start + share.end;
                                prefetch_weight(w, n, weight_rows, next);
                            }
                            let row = row_first + tile * ROWS;
                            let rows = ROWS.min(m - row);
                            // Past the last row, the tile reads the last row again (not stored).
                            let rows_at: [*const f32; ROWS] = std::array::from_fn(|r| {
                                x[(row + r.min(rows - 1)) * k + depth_start..].as_ptr()
                            });
                            let tile =
                                Tile { depth, rows_at, rows, c: out.wrapping_add(row * n + first), ldc: n };
                            // SAFETY: each of `rows_at` has `depth` values of `x` left; the tile's
                            // rows and columns lie inside `out` (`[m, n]`), which only this thread
                            // writes in these columns; the CPU has AVX2 and FMA (this function's
                            // contract).
                            unsafe { tile.times(panel, width, accumulate) };
                        }
                    }
                }
            }
        }
    });
}

/// One tile of the output: `rows` rows (at most [`ROWS`]) from `c`, `ldc` apart, computed from
/// the rows of `x` at `rows_at` over `depth` steps.
struct Tile {
    depth: usize,
    rows_at: [*const f32; ROWS],
    rows: usize,
    c: *mut f32,
    ldc: usize,
}

impl Tile {
    /// Writes (or adds to, when `accumulate`) the tile's first `width` columns.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; each of `rows_at` points to `depth` values; the tile's `rows`
    /// rows of `width` values lie in memory this thread may write; `panel` holds at least
    /// `depth × COLUMNS` values.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn times(&self, panel: &[f32], width: usize, accumulate: bool) {
        let Tile { depth, rows_at, rows, c, ldc } = *self;
        if width == COLUMNS {
            // SAFETY: the caller's contract.
            unsafe { kernel(depth, rows_at, panel, c, ldc, rows, accumulate) };
            return;
        }
        // Fewer columns than a register tile: through a whole tile on the stack.
        let mut edge = [0.0f32; ROWS * COLUMNS];
        for r in 0..rows {
            for j in 0..width {
                // SAFETY: row `r`, column `j < width` of the tile (the caller's contract).
                edge[r * COLUMNS + j] = if accumulate { unsafe { *c.add(r * ldc + j) } } else { 0.0 };
            }
        }
        // SAFETY: `edge` holds `ROWS` rows of `COLUMNS`; the rest is the caller's contract.
        unsafe { kernel(depth, rows_at, panel, edge.as_mut_ptr(), COLUMNS, rows, true) };
        for r in 0..rows {
            for j in 0..width {
                // SAFETY: as above.
                unsafe { *c.add(r * ldc + j) = edge[r * COLUMNS + j] };
            }
        }
    }
}

/// Copies the weight columns `columns` (at most [`COLUMNS`]) of rows `rows` into `panel`,
/// `[d][column]`, columns past them as zeros.
fn pack_panel(w: &[f32], n: usize, rows: Range<usize>, columns: Range<usize>, panel: &mut [f32]) {
    for (d, target) in rows.zip(panel.chunks_exact_mut(COLUMNS)) {
        let values = &w[d * n + columns.start..d * n + columns.end];
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

/// Asks for the weight columns `columns` of rows `rows` to be brought into the L2 cache.
fn prefetch_weight(w: &[f32], n: usize, rows: Range<usize>, columns: Range<usize>) {
    for d in rows {
        let values = &w[d * n + columns.start..d * n + columns.end];
        for at in [values.as_ptr(), values[values.len() - 1..].as_ptr()] {
            // SAFETY: a prefetch reads nothing and writes nothing; the address lies inside `w`.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(at.cast::<i8>()) };
        }
    }
}

/// One register tile: `c[r][..16] (+)= Σ_d rows_at[r][d] · panel[d][..16]` for the first `rows`
/// rows.
///
/// # Safety
/// The CPU has AVX2 and FMA; each of `rows_at` points to `depth` values, `panel` holds at least
/// `depth × COLUMNS`; `c` points to `rows` rows of 16 values, `ldc` apart.
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel(
    depth: usize,
    rows_at: [*const f32; ROWS],
    panel: &[f32],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    accumulate: bool,
) {
    assert!(panel.len() >= depth * COLUMNS, "a panel of {depth} steps");
    // The tile's rows of `c` are read (or written) only after the depth loop: ask for them now,
    // so that they arrive during the loop (they lie `ldc` apart, rarely in the L1 or L2 cache).
    for r in 0..rows {
        let row = c.wrapping_add(r * ldc).cast::<i8>();
        _mm_prefetch::<_MM_HINT_T0>(row);
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(4 * COLUMNS - 1));
    }
    let mut acc: [__m256; 2 * ROWS] = [_mm256_setzero_ps(); 2 * ROWS];
    let mut w = panel.as_ptr();
    for d in 0..depth {
        // SAFETY: `d < depth`: `w` has 16 values left in `panel` (asserted above), each row of
        // `rows_at` a value at `d` (the caller's contract).
        unsafe {
            let (w0, w1) = (_mm256_loadu_ps(w), _mm256_loadu_ps(w.add(8)));
            for (r, row) in rows_at.iter().enumerate() {
                let value = _mm256_broadcast_ss(&*row.add(d));
                acc[2 * r] = _mm256_fmadd_ps(value, w0, acc[2 * r]);
                acc[2 * r + 1] = _mm256_fmadd_ps(value, w1, acc[2 * r + 1]);
            }
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
        // Rows not a multiple of 6, columns not a multiple of 16, depth over two or three passes,
        // rows over two row blocks, columns over two column blocks.
        for (m, k, n) in
            [(17, 300, 37), (6, 256, 16), (40, 513, 200), (1, 5, 3), (150, 600, 70), (20, 10, 4130)]
        {
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
