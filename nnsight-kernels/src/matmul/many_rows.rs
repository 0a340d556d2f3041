//! Products with more rows than the few-rows kernel takes. With the weight stored `[k, n]` (the
//! projections) on a CPU with AVX2 and FMA they run on this crate's register-tiled kernel
//! ([`super::tiled`]); otherwise on the `gemm` crate (burn-flex's own matrix product) with
//! rayon's threads for every size: burn-flex runs products below 192³ multiply-adds on one
//! thread, which leaves half of a small machine idle on the medium-sized products of patching
//! sweeps (tens of rows against a projection).

/// Products below this many multiply-adds stay on one thread: splitting costs more than it gains
/// (for `gemm` and the tiled kernel alike).
pub(super) const THREADED_FROM: usize = 1 << 20;

/// `x · w` (or `x · wᵀ` when `transposed`, `w` then `[n, k]`) for `x` `[m, k]`, `w` `[k, n]`,
/// all row-major: `[m, n]`.
pub(super) fn rows_times(x: &[f32], m: usize, w: &[f32], k: usize, n: usize, transposed: bool) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "x is [{m}, {k}]");
    assert_eq!(w.len(), k * n, "w has {k} × {n} values");
    #[cfg(target_arch = "x86_64")]
    if !transposed && super::tiled::available() {
        return super::tiled::rows_times(x, m, w, k, n);
    }
    gemm_times(x, m, w, k, n, transposed)
}

/// [`rows_times`] on the `gemm` crate.
fn gemm_times(x: &[f32], m: usize, w: &[f32], k: usize, n: usize, transposed: bool) -> Vec<f32> {
    let mut out = vec![0.0f32; m * n];
    if m == 0 || n == 0 || k == 0 {
        return out;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if m * n * k >= THREADED_FROM && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // Strides in elements: (column stride, row stride) of each operand.
    let (w_cs, w_rs) = if transposed { (k as isize, 1) } else { (1, n as isize) };
    // SAFETY: `out` is `[m, n]`, `x` `[m, k]` and `w` `[k, n]` (or `[n, k]` read transposed), all
    // checked above, and the strides stay inside them; `out` does not alias the inputs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            w_cs,
            w_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: usize = 37;
    const K: usize = 70;
    const N: usize = 300;

    #[test]
    fn both_layouts_and_both_paths_match_a_plain_product() {
        let x: Vec<f32> = (0..M * K).map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0).collect();
        let w: Vec<f32> = (0..K * N).map(|i| ((i * 104_729) % 300) as f32 / 150.0 - 1.0).collect();
        for product in [rows_times, gemm_times] {
            for transposed in [false, true] {
                let got = product(&x, M, &w, K, N, transposed);
                for i in 0..M {
                    for j in 0..N {
                        let weight = |l: usize| if transposed { w[j * K + l] } else { w[l * N + j] };
                        let exact: f64 = (0..K).map(|l| f64::from(x[i * K + l]) * f64::from(weight(l))).sum();
                        assert!((f64::from(got[i * N + j]) - exact).abs() < 1e-4, "[{i}, {j}], {transposed}");
                    }
                }
            }
        }
    }
}
