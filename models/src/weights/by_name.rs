//! [`ByName`]: tensors read by Hugging Face name as `f32` data (from a checkpoint, or dequantized
//! from another format), `nn.Linear` weights transposed once into burn's layout.

use burn::prelude::*;

use nnsight::{Error, Result};

use super::{Kind, TensorSource, Weights};

/// Tensors read by Hugging Face name, as `f32` data of the asked shape.
pub(crate) struct ByName<F, B: Backend> {
    /// Reads tensor `name` of `shape` (row-major, Hugging Face layout).
    pub(crate) read: F,
    /// Where the tensors come from, for error messages.
    pub(crate) origin: String,
    /// Where the tensors are put.
    pub(crate) device: B::Device,
}

impl<F: Fn(&str, &[usize]) -> Result<TensorData>, B: Backend> TensorSource<B> for ByName<F, B> {
    fn get<const D: usize>(&self, name: &str, shape: [usize; D], _: Kind) -> Result<Tensor<B, D>> {
        Ok(Tensor::from_data((self.read)(name, &shape)?, &self.device))
    }

    fn linear_weight(&self, name: &str, d_in: usize, d_out: usize) -> Result<Tensor<B, 2>> {
        let data = (self.read)(name, &[d_out, d_in])?;
        let values = data.into_vec::<f32>().map_err(|e| Error::BadWeight {
            name: name.to_owned(),
            file: self.origin.clone(),
            problem: format!("not f32 data: {e:?}"),
        })?;
        // Transposed once here, so that every forward pass multiplies by a contiguous `[in, out]`.
        Ok(Tensor::from_data(TensorData::new(transpose(&values, d_out, d_in), [d_in, d_out]), &self.device))
    }
}

/// The tensors of a safetensors checkpoint by Hugging Face name. A checkpoint of the body alone
/// (saved without the head) stores `prefix.x` as `x`: when it has `unprefixed` (e.g.
/// `embed_tokens.weight`) but not `prefix.unprefixed`, names under `prefix.` are read without it.
pub(crate) fn checkpoint<'w, B: Backend>(
    weights: &'w Weights,
    prefix: &'w str,
    unprefixed: &str,
    device: &B::Device,
) -> ByName<impl Fn(&str, &[usize]) -> Result<TensorData> + 'w, B> {
    let bare = !weights.contains(&format!("{prefix}.{unprefixed}")) && weights.contains(unprefixed);
    ByName {
        read: move |name: &str, shape: &[usize]| match name
            .strip_prefix(prefix)
            .and_then(|n| n.strip_prefix('.'))
        {
            Some(body) if bare => weights.read(body, shape),
            _ => weights.read(name, shape),
        },
        origin: weights.describe(),
        device: device.clone(),
    }
}

/// Tensors a caller gives as `f32` values by Hugging Face name and shape (a family's
/// `from_tensors`, e.g. dequantized from a GGUF file); a wrong number of values is an
/// [`Error::BadWeight`] naming the tensor and `origin`.
pub(crate) fn given<B: Backend, F: Fn(&str, &[usize]) -> Result<Vec<f32>>>(
    tensors: F,
    origin: String,
    device: &B::Device,
) -> ByName<impl Fn(&str, &[usize]) -> Result<TensorData>, B> {
    let described = origin.clone();
    ByName {
        read: move |name: &str, shape: &[usize]| {
            let values = tensors(name, shape)?;
            let expected: usize = shape.iter().product();
            if values.len() != expected {
                return Err(Error::BadWeight {
                    name: name.to_owned(),
                    file: described.clone(),
                    problem: format!("{} values given, shape {shape:?} needs {expected}", values.len()),
                });
            }
            Ok(TensorData::new(values, shape.to_vec()))
        },
        origin,
        device: device.clone(),
    }
}

/// `values` (`rows × cols`, row-major) transposed, tile by tile to stay in cache.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut out = vec![0.0; values.len()];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    out[c * rows + r] = values[r * cols + c];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_moves_rows_to_columns() {
        let values: Vec<f32> = (0..6).map(|v| v as f32).collect();
        assert_eq!(transpose(&values, 2, 3), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let big: Vec<f32> = (0..70 * 45).map(|v| v as f32).collect();
        let back = transpose(&transpose(&big, 70, 45), 45, 70);
        assert_eq!(back, big);
    }
}
