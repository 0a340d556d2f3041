//! What may flow through a site: [`SiteValue`], argument tuples ([`Args`]), and the rows of a
//! batch an invoke sees ([`Rows`]).

use crate::erased::ErasedValue;
use std::ops::Range;

use burn::tensor::{BasicOps, DType, Tensor, backend::Backend};

use crate::error::Mismatch;

/// The rows of a batched value that one invoke owns: `start..start + len` of `total`, along
/// dimension `dim` of the value.
///
/// A trace with two or more invokes that have inputs runs them as one batch; each invoke's body
/// sees only its rows of every batched value and its writes are spliced back into those rows.
/// Invokes join their inputs along dimension 0; inside a forward whose `impl` block says
/// `#[inspect(batch_dim = N)]`, the values of its calls are batched along dimension `N`.
///
/// A model whose input is made of several batches (CLIP's texts and images) numbers them as
/// *parts*: an invoke's rows belong to one part, and it sees rows only of the modules of that
/// part (those under a field declared `#[inspect(part = N)]`); other values it sees whole, and
/// cannot write.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rows {
    /// The first row.
    pub start: usize,
    /// The number of rows.
    pub len: usize,
    /// The number of rows of the whole batch.
    pub total: usize,
    /// The dimension of the value that indexes the batch.
    pub dim: usize,
    /// The part of the input these rows belong to (0 unless the model's input has several).
    pub part: usize,
}

impl Rows {
    /// The rows as a range.
    pub fn range(&self) -> Range<usize> {
        self.start..self.start + self.len
    }

    /// The same rows along dimension `dim`.
    pub fn along(self, dim: usize) -> Rows {
        Rows { dim, ..self }
    }
}

/// How the values of a module's calls carry the batch: declared on the `impl` block that makes
/// the calls (`#[inspect(batch_dim = 1)]` for a time-major forward, `#[inspect(unbatched)]`),
/// else as the caller's; dimension 0 at the root.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Batching {
    /// Batched along this dimension.
    Dim(usize),
    /// Not batched: every invoke sees the whole value, and one invoke of several cannot write it.
    Unbatched,
    /// As the calling module's (the root's: dimension 0).
    #[default]
    Inherited,
}

/// A value that can pass through a site: a module's output, or the tuple of its arguments.
///
/// Reading a site hands the body a clone (for tensors: a handle, no copy of the data); replacing it
/// checks the replacement with [`check_replacement`](Self::check_replacement) first.
/// Implemented for burn tensors, tuples, `Option`, `Vec`, and plain scalars; implement it for your
/// own output types (the default accepts any replacement).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot pass through a site",
    note = "site values are owned and `Clone + 'static`; implement `nnsight::SiteValue` for your own types, and pass borrowed arguments as `&expr`"
)]
pub trait SiteValue: Clone + 'static {
    /// Checks that `replacement` may stand in for `self` downstream (for tensors: the same shape).
    ///
    /// # Errors
    /// A [`Mismatch`] describing both shapes.
    fn check_replacement(&self, replacement: &Self) -> Result<(), Mismatch> {
        let _ = replacement;
        Ok(())
    }

    /// A copy for a body or a cache to keep while the forward pass goes on. The default is
    /// `clone()`; tensors on LibTorch are copied instead (see [`Tensor`]'s impl), so that no later
    /// in-place operation of the model can change a value already read.
    fn snapshot(&self) -> Self {
        self.clone()
    }

    /// The part of the value that belongs to `rows` of the batch. The default (values without a
    /// batch dimension: plain numbers, strings) is the whole value.
    ///
    /// # Errors
    /// Why the value cannot be narrowed to the rows (a tensor whose dimension `rows.dim` is not
    /// the batch), so that a body never sees other invokes' rows as its own.
    fn narrow_rows(&self, rows: Rows) -> Result<Self, String> {
        let _ = rows;
        Ok(self.clone())
    }

    /// Writes `part` (as returned by [`narrow_rows`](Self::narrow_rows), then changed) back into
    /// `rows`. The default replaces the whole value.
    ///
    /// # Errors
    /// Why `part` cannot be written back into the rows (a value shared by every row).
    fn splice_rows(&mut self, rows: Rows, part: Self) -> Result<(), String> {
        let _ = rows;
        *self = part;
        Ok(())
    }

    /// Element `index` of a tuple value (a call's arguments), untyped; `None` (the default) for
    /// values that are not tuples. How untyped code ([`ErasedValue`]) reaches one argument.
    fn element_mut(&mut self, index: usize) -> Option<&mut dyn ErasedValue> {
        let _ = index;
        None
    }
}

/// Whether `B` is burn's LibTorch backend, whose views can share memory without sharing its
/// reference count: burn-tch 0.21 gives the result of `swap_dims` / `permute` a count of its own,
/// so the model may write in place into memory a clone still holds.
fn views_may_alias<B: Backend>() -> bool {
    std::any::type_name::<B::FloatTensorPrimitive>().starts_with("burn_tch::")
}

impl<B: Backend, const D: usize, K: BasicOps<B> + 'static> SiteValue for Tensor<B, D, K> {
    /// `clone()`, but on LibTorch a copy in fresh memory (see `views_may_alias`).
    fn snapshot(&self) -> Self {
        if views_may_alias::<B>() { Tensor::cat(vec![self.clone()], 0) } else { self.clone() }
    }

    fn check_replacement(&self, replacement: &Self) -> Result<(), Mismatch> {
        let (expected, found) = (self.dims(), replacement.dims());
        if expected != found {
            return Err(Mismatch::shape(format!("{expected:?}"), format!("{found:?}")));
        }
        let (expected, found) = (self.dtype(), replacement.dtype());
        if expected != found {
            return Err(Mismatch::element_type(dtype_name(expected), dtype_name(found)));
        }
        Ok(())
    }

    fn narrow_rows(&self, rows: Rows) -> Result<Self, String> {
        let dims = self.dims();
        match dims.get(rows.dim) {
            Some(&n) if n == rows.total => Ok(self.clone().narrow(rows.dim, rows.start, rows.len)),
            // Broadcast over the batch: the same for every row.
            Some(1) => Ok(self.clone()),
            Some(&n) => Err(format!(
                "its shape {dims:?} has {n} at dimension {}, where the batch has {} rows",
                rows.dim, rows.total
            )),
            None => Err(format!("its shape {dims:?} has no dimension {} to hold the batch", rows.dim)),
        }
    }

    fn splice_rows(&mut self, rows: Rows, part: Self) -> Result<(), String> {
        let dims = self.dims();
        if dims.get(rows.dim) != Some(&rows.total) {
            return Err(match dims.get(rows.dim) {
                Some(1) => format!(
                    "it is shared by every row of the batch (dimension {} of {dims:?} is 1), so a write \
                     from one invoke would change every invoke's value",
                    rows.dim
                ),
                _ => self.narrow_rows(rows).err().unwrap_or_default(),
            });
        }
        let ranges: Vec<Range<usize>> =
            (0..=rows.dim).map(|d| if d == rows.dim { rows.range() } else { 0..dims[d] }).collect();
        *self = self.clone().slice_assign(ranges.as_slice(), part);
        Ok(())
    }
}

impl<T: SiteValue> SiteValue for Option<T> {
    fn snapshot(&self) -> Self {
        self.as_ref().map(T::snapshot)
    }

    fn check_replacement(&self, replacement: &Self) -> Result<(), Mismatch> {
        match (self, replacement) {
            (Some(a), Some(b)) => a.check_replacement(b),
            (None, None) => Ok(()),
            (a, b) => Err(Mismatch::shape(presence(a.is_some()), presence(b.is_some()))),
        }
    }

    fn narrow_rows(&self, rows: Rows) -> Result<Self, String> {
        self.as_ref().map(|v| v.narrow_rows(rows)).transpose()
    }

    fn splice_rows(&mut self, rows: Rows, part: Self) -> Result<(), String> {
        match (self.as_mut(), part) {
            (Some(value), Some(part)) => value.splice_rows(rows, part),
            (_, part) => {
                *self = part;
                Ok(())
            }
        }
    }
}

fn presence(some: bool) -> String {
    if some { "Some(..)" } else { "None" }.to_owned()
}

impl<T: SiteValue> SiteValue for Vec<T> {
    fn snapshot(&self) -> Self {
        self.iter().map(T::snapshot).collect()
    }

    fn check_replacement(&self, replacement: &Self) -> Result<(), Mismatch> {
        if self.len() != replacement.len() {
            return Err(Mismatch::shape(
                format!("{} elements", self.len()),
                format!("{} elements", replacement.len()),
            ));
        }
        for (i, (a, b)) in self.iter().zip(replacement).enumerate() {
            a.check_replacement(b).map_err(|m| in_element(i, m))?;
        }
        Ok(())
    }

    fn narrow_rows(&self, rows: Rows) -> Result<Self, String> {
        self.iter().enumerate().map(|(i, v)| v.narrow_rows(rows).map_err(|e| at_element(i, e))).collect()
    }

    fn splice_rows(&mut self, rows: Rows, part: Self) -> Result<(), String> {
        if self.len() != part.len() {
            *self = part;
            return Ok(());
        }
        for (i, (value, part)) in self.iter_mut().zip(part).enumerate() {
            value.splice_rows(rows, part).map_err(|e| at_element(i, e))?;
        }
        Ok(())
    }
}

fn in_element(index: usize, m: Mismatch) -> Mismatch {
    Mismatch { expected: format!("{} at element {index}", m.expected), ..m }
}

fn at_element(index: usize, problem: String) -> String {
    format!("element {index}: {problem}")
}

/// The name of a tensor element type, as the error messages spell it.
fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F64 => "f64",
        DType::F32 => "f32",
        DType::Flex32 => "flex32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        DType::I64 => "i64",
        DType::I32 => "i32",
        DType::I16 => "i16",
        DType::I8 => "i8",
        DType::U64 => "u64",
        DType::U32 => "u32",
        DType::U16 => "u16",
        DType::U8 => "u8",
        DType::Bool(_) => "bool",
        DType::QFloat(_) => "quantized float",
    }
}

macro_rules! plain_values {
    ($($t:ty),*) => { $(impl SiteValue for $t {})* };
}
plain_values!(bool, char, u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, f32, f64, String);

/// The argument tuple of a module call, as captured by its input site.
///
/// `input()` is the first argument, `inputs()` the whole tuple (as in nnsight).
pub trait Args: SiteValue {
    /// The type of the first argument.
    type First: SiteValue;
    /// The first argument, mutably (the target of `input().replace(..)`).
    fn first_mut(&mut self) -> &mut Self::First;
}

impl SiteValue for () {}

macro_rules! tuples {
    ($(($($name:ident $idx:tt),+))*) => {$(
        impl<$($name: SiteValue),+> SiteValue for ($($name,)+) {
            fn snapshot(&self) -> Self {
                ($(self.$idx.snapshot(),)+)
            }

            fn check_replacement(&self, replacement: &Self) -> Result<(), Mismatch> {
                $(self.$idx.check_replacement(&replacement.$idx).map_err(|m| in_element($idx, m))?;)+
                Ok(())
            }

            fn narrow_rows(&self, rows: Rows) -> Result<Self, String> {
                Ok(($(self.$idx.narrow_rows(rows).map_err(|e| at_element($idx, e))?,)+))
            }

            fn splice_rows(&mut self, rows: Rows, part: Self) -> Result<(), String> {
                $(self.$idx.splice_rows(rows, part.$idx).map_err(|e| at_element($idx, e))?;)+
                Ok(())
            }

            fn element_mut(&mut self, index: usize) -> Option<&mut dyn ErasedValue> {
                match index {
                    $($idx => Some(&mut self.$idx),)+
                    _ => None,
                }
            }
        }
        impl<$($name: SiteValue),+> Args for ($($name,)+) {
            type First = A;
            fn first_mut(&mut self) -> &mut A {
                &mut self.0
            }
        }
    )*};
}
tuples! {
    (A 0)
    (A 0, C 1)
    (A 0, C 1, D 2)
    (A 0, C 1, D 2, E 3)
    (A 0, C 1, D 2, E 3, F 4)
    (A 0, C 1, D 2, E 3, F 4, G 5)
    (A 0, C 1, D 2, E 3, F 4, G 5, H 6)
    (A 0, C 1, D 2, E 3, F 4, G 5, H 6, I 7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use burn_flex::Flex;

    #[test]
    fn tensors_of_other_shapes_are_rejected_with_both_shapes() {
        let device = Default::default();
        let a = Tensor::<Flex, 2>::zeros([2, 3], &device);
        let b = Tensor::<Flex, 2>::zeros([3, 2], &device);
        assert!(a.check_replacement(&a.clone()).is_ok());
        let m = a.check_replacement(&b).unwrap_err();
        assert_eq!((m.expected.as_str(), m.found.as_str()), ("[2, 3]", "[3, 2]"));
    }

    #[test]
    fn tuples_name_the_element_that_differs() {
        let device = Default::default();
        let t = Tensor::<Flex, 1>::zeros([4], &device);
        let pair = (t.clone(), Tensor::<Flex, 1>::zeros([2], &device));
        let other = (t.clone(), t);
        let m = pair.check_replacement(&other).unwrap_err();
        assert_eq!(m.expected, "[2] at element 1");
        assert_eq!(Some(1).check_replacement(&None).unwrap_err().found, "None");
    }

    #[test]
    fn batched_tensors_narrow_to_their_rows_and_splice_back() {
        let device = Default::default();
        let batch = Tensor::<Flex, 2>::from_data([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], &device);
        let rows = Rows { start: 1, len: 2, total: 3, dim: 0, part: 0 };
        let part = batch.narrow_rows(rows).unwrap();
        assert_eq!(part.to_data().to_vec::<f32>().unwrap(), [1.0, 1.0, 2.0, 2.0]);
        let mut spliced = batch.clone();
        spliced.splice_rows(rows, part * 10.0).unwrap();
        assert_eq!(spliced.to_data().to_vec::<f32>().unwrap(), [0.0, 0.0, 10.0, 10.0, 20.0, 20.0]);
        // A value broadcast over the batch is seen whole, and cannot be written by one invoke.
        let mut shared = Tensor::<Flex, 2>::ones([1, 2], &device);
        assert_eq!(shared.narrow_rows(rows).unwrap().dims(), [1, 2]);
        assert!(shared.splice_rows(rows, Tensor::zeros([1, 2], &device)).unwrap_err().contains("shared"));
        // A tensor whose dimension 0 is not the batch cannot be narrowed: never another's rows.
        let merged = Tensor::<Flex, 2>::ones([6, 2], &device);
        assert!(merged.narrow_rows(rows).unwrap_err().contains("[6, 2] has 6 at dimension 0"));
    }

    #[test]
    fn time_major_tensors_narrow_along_their_batch_dimension() {
        let device = Default::default();
        // [seq 3, batch 3, 1]: seq == batch, the case dimension 0 would get wrong.
        let values: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let time_major = Tensor::<Flex, 3>::from_data(TensorData::new(values, [3, 3, 1]), &device);
        let rows = Rows { start: 2, len: 1, total: 3, dim: 1, part: 0 };
        let part = time_major.narrow_rows(rows).unwrap();
        assert_eq!(part.to_data().to_vec::<f32>().unwrap(), [2.0, 5.0, 8.0]);
        let mut spliced = time_major.clone();
        spliced.splice_rows(rows, part.zeros_like()).unwrap();
        assert_eq!(spliced.to_data().to_vec::<f32>().unwrap(), [0.0, 1.0, 0.0, 3.0, 4.0, 0.0, 6.0, 7.0, 0.0]);
    }

    #[test]
    fn tuples_and_vectors_say_which_element_cannot_be_narrowed() {
        let device = Default::default();
        let rows = Rows { start: 0, len: 1, total: 2, dim: 0, part: 0 };
        let pair = (Tensor::<Flex, 1>::ones([2], &device), Tensor::<Flex, 1>::ones([5], &device));
        assert!(pair.narrow_rows(rows).unwrap_err().starts_with("element 1:"));
        assert_eq!(7usize.narrow_rows(rows), Ok(7));
    }

    proptest::proptest! {
        /// Splicing back the rows a body saw, unchanged, leaves the value as it was, for any
        /// batch dimension and any invoke's rows (split ∘ splice = identity); and the rows seen
        /// are exactly that slice of the value.
        #[test]
        fn splicing_back_the_rows_read_is_the_identity(
            dims in proptest::collection::vec(1usize..4, 1..4),
            dim_seed in 0usize..8,
            start_seed in 0usize..8,
            len_seed in 0usize..8,
        ) {
            let dim = dim_seed % dims.len();
            let total = dims[dim];
            let start = start_seed % total;
            let len = 1 + len_seed % (total - start);
            let rows = Rows { start, len, total, dim, part: 0 };
            let count: usize = dims.iter().product();
            let values: Vec<f32> = (0..count).map(|v| v as f32).collect();
            let device = Default::default();
            let value = Tensor::<Flex, 3>::from_data(TensorData::new(values, padded(&dims)), &device);
            let part = value.narrow_rows(rows).unwrap();
            let expected = value.clone().narrow(dim, start, len);
            proptest::prop_assert_eq!(part.to_data(), expected.to_data());
            let mut spliced = value.clone();
            spliced.splice_rows(rows, part).unwrap();
            proptest::prop_assert_eq!(spliced.to_data(), value.to_data());
        }
    }

    /// `dims` as a rank-3 shape (trailing ones).
    fn padded(dims: &[usize]) -> [usize; 3] {
        let mut shape = [1; 3];
        shape[..dims.len()].copy_from_slice(dims);
        shape
    }
}
