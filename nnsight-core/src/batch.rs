//! Assembling one batch from the inputs of several invokes: [`Concat`] joins the inputs along
//! dimension 0, [`layout`] says which rows each invoke owns ([`layout_parts`] for a model whose
//! input is several batches, such as CLIP's texts and images).

use burn::tensor::{BasicOps, Tensor, backend::Backend};

use crate::error::{Error, Result};
use crate::value::Rows;

/// Inputs that several invokes can share one forward pass with: joined along dimension 0.
///
/// Implemented for tensors and tuples of tensors (a model's argument tuple). Language models pad
/// their prompts instead; see `nnsight_models::LanguageModel::tracer`.
pub trait Concat: Sized {
    /// The number of rows (the batch size) of this input.
    fn rows(&self) -> usize;

    /// `parts` joined along dimension 0.
    ///
    /// # Errors
    /// [`Error::Input`] when the parts differ in any other dimension.
    fn concat(parts: Vec<Self>) -> Result<Self>;
}

impl<B: Backend, const D: usize, K: BasicOps<B>> Concat for Tensor<B, D, K> {
    fn rows(&self) -> usize {
        self.dims()[0]
    }

    fn concat(parts: Vec<Self>) -> Result<Self> {
        let Some(first) = parts.first() else {
            return Err(Error::Input { problem: "no invoke has an input".to_owned() });
        };
        let shape = first.dims();
        for (i, part) in parts.iter().enumerate() {
            let dims = part.dims();
            if dims[1..] != shape[1..] {
                return Err(Error::Input {
                    problem: format!(
                        "the inputs of the invokes cannot form one batch: input {i} has shape {dims:?}, \
                         input 0 has {shape:?} (only dimension 0 may differ)"
                    ),
                });
            }
        }
        Ok(Tensor::cat(parts, 0))
    }
}

macro_rules! concat_tuples {
    ($(($($name:ident $idx:tt),+))*) => {$(
        impl<$($name: Concat),+> Concat for ($($name,)+) {
            fn rows(&self) -> usize {
                self.0.rows()
            }

            #[allow(non_snake_case)]
            fn concat(parts: Vec<Self>) -> Result<Self> {
                $(let mut $name = Vec::with_capacity(parts.len());)+
                for part in parts {
                    $($name.push(part.$idx);)+
                }
                Ok(($($name::concat($name)?,)+))
            }
        }
    )*};
}
concat_tuples! {
    (A 0)
    (A 0, C 1)
    (A 0, C 1, D 2)
    (A 0, C 1, D 2, E 3)
}

/// The rows each invoke sees, from the number of rows of each invoke's input (`None`: an invoke
/// without input, which sees the whole batch).
///
/// Narrowing applies only when two or more invokes have inputs; with one, every body sees the
/// whole batch, as in nnsight.
pub fn layout(rows: &[Option<usize>]) -> Vec<Option<Rows>> {
    let total: usize = rows.iter().flatten().sum();
    let narrowed = rows.iter().flatten().count() >= 2;
    let mut start = 0;
    rows.iter()
        .map(|count| {
            let count = (*count)?;
            let range = Rows { start, len: count, total, dim: 0, part: 0 };
            start += count;
            narrowed.then_some(range)
        })
        .collect()
}

/// The rows each invoke sees when the model's input is made of several batches (*parts*, such
/// as CLIP's texts, part 0, and images, part 1): from each invoke's `(part, rows)` (`None`: an
/// invoke without input, which sees the whole batch).
///
/// Each part's invokes own consecutive rows of that part. Every invoke with an input gets its
/// rows, even one alone in its part: the values of the other parts' modules are not its own, so
/// it sees those whole and cannot write them.
pub fn layout_parts(inputs: &[Option<(usize, usize)>]) -> Vec<Option<Rows>> {
    let parts = inputs.iter().flatten().map(|&(part, _)| part + 1).max().unwrap_or(0);
    let mut totals = vec![0; parts];
    for &(part, count) in inputs.iter().flatten() {
        totals[part] += count;
    }
    let mut starts = vec![0; parts];
    inputs
        .iter()
        .map(|input| {
            let (part, len) = (*input)?;
            let start = starts[part];
            starts[part] += len;
            Some(Rows { start, len, total: totals[part], dim: 0, part })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invokes_own_consecutive_rows_and_empty_invokes_see_everything() {
        let rows = layout(&[Some(2), None, Some(1)]);
        assert_eq!(rows[0], Some(Rows { start: 0, len: 2, total: 3, dim: 0, part: 0 }));
        assert_eq!(rows[1], None);
        assert_eq!(rows[2], Some(Rows { start: 2, len: 1, total: 3, dim: 0, part: 0 }));
        // One invoke with input: nothing to narrow.
        assert_eq!(layout(&[Some(2), None]), vec![None, None]);
    }

    #[test]
    fn each_part_has_its_own_consecutive_rows() {
        let rows = layout_parts(&[Some((1, 1)), Some((0, 2)), None, Some((1, 3)), Some((0, 1))]);
        assert_eq!(rows[0], Some(Rows { start: 0, len: 1, total: 4, dim: 0, part: 1 }));
        assert_eq!(rows[1], Some(Rows { start: 0, len: 2, total: 3, dim: 0, part: 0 }));
        assert_eq!(rows[2], None);
        assert_eq!(rows[3], Some(Rows { start: 1, len: 3, total: 4, dim: 0, part: 1 }));
        assert_eq!(rows[4], Some(Rows { start: 2, len: 1, total: 3, dim: 0, part: 0 }));
        // Alone in its part, an invoke still has its rows (so other parts' values are not its own).
        assert_eq!(
            layout_parts(&[Some((0, 2))]),
            vec![Some(Rows { start: 0, len: 2, total: 2, dim: 0, part: 0 })]
        );
    }
}
