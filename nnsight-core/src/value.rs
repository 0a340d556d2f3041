//! What may flow through a site: [`SiteValue`], argument tuples ([`Args`]), and the rows of a
//! batch an invoke sees ([`Rows`]).

use std::ops::Range;

use burn::tensor::{BasicOps, DType, Tensor, backend::Backend};

use crate::error::Mismatch;

/// The rows of a batched value that one invoke owns: `start..start + len` of `total`.
///
/// A trace with two or more invokes that have inputs runs them as one batch; each invoke's body
/// sees only its rows of every batched value (dimension 0 of a tensor whose first dimension is
/// the batch size) and its writes are spliced back into those rows.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rows {
    /// The first row.
    pub start: usize,
    /// The number of rows.
    pub len: usize,
    /// The number of rows of the whole batch.
    pub total: usize,
}

impl Rows {
    /// The rows as a range.
    pub fn range(&self) -> Range<usize> {
        self.start..self.start + self.len
    }
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

    /// The part of the value that belongs to `rows` of the batch. The default (values without a
    /// batch dimension) is the whole value.
    fn narrow_rows(&self, rows: Rows) -> Self {
        let _ = rows;
        self.clone()
    }

    /// Writes `part` (as returned by [`narrow_rows`](Self::narrow_rows), then changed) back into
    /// `rows`. The default replaces the whole value.
    fn splice_rows(&mut self, rows: Rows, part: Self) {
        let _ = rows;
        *self = part;
    }
}

impl<B: Backend, const D: usize, K: BasicOps<B> + 'static> SiteValue for Tensor<B, D, K> {
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

    fn narrow_rows(&self, rows: Rows) -> Self {
        if self.dims()[0] == rows.total { self.clone().narrow(0, rows.start, rows.len) } else { self.clone() }
    }

    fn splice_rows(&mut self, rows: Rows, part: Self) {
        if self.dims()[0] == rows.total {
            let spliced = self.clone().slice_assign(std::slice::from_ref(&rows.range()), part);
            *self = spliced;
        } else {
            *self = part;
        }
    }
}

impl<T: SiteValue> SiteValue for Option<T> {
    fn check_replacement(&self, replacement: &Self) -> Result<(), Mismatch> {
        match (self, replacement) {
            (Some(a), Some(b)) => a.check_replacement(b),
            (None, None) => Ok(()),
            (a, b) => Err(Mismatch::shape(presence(a.is_some()), presence(b.is_some()))),
        }
    }

    fn narrow_rows(&self, rows: Rows) -> Self {
        self.as_ref().map(|v| v.narrow_rows(rows))
    }

    fn splice_rows(&mut self, rows: Rows, part: Self) {
        match (self.as_mut(), part) {
            (Some(value), Some(part)) => value.splice_rows(rows, part),
            (_, part) => *self = part,
        }
    }
}

fn presence(some: bool) -> String {
    if some { "Some(..)" } else { "None" }.to_owned()
}

impl<T: SiteValue> SiteValue for Vec<T> {
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

    fn narrow_rows(&self, rows: Rows) -> Self {
        self.iter().map(|v| v.narrow_rows(rows)).collect()
    }

    fn splice_rows(&mut self, rows: Rows, part: Self) {
        if self.len() != part.len() {
            *self = part;
            return;
        }
        for (value, part) in self.iter_mut().zip(part) {
            value.splice_rows(rows, part);
        }
    }
}

fn in_element(index: usize, m: Mismatch) -> Mismatch {
    Mismatch { expected: format!("{} at element {index}", m.expected), ..m }
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
            fn check_replacement(&self, replacement: &Self) -> Result<(), Mismatch> {
                $(self.$idx.check_replacement(&replacement.$idx).map_err(|m| in_element($idx, m))?;)+
                Ok(())
            }

            fn narrow_rows(&self, rows: Rows) -> Self {
                ($(self.$idx.narrow_rows(rows),)+)
            }

            fn splice_rows(&mut self, rows: Rows, part: Self) {
                $(self.$idx.splice_rows(rows, part.$idx);)+
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
        let rows = Rows { start: 1, len: 2, total: 3 };
        let part = batch.narrow_rows(rows);
        assert_eq!(part.to_data().to_vec::<f32>().unwrap(), [1.0, 1.0, 2.0, 2.0]);
        let mut spliced = batch.clone();
        spliced.splice_rows(rows, part * 10.0);
        assert_eq!(spliced.to_data().to_vec::<f32>().unwrap(), [0.0, 0.0, 10.0, 10.0, 20.0, 20.0]);
        // A tensor without the batch dimension is seen whole.
        let weight = Tensor::<Flex, 1>::ones([2], &device);
        assert_eq!(weight.narrow_rows(rows).dims(), [2]);
    }
}
