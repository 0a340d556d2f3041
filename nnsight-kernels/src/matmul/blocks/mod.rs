//! Projections read from their GGUF blocks: products with few rows that stream a weight's
//! quantized blocks (Q4_0, Q4_1, Q8_0: 0.56–1.06 bytes per weight) instead of its `f32` values
//! (4 bytes). A decoding step reads every weight once, so it is bound by memory bandwidth: on
//! SmolLM2's Q4_1 file this reads ≈ 96 MB per token instead of ≈ 540 MB.
//!
//! The blocks hold exactly the weights the `f32` model has (the loader dequantized the same
//! bytes), and the products are computed from them without rounding the weights again: for a
//! block of 32 values `w = d·q + m`, `x · w = d·(x · q) + m·Σx`, with `q` the small integers of
//! the block. The result equals the `f32` product up to the order and fusing of the sums
//! (float rounding, ≈ 1e-7 relative). Every output element is summed in the same order whatever
//! the number of rows, so a row's result does not depend on the other rows.
//!
//! The module that uses a weight owns its blocks ([`WeightBlocks`]), which a weight changed after
//! loading no longer matches: it is read from its `f32` values again.

mod row_dots;
mod weight_blocks;

use half::f16;
use row_dots::Rows;

pub use weight_blocks::{Stored, WeightBlocks};

use super::kernel::{run_tasks, scatter, tile_width};
use crate::quantized::GgmlType;

/// Values per block, for every block type here.
const BLOCK: usize = 32;

/// A matrix `[rows, cols]` (a weight stored `[out, in]`) as GGUF blocks along its rows, unpacked
/// for the kernel: each block's scale (and minimum) as `f32`, its quants as bytes.
#[derive(Debug)]
pub struct BlockMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    /// `d` of every block, row-major.
    scales: Vec<f32>,
    /// `m` of every block (Q4_1 only).
    mins: Vec<f32>,
    /// The quants: 16 bytes of nibbles (Q4_0, Q4_1) or 32 signed bytes (Q8_0) per block.
    quants: Vec<u8>,
}

impl BlockMatrix {
    /// The matrix of `rows` × `cols` values of type `ty` in `bytes` (GGUF blocks); `None` for a
    /// type this kernel does not read, or sizes that do not match.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, bytes: Vec<u8>) -> Option<Self> {
        let block_bytes = block_bytes(ty)?;
        let fits = cols.is_multiple_of(BLOCK) && bytes.len() == rows * cols / BLOCK * block_bytes;
        if !fits {
            return None;
        }
        let half = |lo: u8, hi: u8| f16::from_le_bytes([lo, hi]).to_f32();
        let blocks = bytes.chunks_exact(block_bytes);
        let scales = blocks.clone().map(|b| half(b[0], b[1])).collect();
        let (mins, quants) = match ty {
            GgmlType::Q4_1 => (
                blocks.clone().map(|b| half(b[2], b[3])).collect(),
                blocks.flat_map(|b| &b[4..]).copied().collect(),
            ),
            _ => (Vec::new(), blocks.flat_map(|b| &b[2..]).copied().collect()),
        };
        Some(BlockMatrix { ty, rows, cols, scales, mins, quants })
    }

    /// Bytes of quants per block.
    fn quant_bytes(&self) -> usize {
        if self.ty == GgmlType::Q8_0 { BLOCK } else { BLOCK / 2 }
    }
}

/// Bytes per block of the types the kernel reads.
fn block_bytes(ty: GgmlType) -> Option<usize> {
    match ty {
        GgmlType::Q4_0 => Some(18),
        GgmlType::Q4_1 => Some(20),
        GgmlType::Q8_0 => Some(34),
        _ => None,
    }
}

/// `x · qᵀ` for `x` `[m, k]` and the block matrix `q` `[n, k]`: `[m, n]`.
///
/// Split into tiles of output columns (weight rows), which the calling thread and rayon's pool
/// take as in [`rows_times_transposed`](super::kernel::rows_times_transposed).
pub(crate) fn rows_times_blocks(x: &[f32], m: usize, q: &BlockMatrix) -> Vec<f32> {
    let (n, k) = (q.rows, q.cols);
    assert_eq!(x.len(), m * k, "x is [{m}, {k}]");
    if m == 0 || n == 0 {
        return vec![0.0; m * n];
    }
    // Q4_1's `m·Σx` terms need the sum of every block of `x`.
    let sums: Vec<f32> = if q.ty == GgmlType::Q4_1 {
        x.chunks_exact(BLOCK).map(|block| block.iter().sum()).collect()
    } else {
        Vec::new()
    };
    let tile = tile_width(n);
    let tiles = run_tasks(n.div_ceil(tile), |t| {
        let first = t * tile;
        let rows = first..n.min(first + tile);
        let mut out = vec![0.0; m * rows.len()];
        row_dots::block_dots(q, Rows { values: x, sums: &sums, m }, rows, &mut out);
        out
    });
    scatter(&tiles, m, n, tile)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantized::dequantize_block;

    /// Random-looking blocks of type `ty` for an `[n, k]` matrix, and their dequantized values.
    fn blocks(ty: GgmlType, n: usize, k: usize) -> (BlockMatrix, Vec<f32>) {
        let block_bytes = block_bytes(ty).unwrap();
        let mut bytes = Vec::new();
        for b in 0..n * k / BLOCK {
            let mut block: Vec<u8> = (0..block_bytes).map(|i| (b * 31 + i * 17) as u8).collect();
            let scale = f16::from_f32(0.01 + (b % 7) as f32 * 0.003).to_le_bytes();
            block[..2].copy_from_slice(&scale);
            if ty == GgmlType::Q4_1 {
                block[2..4].copy_from_slice(&f16::from_f32(-0.05).to_le_bytes());
            }
            bytes.extend(block);
        }
        let mut values = vec![0.0; n * k];
        for (block, out) in bytes.chunks_exact(block_bytes).zip(values.chunks_exact_mut(BLOCK)) {
            dequantize_block(ty, block, out.try_into().unwrap());
        }
        (BlockMatrix::new(ty, n, k, bytes).unwrap(), values)
    }

    /// `x · wᵀ` in `f64`, rounded to `f32`.
    fn reference(x: &[f32], m: usize, w: &[f32], k: usize, n: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(m * n);
        for row in x.chunks_exact(k).take(m) {
            for weights in w.chunks_exact(k).take(n) {
                let dot: f64 = row.iter().zip(weights).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
                out.push(dot as f32);
            }
        }
        out
    }

    fn x(m: usize, k: usize) -> Vec<f32> {
        (0..m * k).map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0).collect()
    }

    #[test]
    fn blocks_give_the_product_with_their_dequantized_values() {
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            for (m, k, n) in [(1, 32, 1), (3, 64, 70), (16, 576, 200), (1, 1536, 576)] {
                let (q, values) = blocks(ty, n, k);
                let x = x(m, k);
                let expected = reference(&x, m, &values, k, n);
                let got = rows_times_blocks(&x, m, &q);
                let scale = expected.iter().fold(1.0f32, |a, b| a.max(b.abs()));
                let worst = expected.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(worst <= 1e-6 * scale, "{ty} [{m},{k}]·[{n},{k}]ᵀ: {worst} (largest {scale})");
            }
        }
    }

    #[test]
    fn a_row_does_not_depend_on_the_other_rows() {
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let (k, n) = (96, 150);
            let (q, _) = blocks(ty, n, k);
            let x = x(5, k);
            let batch = rows_times_blocks(&x, 5, &q);
            let alone = rows_times_blocks(&x[3 * k..4 * k], 1, &q);
            assert_eq!(&batch[3 * n..4 * n], &alone[..], "{ty}");
        }
    }

    #[test]
    fn sizes_and_types_are_checked() {
        assert!(BlockMatrix::new(GgmlType::Q4_1, 2, 32, vec![0; 40]).is_some());
        assert!(BlockMatrix::new(GgmlType::Q4_1, 2, 32, vec![0; 39]).is_none());
        assert!(BlockMatrix::new(GgmlType::Q4_1, 2, 16, vec![0; 20]).is_none());
        assert!(BlockMatrix::new(GgmlType::F32, 1, 32, vec![0; 128]).is_none());
    }
}
