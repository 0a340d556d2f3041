//! The inner loop of the block products: for weight rows `j` of a tile and every row `x_i`,
//! `Σ_b d_b · (x_i,b · q_b)` over the row's blocks `b` — the quants `q` as small integers, never
//! dequantized to a weight value — plus, for Q4_1, `Σ_b m_b · Σx_i,b`.
//!
//! Per block, the 32 products are summed in 8 lanes (`x[l]·q[l] + x[l+8]·q[l+8] + …`), each lane
//! accumulates `d · lane` over the blocks, and the 8 lanes are added in order at the end. With
//! AVX2 and FMA (checked at run time) this runs on 256-bit vectors, with the multiply-adds
//! fused; elsewhere the same order in plain `f32` arithmetic.

use std::ops::Range;

use super::{BLOCK, BlockMatrix};
use crate::quantized::GgmlType;

/// Lanes of the per-block sums.
const LANES: usize = 8;

/// The rows `x` of a block product: `m` rows of `k` values, and for Q4_1 the sum of each of their
/// blocks of 32 values (`[m, k / 32]`; empty for other types).
#[derive(Debug, Clone, Copy)]
pub(super) struct Rows<'a> {
    pub(super) values: &'a [f32],
    pub(super) sums: &'a [f32],
    pub(super) m: usize,
}

impl<'a> Rows<'a> {
    /// Rows `first..first + count` of these, for a matrix of `k` columns.
    fn part(self, first: usize, count: usize, k: usize) -> Rows<'a> {
        let per_row = k / BLOCK;
        let sums = if self.sums.is_empty() {
            self.sums
        } else {
            &self.sums[first * per_row..(first + count) * per_row]
        };
        Rows { values: &self.values[first * k..(first + count) * k], sums, m: count }
    }
}

/// `out[i, c] = Σ_b d_b · (x_i,b · q_b)` for the weight rows `rows` (`c` counts from
/// `rows.start`), `out` `[m, rows.len()]`; for Q4_1 plus `Σ_b m_b · Σx_i,b`.
pub(super) fn block_dots(q: &BlockMatrix, x: Rows<'_>, rows: Range<usize>, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        unsafe { x86::block_dots(q, x, rows, out) };
        return;
    }
    portable::block_dots(q, x, rows, out);
}

/// Plain `f32` arithmetic, in the same order as the vector version.
mod portable {
    use super::*;

    pub(super) fn block_dots(q: &BlockMatrix, x: Rows<'_>, rows: Range<usize>, out: &mut [f32]) {
        let Rows { values: x, sums, m } = x;
        let k = q.cols;
        let per_row = k / BLOCK;
        let quant_bytes = q.quant_bytes();
        let width = rows.len();
        let mut quants = [0.0f32; BLOCK];
        let mut acc = vec![[0.0f32; LANES]; m];
        let mut minimums = vec![0.0f32; m];
        for (c, j) in rows.enumerate() {
            acc.iter_mut().for_each(|lanes| *lanes = [0.0; LANES]);
            minimums.fill(0.0);
            for b in j * per_row..(j + 1) * per_row {
                unpack(q.ty, &q.quants[b * quant_bytes..(b + 1) * quant_bytes], &mut quants);
                let d = q.scales[b];
                let at = (b - j * per_row) * BLOCK;
                for (i, lanes) in acc.iter_mut().enumerate() {
                    let x = &x[i * k + at..i * k + at + BLOCK];
                    for (l, lane) in lanes.iter_mut().enumerate() {
                        let mut sum = x[l] * quants[l];
                        for part in 1..BLOCK / LANES {
                            sum += x[l + part * LANES] * quants[l + part * LANES];
                        }
                        *lane += d * sum;
                    }
                    if q.ty == GgmlType::Q4_1 {
                        minimums[i] += q.mins[b] * sums[i * per_row + b - j * per_row];
                    }
                }
            }
            for (i, lanes) in acc.iter().enumerate() {
                out[i * width + c] = lanes.iter().sum::<f32>() + minimums[i];
            }
        }
    }

    /// The 32 quants of a block as numbers: Q4_1's nibbles, Q4_0's nibbles minus 8, Q8_0's
    /// signed bytes; value `l < 16` of a 4-bit block is the low nibble of byte `l`, value
    /// `l + 16` its high nibble.
    pub(super) fn unpack(ty: GgmlType, bytes: &[u8], quants: &mut [f32; BLOCK]) {
        match ty {
            GgmlType::Q8_0 => {
                for (q, &byte) in quants.iter_mut().zip(bytes) {
                    *q = f32::from(byte.cast_signed());
                }
            }
            _ => {
                let offset = if ty == GgmlType::Q4_0 { 8 } else { 0 };
                let (low, high) = quants.split_at_mut(BLOCK / 2);
                for ((&byte, low), high) in bytes.iter().zip(low).zip(high) {
                    *low = f32::from(i16::from(byte & 0x0F) - offset);
                    *high = f32::from(i16::from(byte >> 4) - offset);
                }
            }
        }
    }
}

/// AVX2 + FMA: a block's quants become four vectors of 8 `f32` with two instructions per vector,
/// and each row's block sum is one multiply and three fused multiply-adds.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::*;

    /// Block types, as const parameters of [`by_groups`] and [`group_dots`].
    const Q4_1: u8 = 0;
    const Q4_0: u8 = 1;
    const Q8_0: u8 = 2;

    /// See [`super::block_dots`].
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn block_dots(q: &BlockMatrix, x: Rows<'_>, rows: Range<usize>, out: &mut [f32]) {
        match q.ty {
            GgmlType::Q4_1 => by_groups::<Q4_1>(q, x, rows, out),
            GgmlType::Q4_0 => by_groups::<Q4_0>(q, x, rows, out),
            _ => by_groups::<Q8_0>(q, x, rows, out),
        }
    }

    /// The rows of `x` in groups of up to four, whose accumulators stay in registers; each
    /// group unpacks the quants again. A row is summed the same way in every group size.
    #[target_feature(enable = "avx2,fma")]
    fn by_groups<const TYPE: u8>(q: &BlockMatrix, x: Rows<'_>, rows: Range<usize>, out: &mut [f32]) {
        let mut first = 0;
        while first < x.m {
            let group = (x.m - first).min(4);
            let part = x.part(first, group, q.cols);
            let out = &mut out[first * rows.len()..(first + group) * rows.len()];
            match group {
                1 => group_dots::<TYPE, 1>(q, part, rows.clone(), out),
                2 => group_dots::<TYPE, 2>(q, part, rows.clone(), out),
                3 => group_dots::<TYPE, 3>(q, part, rows.clone(), out),
                _ => group_dots::<TYPE, 4>(q, part, rows.clone(), out),
            }
            first += group;
        }
    }

    /// [`block_dots`] for `R` rows of `x`.
    #[target_feature(enable = "avx2,fma")]
    fn group_dots<const TYPE: u8, const R: usize>(
        q: &BlockMatrix,
        x: Rows<'_>,
        rows: Range<usize>,
        out: &mut [f32],
    ) {
        let Rows { values: x, sums, .. } = x;
        let k = q.cols;
        let per_row = k / BLOCK;
        let quant_bytes = q.quant_bytes();
        let width = rows.len();
        assert!(x.len() == R * k && (TYPE != Q4_1 || sums.len() == R * per_row));
        for (c, j) in rows.enumerate() {
            let mut acc = [_mm256_setzero_ps(); R];
            let mut minimums = [0.0f32; R];
            for at in 0..per_row {
                let b = j * per_row + at;
                let quants = unpack::<TYPE>(&q.quants[b * quant_bytes..(b + 1) * quant_bytes]);
                let d = _mm256_set1_ps(q.scales[b]);
                for i in 0..R {
                    let x = &x[i * k + at * BLOCK..i * k + (at + 1) * BLOCK];
                    let part = |p: usize| load(&x[p * LANES..(p + 1) * LANES]);
                    let mut sum = _mm256_mul_ps(part(0), quants[0]);
                    sum = _mm256_fmadd_ps(part(1), quants[1], sum);
                    sum = _mm256_fmadd_ps(part(2), quants[2], sum);
                    sum = _mm256_fmadd_ps(part(3), quants[3], sum);
                    acc[i] = _mm256_fmadd_ps(d, sum, acc[i]);
                    if TYPE == Q4_1 {
                        minimums[i] = q.mins[b].mul_add(sums[i * per_row + at], minimums[i]);
                    }
                }
            }
            for i in 0..R {
                let mut lanes = [0.0f32; LANES];
                // SAFETY: `lanes` has room for the 8 values.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[i]) };
                out[i * width + c] = lanes.iter().sum::<f32>() + minimums[i];
            }
        }
    }

    /// Eight `f32` from `values` (at least 8 long).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn load(values: &[f32]) -> __m256 {
        assert!(values.len() >= LANES);
        // SAFETY: 8 values are readable (asserted); `loadu` takes any alignment.
        unsafe { _mm256_loadu_ps(values.as_ptr()) }
    }

    /// Sixteen bytes from `bytes` (at least 16 long).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn load_bytes(bytes: &[u8]) -> __m128i {
        assert!(bytes.len() >= 16);
        // SAFETY: 16 bytes are readable (asserted); `loadu` takes any alignment.
        unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
    }

    /// The 32 quants of a block (its bytes after the scale) as four vectors of values
    /// `0..8, 8..16, 16..24, 24..32`, as [`portable::unpack`] reads them.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn unpack<const TYPE: u8>(bytes: &[u8]) -> [__m256; 4] {
        {
            let signed = |v: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
            let unsigned = |v: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
            if TYPE == Q8_0 {
                let (a, b) = (load_bytes(&bytes[..16]), load_bytes(&bytes[16..]));
                return [
                    signed(a),
                    signed(_mm_srli_si128::<8>(a)),
                    signed(b),
                    signed(_mm_srli_si128::<8>(b)),
                ];
            }
            let packed = load_bytes(bytes);
            let mask = _mm_set1_epi8(0x0F);
            let low = _mm_and_si128(packed, mask);
            let high = _mm_and_si128(_mm_srli_epi16::<4>(packed), mask);
            if TYPE == Q4_0 {
                let eight = _mm_set1_epi8(8);
                let (low, high) = (_mm_sub_epi8(low, eight), _mm_sub_epi8(high, eight));
                return [
                    signed(low),
                    signed(_mm_srli_si128::<8>(low)),
                    signed(high),
                    signed(_mm_srli_si128::<8>(high)),
                ];
            }
            [
                unsigned(low),
                unsigned(_mm_srli_si128::<8>(low)),
                unsigned(high),
                unsigned(_mm_srli_si128::<8>(high)),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of every byte value pattern, for `n` rows of `k` values.
    fn matrix(ty: GgmlType, n: usize, k: usize) -> BlockMatrix {
        let block_bytes = super::super::block_bytes(ty).unwrap();
        let bytes = (0..n * k / BLOCK * block_bytes).map(|i| (i * 37 + i / 7) as u8).collect();
        let mut q = BlockMatrix::new(ty, n, k, bytes).unwrap();
        // Scales and minimums from the pattern can be huge or NaN: use tame ones.
        q.scales.iter_mut().enumerate().for_each(|(b, d)| *d = 0.01 + (b % 5) as f32 * 0.002);
        q.mins.iter_mut().enumerate().for_each(|(b, m)| *m = -0.05 + (b % 3) as f32 * 0.01);
        q
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_vector_version_matches_the_portable_one() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let (m, k, n) = (7, 128, 20);
            let q = matrix(ty, n, k);
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0).collect();
            let (mut vector, mut plain) = (vec![0.0; m * 15], vec![0.0; m * 15]);
            // SAFETY: the CPU has AVX2 and FMA (checked above).
            let sums: Vec<f32> = x.chunks_exact(BLOCK).map(|b| b.iter().sum()).collect();
            let rows = Rows { values: &x, sums: &sums, m };
            unsafe { x86::block_dots(&q, rows, 5..20, &mut vector) };
            portable::block_dots(&q, rows, 5..20, &mut plain);
            for (v, p) in vector.iter().zip(&plain) {
                assert!((v - p).abs() <= 1e-5 * p.abs().max(1.0), "{ty}: {v} vs {p}");
            }
        }
    }
}
