//! [`WeightBlocks`]: the GGUF blocks of one weight, owned by the module that uses the weight.
//!
//! The blocks hold a handle to the weight's storage: as long as they live, burn cannot change that
//! storage in place (a write copies it first), so a weight changed after loading is a different
//! storage, and its products fall back to the `f32` values. They go with their module: no table,
//! nothing global.

use std::fmt;
use std::sync::Arc;

use burn::prelude::*;
use burn_flex::FlexTensor;

use super::BlockMatrix;
use crate::flex::{flex, is_flex};

/// How the weight that blocks stand for is stored: a `Linear` weight `[in, out]` (the blocks'
/// transpose), a language-model head `[out, in]` (as the blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// `[in, out]`: the product is `x · w`.
    InOut,
    /// `[out, in]`: the product is `x · wᵀ`.
    OutIn,
}

/// The GGUF blocks of one weight (Q4_0, Q4_1 or Q8_0), for the few-rows products that read them
/// instead of the weight's `f32` values (see [`crate::matmul`]). Cloning shares them.
#[derive(Clone)]
pub struct WeightBlocks {
    inner: Arc<Inner>,
}

struct Inner {
    /// A handle to the weight's storage: keeps burn from writing to it in place.
    weight: FlexTensor,
    stored: Stored,
    blocks: BlockMatrix,
}

impl fmt::Debug for WeightBlocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Inner { stored, blocks, .. } = &*self.inner;
        write!(f, "WeightBlocks({} [{}, {}], {stored:?})", blocks.ty.name(), blocks.rows, blocks.cols)
    }
}

impl WeightBlocks {
    /// `blocks` for `weight` (stored as `stored` says); `None` when the backend is not `Flex`,
    /// the weight is not a contiguous `f32` tensor, or the shapes differ.
    pub fn new<B: Backend>(weight: &Tensor<B, 2>, stored: Stored, blocks: BlockMatrix) -> Option<Self> {
        if !is_flex::<B>() {
            return None;
        }
        let primitive = weight.clone().into_primitive();
        let weight = flex::<B>(&primitive)?;
        weight.as_slice::<f32>()?;
        let &[a, b] = weight.layout().shape().as_slice() else { return None };
        let (out, input) = if stored == Stored::InOut { (b, a) } else { (a, b) };
        if (blocks.rows, blocks.cols) != (out, input) {
            return None;
        }
        Some(WeightBlocks { inner: Arc::new(Inner { weight: weight.clone(), stored, blocks }) })
    }

    /// The blocks, if `weight` used as `stored` is still the weight they were made for (the same
    /// storage, the same layout).
    pub(crate) fn of(&self, weight: &FlexTensor, stored: Stored) -> Option<&BlockMatrix> {
        let inner = &*self.inner;
        let same = Arc::ptr_eq(&inner.weight.data_arc(), &weight.data_arc())
            && inner.weight.layout() == weight.layout();
        (same && inner.stored == stored).then_some(&inner.blocks)
    }
}
