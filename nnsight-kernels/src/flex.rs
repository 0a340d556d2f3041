//! The `f32` values of tensors on the default CPU backend (`Flex`), for this crate's kernels:
//! reading a contiguous tensor's values in place, and making a tensor of new values.

use std::any::{Any, TypeId};

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{TensorData, TensorPrimitive};
use burn_flex::FlexTensor;

/// Whether `B` is the default CPU backend, whose kernels this crate can replace.
pub fn is_flex<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<Flex>()
}

/// The Flex tensor of a float primitive (`None` when `B` is another backend).
pub(crate) fn flex<B: Backend>(tensor: &TensorPrimitive<B>) -> Option<&FlexTensor> {
    let TensorPrimitive::Float(tensor) = tensor else { return None };
    (tensor as &dyn Any).downcast_ref::<FlexTensor>()
}

/// A tensor of `values` (row-major, `shape`) when `B` is `Flex`.
pub fn from_values<B: Backend, const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Option<Tensor<B, D>> {
    let mut tensor = Some(FlexTensor::from_data(TensorData::new(values, shape)));
    // When `B` is `Flex`, its float primitive is `FlexTensor`.
    let tensor = (&mut tensor as &mut dyn Any).downcast_mut::<Option<B::FloatTensorPrimitive>>()?.take()?;
    Some(Tensor::from_primitive(TensorPrimitive::Float(tensor)))
}

/// `f` of the values of `x` as one row-major slice; `None` when `B` is not `Flex` or `x` is not a
/// contiguous `f32` tensor.
pub fn with_values<B: Backend, const D: usize, R>(
    x: &Tensor<B, D>,
    f: impl FnOnce(&[f32]) -> R,
) -> Option<R> {
    if !is_flex::<B>() {
        return None;
    }
    let primitive = x.clone().into_primitive();
    Some(f(flex::<B>(&primitive)?.as_slice::<f32>()?))
}

/// `f` applied to the values of `x` as one slice, as a tensor of `x`'s shape; `None` when `B` is
/// not `Flex` or `x` is not a contiguous `f32` tensor.
pub fn map_values<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    f: impl FnOnce(&[f32]) -> Vec<f32>,
) -> Option<Tensor<B, D>> {
    from_values(with_values(x, f)?, x.dims())
}
