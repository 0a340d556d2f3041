//! The tensors beside a program, as one safetensors file each way: the literals a program names
//! ([`Op::Tensor`](crate::ir::Op::Tensor)) go with it, and its saves come back — files numpy,
//! PyTorch and any safetensors reader open, nothing unpickled anywhere. Element types stay as
//! they are (an `f16` literal is an `f16` tensor).

use std::collections::BTreeMap;

use burn::prelude::*;
use burn::tensor::{BoolStore, DType as BurnDType, TensorData};
use safetensors::tensor::{Dtype, TensorView};

use crate::diagnostic::{Code, Diagnostic};
use crate::interpret::Value;

/// burn's element type for tensor `name`'s safetensors one, if the IR holds it.
fn element_type(name: &str, dtype: Dtype) -> Result<BurnDType, Diagnostic> {
    Ok(match dtype {
        Dtype::F32 => BurnDType::F32,
        Dtype::F64 => BurnDType::F64,
        Dtype::F16 => BurnDType::F16,
        Dtype::BF16 => BurnDType::BF16,
        Dtype::I64 => BurnDType::I64,
        Dtype::I32 => BurnDType::I32,
        Dtype::BOOL => BurnDType::Bool(BoolStore::Native),
        other => {
            let message = format!("tensor `{name}` is {other:?}, which the IR does not hold");
            return Err(Diagnostic::program(Code::BadTensors, message));
        }
    })
}

/// The tensors of a safetensors file, by name, as data (each in its element type).
///
/// # Errors
/// [`Code::BadTensors`]: not a safetensors file (truncated, offsets out of bounds, ...), or a
/// tensor of an element type the IR does not hold (`f32`, `f64`, `f16`, `bf16`, `i64`, `i32`,
/// `bool`), naming it.
pub fn read_data(bytes: &[u8]) -> Result<BTreeMap<String, TensorData>, Diagnostic> {
    let bad = |message: String| Diagnostic::program(Code::BadTensors, message);
    let file = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        let dtype = element_type(&name, view.dtype())?;
        out.insert(name, TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype));
    }
    Ok(out)
}

/// The tensors of a safetensors file, by name, on `device`.
///
/// # Errors
/// As [`read_data`]; also a tensor of a rank the IR does not hold (ranks 1 to 4).
pub fn read<B: Backend>(bytes: &[u8], device: &B::Device) -> Result<BTreeMap<String, Value<B>>, Diagnostic> {
    let bad = |message: String| Diagnostic::program(Code::BadTensors, message);
    let mut out = BTreeMap::new();
    for (name, data) in read_data(bytes)? {
        let (shape, dtype) = (data.shape.to_vec(), data.dtype);
        if shape.is_empty() || shape.len() > 4 {
            return Err(bad(format!("tensor `{name}` has rank {}; the IR holds ranks 1 to 4", shape.len())));
        }
        let options = (device, dtype);
        macro_rules! build {
            ($k:ty, $v1:ident, $v2:ident, $v3:ident, $v4:ident) => {
                match shape.len() {
                    1 => Value::$v1(Tensor::<B, 1, $k>::from_data(data, options)),
                    2 => Value::$v2(Tensor::<B, 2, $k>::from_data(data, options)),
                    3 => Value::$v3(Tensor::<B, 3, $k>::from_data(data, options)),
                    _ => Value::$v4(Tensor::<B, 4, $k>::from_data(data, options)),
                }
            };
        }
        let value = match dtype {
            BurnDType::I64 | BurnDType::I32 => build!(Int, I1, I2, I3, I4),
            BurnDType::Bool(_) => build!(Bool, B1, B2, B3, B4),
            _ => build!(Float, F1, F2, F3, F4),
        };
        out.insert(name, value);
    }
    Ok(out)
}

/// The shape and element type of every tensor of a safetensors file, read from its header only
/// (what [`validate`](crate::validate::validate) needs, without building tensors).
///
/// # Errors
/// As [`read`].
pub fn shapes(bytes: &[u8]) -> Result<BTreeMap<String, (Vec<usize>, crate::ir::DType)>, Diagnostic> {
    let bad = |message: String| Diagnostic::program(Code::BadTensors, message);
    let file = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, view) in file.tensors() {
        let dtype = crate::record::ir_dtype(element_type(&name, view.dtype())?)
            .ok_or_else(|| bad(format!("tensor `{name}` has an element type the IR does not hold")))?;
        let shape = view.shape().to_vec();
        if shape.is_empty() || shape.len() > 4 {
            return Err(bad(format!("tensor `{name}` has rank {}; the IR holds ranks 1 to 4", shape.len())));
        }
        out.insert(name, (shape, dtype));
    }
    Ok(out)
}

/// `values` as a safetensors file, each in its own element type.
///
/// # Errors
/// [`Code::BadTensors`] for a value of an element type safetensors has no name for.
pub fn write<B: Backend>(values: &BTreeMap<String, Value<B>>) -> Result<Vec<u8>, Diagnostic> {
    let parts = values.iter().map(|(name, value)| {
        let (shape, dtype, bytes) = value.to_bytes();
        (name.as_str(), shape, dtype, bytes)
    });
    write_parts(parts.collect())
}

/// Tensors' data (a recording's constants) as a safetensors file, as [`write()`].
///
/// # Errors
/// As [`write()`].
pub fn write_data(values: &BTreeMap<String, TensorData>) -> Result<Vec<u8>, Diagnostic> {
    let parts = values
        .iter()
        .map(|(name, data)| (name.as_str(), data.shape.to_vec(), data.dtype, data.as_bytes().to_vec()));
    write_parts(parts.collect())
}

/// `(name, shape, element type, bytes)`s as a safetensors file.
fn write_parts(parts: Vec<(&str, Vec<usize>, BurnDType, Vec<u8>)>) -> Result<Vec<u8>, Diagnostic> {
    let bad = |message: String| Diagnostic::program(Code::BadTensors, message);
    let mut named = Vec::with_capacity(parts.len());
    for (name, shape, dtype, bytes) in parts {
        let dtype = match dtype {
            BurnDType::F32 => Dtype::F32,
            BurnDType::F64 => Dtype::F64,
            BurnDType::F16 => Dtype::F16,
            BurnDType::BF16 => Dtype::BF16,
            BurnDType::I64 => Dtype::I64,
            BurnDType::I32 => Dtype::I32,
            BurnDType::Bool(BoolStore::Native | BoolStore::U8) => Dtype::BOOL,
            other => return Err(bad(format!("`{name}` is {other:?}, which a tensors file does not hold"))),
        };
        named.push((name, shape, dtype, bytes));
    }
    let views = named
        .iter()
        .map(|(name, shape, dtype, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes).map(|view| (*name, view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("a value does not fit its shape: {e}")))?;
    safetensors::serialize(views, None).map_err(|e| bad(format!("cannot write the tensors: {e}")))
}
