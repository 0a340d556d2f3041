//! Dequantization of GGUF tensor data to `f32`: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K,
//! Q5_K and Q6_K, block by block in parallel (rayon).
//!
//! Block layouts are llama.cpp's (`ggml-common.h`; `dequantize_row_*` in `ggml-quants.c`); the
//! arithmetic is done in the same order as there and as gguf-py's `gguf/quants.py`, so results are
//! bit-identical to both (no fused multiply-adds).

use half::{bf16, f16};
use rayon::prelude::*;

use super::ggml_type::{GgmlType, QK_K};

/// Values per rayon task, at least: small enough to spread a big matrix over every core, big
/// enough that scheduling costs nothing next to the work.
const VALUES_PER_TASK: usize = 1 << 14;

/// Dequantizes `bytes`, holding `out.len()` values of type `ty`, into `out`, in parallel.
///
/// Returns `false` (and leaves `out` unspecified) when `ty` is not one of the types above, or
/// `bytes` is not exactly the size of `out.len()` values of that type.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> bool {
    match ty {
        GgmlType::F32 => blocks::<4, 1>(bytes, out, |b, y| y[0] = f32::from_le_bytes(*b)),
        GgmlType::F16 => blocks::<2, 1>(bytes, out, |b, y| y[0] = f16::from_le_bytes(*b).to_f32()),
        GgmlType::BF16 => blocks::<2, 1>(bytes, out, |b, y| y[0] = bf16::from_le_bytes(*b).to_f32()),
        GgmlType::Q8_0 => blocks::<34, 32>(bytes, out, q8_0),
        GgmlType::Q4_0 => blocks::<18, 32>(bytes, out, q4_0),
        GgmlType::Q4_1 => blocks::<20, 32>(bytes, out, q4_1),
        GgmlType::Q5_0 => blocks::<22, 32>(bytes, out, q5_0),
        GgmlType::Q4K => blocks::<144, QK_K>(bytes, out, q4_k),
        GgmlType::Q5K => blocks::<176, QK_K>(bytes, out, q5_k),
        GgmlType::Q6K => blocks::<210, QK_K>(bytes, out, q6_k),
        _ => false,
    }
}

/// (For the tests of the block kernels.) Dequantizes one 32-value block of a Q4_0, Q4_1 or Q8_0
/// tensor (`bytes` is the block) into `out`, exactly as [`dequantize`] does.
///
/// # Panics
/// For another type, or a block of the wrong size (callers check both).
#[cfg(test)]
pub(crate) fn dequantize_block(ty: GgmlType, bytes: &[u8], out: &mut [f32; 32]) {
    match ty {
        GgmlType::Q8_0 => q8_0(bytes.try_into().expect("a Q8_0 block is 34 bytes"), out),
        GgmlType::Q4_0 => q4_0(bytes.try_into().expect("a Q4_0 block is 18 bytes"), out),
        GgmlType::Q4_1 => q4_1(bytes.try_into().expect("a Q4_1 block is 20 bytes"), out),
        other => panic!("no 32-value block kernel for {other}"),
    }
}

/// Runs `block` on every `B`-byte block of `bytes` and its `N` values in `out`, in parallel.
fn blocks<const B: usize, const N: usize>(
    bytes: &[u8],
    out: &mut [f32],
    block: impl Fn(&[u8; B], &mut [f32; N]) + Sync,
) -> bool {
    let (blocks, bytes_left) = bytes.as_chunks::<B>();
    let (values, values_left) = out.as_chunks_mut::<N>();
    if !bytes_left.is_empty() || !values_left.is_empty() || blocks.len() != values.len() {
        return false;
    }
    blocks
        .par_iter()
        .zip(values.par_iter_mut())
        .with_min_len(VALUES_PER_TASK.div_ceil(N))
        .for_each(|(b, y)| block(b, y));
    true
}

fn half_at(lo: u8, hi: u8) -> f32 {
    f16::from_le_bytes([lo, hi]).to_f32()
}

/// Q8_0: `d` (f16), 32 × `i8`; `y = q * d`.
fn q8_0(b: &[u8; 34], y: &mut [f32; 32]) {
    let d = half_at(b[0], b[1]);
    for (y, &q) in y.iter_mut().zip(&b[2..]) {
        *y = f32::from(q.cast_signed()) * d;
    }
}

/// Q4_0: `d` (f16), 16 bytes; value `j` is the low nibble of byte `j`, value `j + 16` the high
/// one; `y = (q - 8) * d`.
fn q4_0(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = half_at(b[0], b[1]);
    let (low, high) = y.split_at_mut(16);
    for ((&q, low), high) in b[2..].iter().zip(low).zip(high) {
        *low = d * f32::from(i16::from(q & 0x0F) - 8);
        *high = d * f32::from(i16::from(q >> 4) - 8);
    }
}

/// Q4_1: `d` (f16), `m` (f16), 16 bytes of nibbles as in Q4_0; `y = q * d + m`.
fn q4_1(b: &[u8; 20], y: &mut [f32; 32]) {
    let d = half_at(b[0], b[1]);
    let m = half_at(b[2], b[3]);
    let (low, high) = y.split_at_mut(16);
    for ((&q, low), high) in b[4..].iter().zip(low).zip(high) {
        *low = d * f32::from(q & 0x0F) + m;
        *high = d * f32::from(q >> 4) + m;
    }
}

/// Q5_0: `d` (f16), `qh` (4 bytes, a little-endian `u32` of fifth bits), 16 bytes of nibbles as in
/// Q4_0; bit `j` of `qh` is value `j`'s fifth bit, bit `j + 16` value `j + 16`'s;
/// `y = (q - 16) * d`.
fn q5_0(b: &[u8; 22], y: &mut [f32; 32]) {
    let d = half_at(b[0], b[1]);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let (low, high) = y.split_at_mut(16);
    for (j, ((&q, low), high)) in b[6..].iter().zip(low).zip(high).enumerate() {
        let fifth_low = ((qh >> j) << 4) & 0x10;
        let fifth_high = (qh >> (j + 12)) & 0x10;
        *low = f32::from((i16::from(q & 0x0F) | fifth_low as i16) - 16) * d;
        *high = f32::from((i16::from(q >> 4) | fifth_high as i16) - 16) * d;
    }
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) of a Q4_K/Q5_K super-block, packed in
/// 12 bytes (`get_scale_min_k4` in llama.cpp): sub-blocks 0..4 in the low 6 bits of bytes
/// `j` and `j + 4`; sub-blocks 4..8 in the nibbles of bytes 8..12 plus the top 2 bits of bytes
/// 0..8.
fn scale_min(scales: &[u8; 12], j: usize) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        let scale = (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4);
        let min = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
        (scale, min)
    }
}

/// The bytes `at..at + N` of a block.
fn part<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    std::array::from_fn(|i| b[at + i])
}

/// Q4_K: `d`, `dmin` (f16), 12 bytes of scales and minimums, 128 bytes of nibbles. Each 64
/// values are 32 bytes: low nibbles for sub-block `2j`, high ones for `2j + 1`;
/// `y = d * scale * q - dmin * min`.
fn q4_k(b: &[u8; 144], y: &mut [f32; QK_K]) {
    let d = half_at(b[0], b[1]);
    let dmin = half_at(b[2], b[3]);
    let scales = part::<12>(b, 4);
    let qs = &b[16..];
    for (j, (y, qs)) in y.chunks_exact_mut(64).zip(qs.chunks_exact(32)).enumerate() {
        let (s1, m1) = scale_min(&scales, 2 * j);
        let (s2, m2) = scale_min(&scales, 2 * j + 1);
        let (d1, m1) = (d * f32::from(s1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(s2), dmin * f32::from(m2));
        let (low, high) = y.split_at_mut(32);
        for ((&q, low), high) in qs.iter().zip(low).zip(high) {
            *low = d1 * f32::from(q & 0x0F) - m1;
            *high = d2 * f32::from(q >> 4) - m2;
        }
    }
}

/// Q5_K: as Q4_K, plus 32 bytes `qh` before the nibbles: bit `s` of `qh[l]` is the fifth bit of
/// value `l` of sub-block `s`.
fn q5_k(b: &[u8; 176], y: &mut [f32; QK_K]) {
    let d = half_at(b[0], b[1]);
    let dmin = half_at(b[2], b[3]);
    let scales = part::<12>(b, 4);
    let qh = part::<32>(b, 16);
    let qs = &b[48..];
    for (j, (y, qs)) in y.chunks_exact_mut(64).zip(qs.chunks_exact(32)).enumerate() {
        let (s1, m1) = scale_min(&scales, 2 * j);
        let (s2, m2) = scale_min(&scales, 2 * j + 1);
        let (d1, m1) = (d * f32::from(s1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(s2), dmin * f32::from(m2));
        let (low, high) = y.split_at_mut(32);
        for (l, (&q, (low, high))) in qs.iter().zip(low.iter_mut().zip(high)).enumerate() {
            let h1 = ((qh[l] >> (2 * j)) & 1) << 4;
            let h2 = ((qh[l] >> (2 * j + 1)) & 1) << 4;
            *low = d1 * f32::from((q & 0x0F) | h1) - m1;
            *high = d2 * f32::from((q >> 4) | h2) - m2;
        }
    }
}

/// Q6_K: 128 bytes `ql` (low 4 bits), 64 bytes `qh` (high 2 bits), 16 `i8` scales (one per 16
/// values), `d` (f16) last. Each half of 128 values uses 64 bytes of `ql` and 32 of `qh`:
/// quarter `t` takes the low (`t < 2`) or high nibble of `ql[32 * (t % 2) + l]` and bits
/// `2t..2t+2` of `qh[l]`; `y = d * scale * (q - 32)`.
fn q6_k(b: &[u8; 210], y: &mut [f32; QK_K]) {
    let d = half_at(b[208], b[209]);
    let (ql, rest) = b.split_at(128);
    let (qh, rest) = rest.split_at(64);
    let scales = &rest[..16];
    for (h, ((y, ql), qh)) in
        y.chunks_exact_mut(128).zip(ql.chunks_exact(64)).zip(qh.chunks_exact(32)).enumerate()
    {
        for (t, y) in y.chunks_exact_mut(32).enumerate() {
            let (ql, shift) = (&ql[32 * (t % 2)..32 * (t % 2) + 32], 4 * (t / 2));
            for (l, y) in y.iter_mut().enumerate() {
                let q = ((ql[l] >> shift) & 0x0F) | (((qh[l] >> (2 * t)) & 3) << 4);
                let scale = f32::from(scales[8 * h + 2 * t + l / 16].cast_signed());
                *y = (d * scale) * f32::from(i16::from(q) - 32);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16_bytes(v: f32) -> [u8; 2] {
        f16::from_f32(v).to_le_bytes()
    }

    #[test]
    fn q4_0_nibble_order() {
        let mut b = [0u8; 18];
        b[..2].copy_from_slice(&f16_bytes(0.5));
        b[2] = 0x9F; // value 0: 15 - 8 = 7; value 16: 9 - 8 = 1
        let mut y = [0.0; 32];
        assert!(dequantize(GgmlType::Q4_0, &b, &mut y));
        assert_eq!((y[0], y[16], y[1]), (3.5, 0.5, -4.0));
    }

    #[test]
    fn q5_0_takes_its_fifth_bits_from_qh() {
        let mut b = [0u8; 22];
        b[..2].copy_from_slice(&f16_bytes(0.25));
        // qh bit 0: value 0's fifth bit; bit 16: value 16's; bit 17: value 17's.
        b[2..6].copy_from_slice(&(1u32 | (1 << 16) | (1 << 17)).to_le_bytes());
        b[6] = 0x3F; // value 0: 15 | 16 = 31 → 15; value 16: 3 | 16 = 19 → 3
        b[7] = 0x02; // value 1: 2 → -14; value 17: 0 | 16 = 16 → 0
        let mut y = [0.0; 32];
        assert!(dequantize(GgmlType::Q5_0, &b, &mut y));
        assert_eq!((y[0], y[16], y[1], y[17], y[2]), (3.75, 0.75, -3.5, 0.0, -4.0));
        assert!(!dequantize(GgmlType::Q5_0, &[0; 21], &mut y));
    }

    #[test]
    fn q8_0_is_signed() {
        let mut b = [0u8; 34];
        b[..2].copy_from_slice(&f16_bytes(2.0));
        b[2] = 0xFF;
        b[33] = 127;
        let mut y = [0.0; 32];
        assert!(dequantize(GgmlType::Q8_0, &b, &mut y));
        assert_eq!((y[0], y[31], y[1]), (-2.0, 254.0, 0.0));
    }

    #[test]
    fn k_quant_scales_unpack() {
        let mut scales = [0u8; 12];
        scales[0] = 0b11_000001; // scale 0 = 1, top bits feed scale 4
        scales[4] = 0b01_000010; // min 0 = 2, top bits feed min 4
        scales[8] = 0x53; // scale 4 low = 3, min 4 low = 5
        assert_eq!(scale_min(&scales, 0), (1, 2));
        assert_eq!(scale_min(&scales, 4), (3 | (3 << 4), 5 | (1 << 4)));
    }

    #[test]
    fn wrong_sizes_and_types_are_refused() {
        let mut y = [0.0; 32];
        assert!(!dequantize(GgmlType::Q8_0, &[0; 33], &mut y));
        assert!(!dequantize(GgmlType::Q4_0, &[0; 36], &mut y));
        assert!(!dequantize(GgmlType::Q2K, &[0; 84], &mut [0.0; 256]));
        assert!(dequantize(GgmlType::BF16, &[0x80, 0x3F], &mut y[..1]));
        assert_eq!(y[0], 1.0);
    }
}
