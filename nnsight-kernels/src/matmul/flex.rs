//! The products on burn-flex tensors: taken when the backend is `Flex` and both operands are
//! contiguous `f32`; `None` otherwise. Products with at most [`MAX_ROWS`] rows run on the
//! few-rows kernel, reading a weight's GGUF blocks when they are kept for it
//! ([`super::blocks`]); larger ones on `gemm` with threads ([`super::many_rows`]).

use burn::prelude::*;

use crate::flex::{flex, from_values, is_flex};

use super::blocks::{BlockMatrix, Stored, keep, kept, rows_times_blocks};
use super::kernel::{MAX_ROWS, rows_times as kernel_rows_times, rows_times_transposed};
use super::many_rows;

/// `x · w` (or `x · wᵀ` when `transposed`, `w` then `[n, k]`) for `x` `[m, k]`.
pub(super) fn rows_times<B: Backend>(
    x: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    transposed: bool,
) -> Option<Tensor<B, 2>> {
    let [m, k] = x.dims();
    if !is_flex::<B>() {
        return None;
    }
    let n = if transposed { w.dims()[0] } else { w.dims()[1] };
    let (x, w) = (x.clone().into_primitive(), w.clone().into_primitive());
    let (xs, w) = (flex::<B>(&x)?.as_slice::<f32>()?, flex::<B>(&w)?);
    let stored = if transposed { Stored::OutIn } else { Stored::InOut };
    let y = if m > MAX_ROWS {
        many_rows::rows_times(xs, m, w.as_slice::<f32>()?, k, n, transposed)
    } else if let Some(blocks) = kept(w, stored) {
        rows_times_blocks(xs, m, &blocks)
    } else if transposed {
        rows_times_transposed(xs, m, w.as_slice::<f32>()?, k, n)
    } else {
        kernel_rows_times(xs, m, w.as_slice::<f32>()?, k, n)
    };
    from_values(y, [m, n])
}

/// Keeps `blocks` for `weight` (see the [module docs](crate::matmul)) when the backend is `Flex`; the key that
/// releases them.
pub fn keep_for<B: Backend>(weight: &Tensor<B, 2>, stored: Stored, blocks: BlockMatrix) -> Option<usize> {
    if !is_flex::<B>() {
        return None;
    }
    let weight = weight.clone().into_primitive();
    keep(flex::<B>(&weight)?, stored, blocks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matmul::KeptBlocks;
    use crate::quantized::GgmlType;
    use burn::backend::Flex;

    /// A `[32, 2]` weight (stored `[in, out]`, columns of 1s and 2s) and Q8_0 blocks of the same
    /// shape holding other values (rows of 3s and 4s), so that a product tells which it read.
    fn weight_and_blocks() -> (Tensor<Flex, 2>, BlockMatrix) {
        let values: Vec<f32> = (0..32).flat_map(|_| [1.0, 2.0]).collect();
        let weight = Tensor::<Flex, 2>::from_data(TensorData::new(values, [32, 2]), &Default::default());
        let mut bytes = Vec::new();
        for d in [3.0f32, 4.0] {
            bytes.extend(half::f16::from_f32(d).to_le_bytes());
            bytes.extend([1u8; 32]);
        }
        (weight, BlockMatrix::new(GgmlType::Q8_0, 2, 32, bytes).unwrap())
    }

    fn found(weight: &Tensor<Flex, 2>, stored: Stored) -> bool {
        let weight = weight.clone().into_primitive();
        kept(flex::<Flex>(&weight).unwrap(), stored).is_some()
    }

    #[test]
    fn blocks_are_used_for_the_kept_weight_only_until_it_changes_or_is_released() {
        let (weight, blocks) = weight_and_blocks();
        let mut guard = KeptBlocks::default();
        guard.push(keep_for(&weight, Stored::InOut, blocks).expect("shapes match"));
        assert!(found(&weight, Stored::InOut));
        assert!(found(&weight.clone(), Stored::InOut), "a clone shares the storage");
        assert!(!found(&weight, Stored::OutIn), "kept for the other layout");
        assert!(!found(&weight.clone().transpose(), Stored::InOut), "another layout of the storage");

        // Changed weights (new values, or an edit burn could have made in place) are not kept.
        assert!(!found(&(weight.clone() * 2.0), Stored::InOut));
        let edited = weight.clone().slice_assign([0..1, 0..2], Tensor::zeros([1, 2], &Default::default()));
        assert!(!found(&edited, Stored::InOut));
        assert_eq!(
            weight.clone().into_data().to_vec::<f32>().unwrap()[..2],
            [1.0, 2.0],
            "the kept weight is unchanged"
        );

        // Products read the blocks of the kept weight, and the values of a changed one.
        let x = Tensor::<Flex, 2>::ones([3, 32], &Default::default());
        let product = |w: &Tensor<Flex, 2>| {
            let y = rows_times(&x, w, false).expect("a few-rows product on Flex");
            y.into_data().to_vec::<f32>().unwrap()
        };
        assert_eq!(product(&weight), [96.0, 128.0].repeat(3));
        assert_eq!(product(&(weight.clone() * 2.0)), [64.0, 128.0].repeat(3));

        drop(guard);
        assert!(!found(&weight, Stored::InOut), "released with the guard");
        assert_eq!(product(&weight), [32.0, 64.0].repeat(3));
    }

    #[test]
    fn blocks_of_the_wrong_shape_are_not_kept() {
        let (weight, blocks) = weight_and_blocks();
        assert!(keep_for(&weight, Stored::OutIn, blocks).is_none());
    }
}
