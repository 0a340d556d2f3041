//! One position of a `[batch, tokens, hidden]` value — nnsight's `h[:, p, :]` — read, replaced or
//! shifted in one call: [`Positions`].

use burn::tensor::{Tensor, backend::Backend};

use crate::error::{Error, Result};

/// Reading and writing one token position of a `[batch, tokens, hidden]` tensor (a residual
/// stream, an attention or MLP output), as nnsight writes `h[:, p, :]`. A position counts from the
/// start, or from the end when negative (`-1`: the last token), as Python indexes.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
/// use nnsight::Positions;
///
/// # fn main() -> nnsight::Result<()> {
/// let device = Default::default();
/// let h = Tensor::<Flex, 3>::zeros([2, 5, 4], &device);
/// let last = h.clone().at_pos(-1)?; // [2, 4]
/// let h = h.set_pos(1, last + 1.0)?.add_at_pos(-1, Tensor::ones([4], &device))?;
/// assert_eq!(h.sum().into_scalar(), 2.0 * 4.0 + 2.0 * 4.0);
/// # Ok(())
/// # }
/// ```
pub trait Positions<B: Backend>: Sized {
    /// The values at `position`, `[batch, hidden]`.
    ///
    /// # Errors
    /// [`Error::Input`] for a position past either end.
    fn at_pos(self, position: isize) -> Result<Tensor<B, 2>>;

    /// The tensor with `position` replaced by `value` (`[batch, hidden]`).
    ///
    /// # Errors
    /// [`Error::Input`] for a position past either end or a `value` of another shape.
    fn set_pos(self, position: isize, value: Tensor<B, 2>) -> Result<Tensor<B, 3>>;

    /// The tensor with `delta` (`[hidden]`, e.g. a steering vector) added at `position` in every
    /// row of the batch.
    ///
    /// # Errors
    /// [`Error::Input`] for a position past either end or a `delta` of another width.
    fn add_at_pos(self, position: isize, delta: Tensor<B, 1>) -> Result<Tensor<B, 3>>;
}

impl<B: Backend> Positions<B> for Tensor<B, 3> {
    fn at_pos(self, position: isize) -> Result<Tensor<B, 2>> {
        let [batch, tokens, hidden] = self.dims();
        let p = resolve(position, tokens)?;
        Ok(self.narrow(1, p, 1).reshape([batch, hidden]))
    }

    fn set_pos(self, position: isize, value: Tensor<B, 2>) -> Result<Tensor<B, 3>> {
        let [batch, tokens, hidden] = self.dims();
        let p = resolve(position, tokens)?;
        if value.dims() != [batch, hidden] {
            return Err(Error::Input {
                problem: format!(
                    "the value for position {position} is {:?}; a [{batch}, {tokens}, {hidden}] tensor takes [{batch}, {hidden}]",
                    value.dims()
                ),
            });
        }
        Ok(self.slice_assign([0..batch, p..p + 1, 0..hidden], value.reshape([batch, 1, hidden])))
    }

    fn add_at_pos(self, position: isize, delta: Tensor<B, 1>) -> Result<Tensor<B, 3>> {
        let [batch, tokens, hidden] = self.dims();
        if delta.dims() != [hidden] {
            return Err(Error::Input {
                problem: format!(
                    "the vector added at position {position} is {:?}; a [{batch}, {tokens}, {hidden}] tensor takes [{hidden}]",
                    delta.dims()
                ),
            });
        }
        let at = self.clone().at_pos(position)?;
        self.set_pos(position, at + delta.unsqueeze::<2>())
    }
}

/// `position` as an index into `tokens` positions (negative: from the end).
fn resolve(position: isize, tokens: usize) -> Result<usize> {
    let index =
        if position < 0 { tokens.checked_sub(position.unsigned_abs()) } else { Some(position as usize) };
    match index {
        Some(p) if p < tokens => Ok(p),
        _ => Err(Error::Input {
            problem: format!("position {position} of a value with {tokens} tokens (−{tokens}..{tokens})"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    fn ramp() -> Tensor<Flex, 3> {
        let values: Vec<f32> = (0..24).map(|v| v as f32).collect();
        Tensor::from_data(TensorData::new(values, [2, 3, 4]), &Default::default())
    }

    #[test]
    fn positions_read_and_write_one_token_of_every_row() {
        let h = ramp();
        assert_eq!(
            h.clone().at_pos(1).unwrap().to_data().to_vec::<f32>().unwrap(),
            [4., 5., 6., 7., 16., 17., 18., 19.]
        );
        // -1 is the last token, as in Python.
        assert_eq!(h.clone().at_pos(-1).unwrap().to_data(), h.clone().at_pos(2).unwrap().to_data());
        let zero = Tensor::<Flex, 2>::zeros([2, 4], &Default::default());
        let written = h.clone().set_pos(0, zero).unwrap();
        let expected =
            h.clone().slice_assign([0..2, 0..1, 0..4], Tensor::zeros([2, 1, 4], &Default::default()));
        assert_eq!(written.to_data(), expected.to_data());
        let shifted = h.clone().add_at_pos(-3, Tensor::ones([4], &Default::default())).unwrap();
        assert_eq!((shifted - h).sum().into_scalar(), 8.0);
    }

    #[test]
    fn positions_past_either_end_and_wrong_shapes_are_errors() {
        let h = ramp();
        for p in [3, -4, isize::MIN, isize::MAX] {
            let error = h.clone().at_pos(p).unwrap_err();
            assert!(error.to_string().contains(&format!("position {p} of a value with 3 tokens")), "{error}");
        }
        let error = h.clone().set_pos(0, Tensor::zeros([1, 4], &Default::default())).unwrap_err();
        assert!(error.to_string().contains("takes [2, 4]"), "{error}");
        let error = h.add_at_pos(0, Tensor::zeros([5], &Default::default())).unwrap_err();
        assert!(error.to_string().contains("takes [4]"), "{error}");
    }
}
