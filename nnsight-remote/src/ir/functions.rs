//! The closed lists of element-wise functions, comparisons and reductions the IR applies.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An element-wise function of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnaryFn {
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// `e^x`.
    Exp,
    /// Natural logarithm.
    Log,
    /// `ln(1 + x)`.
    Log1p,
    /// Square root.
    Sqrt,
    /// `1 / x`.
    Recip,
    /// Sine.
    Sin,
    /// Cosine.
    Cos,
    /// Hyperbolic tangent.
    Tanh,
    /// The error function.
    Erf,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `max(x, 0)`.
    Relu,
    /// GELU (the erf form).
    Gelu,
    /// `x · sigmoid(x)`.
    Silu,
    /// Logical not of a boolean tensor.
    Not,
}

/// An element-wise function of two tensors (broadcast) or of a tensor and a scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BinaryFn {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a · b`.
    Mul,
    /// `a / b`.
    Div,
    /// `a ^ b`.
    Pow,
    /// The remainder of `a / b`, with the sign of `b`.
    Rem,
    /// The larger of `a` and `b`.
    Max,
    /// The smaller of `a` and `b`.
    Min,
}

/// An element-wise comparison, giving a boolean tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompareFn {
    /// `a == b`.
    Eq,
    /// `a != b`.
    Ne,
    /// `a < b`.
    Lt,
    /// `a <= b`.
    Le,
    /// `a > b`.
    Gt,
    /// `a >= b`.
    Ge,
}

/// A reduction over one dimension (kept, with size 1) or over every element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReduceFn {
    /// The sum.
    Sum,
    /// The mean.
    Mean,
    /// The product.
    Prod,
    /// The largest element.
    Max,
    /// The smallest element.
    Min,
    /// The index of the largest element (ties: the first); needs a dimension.
    Argmax,
    /// The index of the smallest element (ties: the first); needs a dimension.
    Argmin,
}

impl ReduceFn {
    /// Whether the reduction needs a dimension (the index reductions do).
    pub fn needs_dim(self) -> bool {
        matches!(self, ReduceFn::Argmax | ReduceFn::Argmin)
    }
}

/// Which part of a top-k a node takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TopKPart {
    /// The `k` largest values, largest first.
    Values,
    /// Their indices (64-bit integers).
    Indices,
}
