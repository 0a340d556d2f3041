//! Products with more rows than the few-rows kernel takes, on the `gemm` crate (burn-flex's own
//! matrix product) with rayon's threads for every size: burn-flex runs products below 192³
//! multiply-adds on one thread, which leaves half of a small machine idle on the medium-sized
//! products of patching sweeps (tens of rows against a projection).

/// Products below this many multiply-adds stay on one thread: splitting costs more than it gains.
const THREADED_FROM: usize = 1 << 20;

/// `x · w` (or `x · wᵀ` when `transposed`, `w` then `[n, k]`) for `x` `[m, k]`, `w` `[k, n]`,
/// all row-major: `[m, n]`.
pub(super) fn rows_times(x: &[f32], m: usize, w: &[f32], k: usize, n: usize, transposed: bool) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "x is [{m}, {k}]");
    assert_eq!(w.len(), k * n, "w has {k} × {n} values");
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

    #[test]
    fn both_layouts_match_a_plain_product() {
        let (m, k, n) = (37, 70, 300);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0).collect();
        let w: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 300) as f32 / 150.0 - 1.0).collect();
        let got = rows_times(&x, m, &w, k, n, false);
        let got_t = rows_times(&x, m, &w, k, n, true);
        for i in 0..m {
            for j in 0..n {
                let plain: f64 = (0..k).map(|l| f64::from(x[i * k + l]) * f64::from(w[l * n + j])).sum();
                let transposed: f64 = (0..k).map(|l| f64::from(x[i * k + l]) * f64::from(w[j * k + l])).sum();
                assert!((f64::from(got[i * n + j]) - plain).abs() < 1e-4, "[{i}, {j}]");
                assert!((f64::from(got_t[i * n + j]) - transposed).abs() < 1e-4, "[{i}, {j}]ᵀ");
            }
        }
    }
}
