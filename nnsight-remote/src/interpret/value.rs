//! The values an interpreted program computes: a burn tensor of rank 1 to 4, float, integer or
//! boolean, whose rank and kind are known only at run time.

use burn::prelude::*;
use burn::tensor::DType as BurnDType;
use nnsight::site::ErasedValue;

/// A tensor of rank 1–4 and any kind, as the interpreter holds it.
#[derive(Clone, Debug)]
#[allow(missing_docs)] // the variants are the rank and kind they name
pub enum Value<B: Backend> {
    F1(Tensor<B, 1>),
    F2(Tensor<B, 2>),
    F3(Tensor<B, 3>),
    F4(Tensor<B, 4>),
    I1(Tensor<B, 1, Int>),
    I2(Tensor<B, 2, Int>),
    I3(Tensor<B, 3, Int>),
    I4(Tensor<B, 4, Int>),
    B1(Tensor<B, 1, Bool>),
    B2(Tensor<B, 2, Bool>),
    B3(Tensor<B, 3, Bool>),
    B4(Tensor<B, 4, Bool>),
}

/// Applies `$body` to the tensor of any variant, binding it as `$x`.
macro_rules! each {
    ($value:expr, $x:ident => $body:expr) => {
        match $value {
            Value::F1($x) => $body,
            Value::F2($x) => $body,
            Value::F3($x) => $body,
            Value::F4($x) => $body,
            Value::I1($x) => $body,
            Value::I2($x) => $body,
            Value::I3($x) => $body,
            Value::I4($x) => $body,
            Value::B1($x) => $body,
            Value::B2($x) => $body,
            Value::B3($x) => $body,
            Value::B4($x) => $body,
        }
    };
}

/// Maps a tensor of any variant to one of the same variant, binding it as `$x`.
macro_rules! map_each {
    ($value:expr, $x:ident => $body:expr) => {
        match $value {
            Value::F1($x) => Value::F1($body),
            Value::F2($x) => Value::F2($body),
            Value::F3($x) => Value::F3($body),
            Value::F4($x) => Value::F4($body),
            Value::I1($x) => Value::I1($body),
            Value::I2($x) => Value::I2($body),
            Value::I3($x) => Value::I3($body),
            Value::I4($x) => Value::I4($body),
            Value::B1($x) => Value::B1($body),
            Value::B2($x) => Value::B2($body),
            Value::B3($x) => Value::B3($body),
            Value::B4($x) => Value::B4($body),
        }
    };
}
pub(crate) use map_each;

/// The kind of a value's elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Floating point.
    Float,
    /// Integer.
    Int,
    /// Boolean.
    Bool,
}

impl<B: Backend> Value<B> {
    /// The value of a site, if it is a tensor of a rank and kind the interpreter holds.
    pub fn from_erased(value: &dyn ErasedValue) -> Option<Self> {
        let any = value.as_any();
        macro_rules! try_each {
            ($($variant:ident: $ty:ty),*) => {
                $(if let Some(t) = any.downcast_ref::<$ty>() {
                    return Some(Value::$variant(t.clone()));
                })*
            };
        }
        try_each!(
            F1: Tensor<B, 1>, F2: Tensor<B, 2>, F3: Tensor<B, 3>, F4: Tensor<B, 4>,
            I1: Tensor<B, 1, Int>, I2: Tensor<B, 2, Int>, I3: Tensor<B, 3, Int>, I4: Tensor<B, 4, Int>,
            B1: Tensor<B, 1, Bool>, B2: Tensor<B, 2, Bool>, B3: Tensor<B, 3, Bool>, B4: Tensor<B, 4, Bool>
        );
        None
    }

    /// The tensor, boxed for a site.
    pub fn into_erased(self) -> Box<dyn ErasedValue> {
        each!(self, x => Box::new(x) as Box<dyn ErasedValue>)
    }

    /// The dimensions.
    pub fn dims(&self) -> Vec<usize> {
        each!(self, x => x.dims().to_vec())
    }

    /// The rank.
    pub fn rank(&self) -> usize {
        self.dims().len()
    }

    /// The element kind.
    pub fn kind(&self) -> Kind {
        match self {
            Value::F1(_) | Value::F2(_) | Value::F3(_) | Value::F4(_) => Kind::Float,
            Value::I1(_) | Value::I2(_) | Value::I3(_) | Value::I4(_) => Kind::Int,
            Value::B1(_) | Value::B2(_) | Value::B3(_) | Value::B4(_) => Kind::Bool,
        }
    }

    /// The element type.
    pub fn dtype(&self) -> BurnDType {
        each!(self, x => x.dtype())
    }

    /// The elements as bytes in the tensor's element type, row-major (what a safetensors file
    /// holds), with the shape.
    pub fn to_bytes(&self) -> (Vec<usize>, BurnDType, Vec<u8>) {
        let data = each!(self, x => x.to_data());
        (data.shape.to_vec(), data.dtype, data.as_bytes().to_vec())
    }

    /// `self` describes itself for messages: `f32 [1, 4, 8]`.
    pub fn describe(&self) -> String {
        format!("{:?} {:?}", self.dtype(), self.dims())
    }
}
