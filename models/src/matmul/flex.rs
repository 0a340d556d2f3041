//! The few-rows kernel on burn-flex tensors: taken when the backend is `Flex`, both operands are
//! contiguous `f32`, and the product has at most [`MAX_ROWS`] rows; `None` otherwise.

use std::any::Any;

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{TensorData, TensorPrimitive};
use burn_flex::FlexTensor;

use super::kernel::{MAX_ROWS, rows_times as kernel_rows_times, rows_times_transposed};

/// `x · w` (or `x · wᵀ` when `transposed`, `w` then `[n, k]`) for `x` `[m, k]` on the kernel.
pub(super) fn rows_times<B: Backend>(
    x: &Tensor<B, 2>,
    w: &Tensor<B, 2>,
    transposed: bool,
) -> Option<Tensor<B, 2>> {
    let [m, k] = x.dims();
    if m > MAX_ROWS || !is_flex::<B>() {
        return None;
    }
    let n = if transposed { w.dims()[0] } else { w.dims()[1] };
    let (x, w) = (x.clone().into_primitive(), w.clone().into_primitive());
    let (xs, ws) = (f32_slice::<B>(&x)?, f32_slice::<B>(&w)?);
    let y =
        if transposed { rows_times_transposed(xs, m, ws, k, n) } else { kernel_rows_times(xs, m, ws, k, n) };
    let mut y = Some(FlexTensor::from_data(TensorData::new(y, [m, n])));
    // `B` is `Flex` (checked above), so its float primitive is `FlexTensor`.
    let y = (&mut y as &mut dyn Any).downcast_mut::<Option<B::FloatTensorPrimitive>>()?.take()?;
    Some(Tensor::from_primitive(TensorPrimitive::Float(y)))
}

fn is_flex<B: Backend>() -> bool {
    std::any::TypeId::of::<B>() == std::any::TypeId::of::<Flex>()
}

/// The elements of a contiguous `f32` Flex tensor.
fn f32_slice<B: Backend>(tensor: &TensorPrimitive<B>) -> Option<&[f32]> {
    let TensorPrimitive::Float(tensor) = tensor else { return None };
    (tensor as &dyn Any).downcast_ref::<FlexTensor>()?.as_slice::<f32>()
}
