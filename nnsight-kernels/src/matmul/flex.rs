//! The products on burn-flex tensors: taken when the backend is `Flex` and both operands are
//! contiguous `f32`; `None` otherwise. Products with at most [`MAX_ROWS`] rows run on the
//! few-rows kernel, reading a weight's GGUF blocks when its module has them and the weight is the
//! one they were made for ([`WeightBlocks`]); larger ones on the tiled kernel or `gemm` with
//! threads ([`super::many_rows`]).

use burn::prelude::*;

use crate::flex::{flex, from_values, is_flex};

use super::blocks::{Stored, WeightBlocks, rows_times_blocks};
use super::kernel::{MAX_ROWS, rows_times as kernel_rows_times, rows_times_transposed};
use super::many_rows;

/// `x · w` (or `x · wᵀ` when `transposed`, `w` then `[n, k]`) for `x` `[m, k]`, from `blocks`
/// where they stand for `w`.
pub(super) fn rows_times<B: Backend>(
    x: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    transposed: bool,
    blocks: Option<&WeightBlocks>,
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
    } else if let Some(blocks) = blocks.and_then(|b| b.of(w, stored)) {
        rows_times_blocks(xs, m, blocks)
    } else if transposed {
        rows_times_transposed(xs, m, w.as_slice::<f32>()?, k, n)
    } else {
        kernel_rows_times(xs, m, w.as_slice::<f32>()?, k, n)
    };
    from_values(y, [m, n])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matmul::BlockMatrix;
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

    fn found(blocks: &WeightBlocks, weight: &Tensor<Flex, 2>, stored: Stored) -> bool {
        let weight = weight.clone().into_primitive();
        blocks.of(flex::<Flex>(&weight).unwrap(), stored).is_some()
    }

    #[test]
    fn blocks_are_used_for_their_weight_only_until_it_changes() {
        let (weight, blocks) = weight_and_blocks();
        let blocks = WeightBlocks::new(&weight, Stored::InOut, blocks).expect("shapes match");
        assert!(found(&blocks, &weight, Stored::InOut));
        assert!(found(&blocks, &weight.clone(), Stored::InOut), "a clone shares the storage");
        assert!(!found(&blocks, &weight, Stored::OutIn), "made for the other layout");
        assert!(!found(&blocks, &weight.clone().transpose(), Stored::InOut), "another layout of the storage");

        // Changed weights (new values, or an edit burn could have made in place) are not theirs.
        assert!(!found(&blocks, &(weight.clone() * 2.0), Stored::InOut));
        let edited = weight.clone().slice_assign([0..1, 0..2], Tensor::zeros([1, 2], &Default::default()));
        assert!(!found(&blocks, &edited, Stored::InOut));
        assert_eq!(
            weight.clone().into_data().to_vec::<f32>().unwrap()[..2],
            [1.0, 2.0],
            "the weight the blocks stand for is unchanged"
        );

        // Products read the blocks of their weight, and the values of a changed one.
        let x = Tensor::<Flex, 2>::ones([3, 32], &Default::default());
        let product = |w: &Tensor<Flex, 2>, blocks: Option<&WeightBlocks>| {
            let y = rows_times(&x, w, false, blocks).expect("a few-rows product on Flex");
            y.into_data().to_vec::<f32>().unwrap()
        };
        assert_eq!(product(&weight, Some(&blocks)), [96.0, 128.0].repeat(3));
        assert_eq!(product(&(weight.clone() * 2.0), Some(&blocks)), [64.0, 128.0].repeat(3));
        assert_eq!(product(&weight, None), [32.0, 64.0].repeat(3));
    }

    #[test]
    fn blocks_of_the_wrong_shape_or_backend_are_refused() {
        let (weight, blocks) = weight_and_blocks();
        assert!(WeightBlocks::new(&weight, Stored::OutIn, blocks).is_none());
        let (_, blocks) = weight_and_blocks();
        let other = Tensor::<burn::backend::Autodiff<Flex>, 2>::ones([32, 2], &Default::default());
        assert!(WeightBlocks::new(&other, Stored::InOut, blocks).is_none());
    }
}
