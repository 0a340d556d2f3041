//! burn's description of one tensor operation ([`OperationIr`]) lowered to the IR's closed list,
//! or an error naming the operation. Each lowered node runs, when interpreted, the same burn
//! primitive the body ran, so interpreted and compiled bodies agree bit for bit.

use std::collections::HashMap;

use burn_backend::{DType as BurnDType, TensorData};
use burn_ir::{
    BaseOperationIr, BinaryOpIr, BoolOperationIr, FloatOperationIr, IntOperationIr, ModuleOperationIr,
    NumericOperationIr, OperationIr, ScalarIr, TensorId, TensorIr,
};

use super::tape::Tape;
use crate::ir::{BinaryFn, CompareFn, DType, Op, ReduceFn, Scalar, SliceRange, TopKPart, UnaryFn};

type Lowered = Result<(), String>;

/// Lowers `op`, registered while a body runs, onto the tape.
pub(crate) fn lower(
    tape: &mut Tape,
    op: &OperationIr,
    constants: &mut HashMap<TensorId, TensorData>,
) -> Lowered {
    let mut l = Lowering { tape, constants };
    match op {
        OperationIr::BaseFloat(op) | OperationIr::BaseInt(op) | OperationIr::BaseBool(op) => l.base(op),
        OperationIr::NumericFloat(_, op) | OperationIr::NumericInt(_, op) => l.numeric(op),
        OperationIr::Float(_, op) => l.float(op),
        OperationIr::Int(op) => match op {
            IntOperationIr::IntoFloat(c) => l.cast(&c.input, &c.out),
            other => Err(refused(other)),
        },
        OperationIr::Bool(op) => match op {
            BoolOperationIr::IntoFloat(c) | BoolOperationIr::IntoInt(c) => l.cast(&c.input, &c.out),
            BoolOperationIr::Not(u) => l.unary(UnaryFn::Not, &u.input, &u.out),
            other => Err(refused(other)),
        },
        OperationIr::Module(op) => match op {
            ModuleOperationIr::Linear(d) => {
                let x = l.input(&d.x)?;
                let weight = l.input(&d.weight)?;
                let bias = d.bias.as_ref().map(|b| l.input(b)).transpose()?;
                l.define(Op::Linear { x, weight, bias }, &d.out)
            }
            other => Err(refused(other)),
        },
        // A tensor made from data (registered as a constant, attached where a body uses it).
        OperationIr::Drop(_) | OperationIr::Init(_) => Ok(()),
        other => Err(refused(other)),
    }
}

/// The error for an operation outside the IR's list, naming it (`Gather`, `Conv2d`, ...).
fn refused(op: &impl std::fmt::Debug) -> String {
    let text = format!("{op:?}");
    let name: String = text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    format!(
        "the body uses burn's `{name}`, which the IR cannot express (its operations: elementwise \
         arithmetic and math, comparisons, where, reductions, matmul, linear, reshape, permute, \
         transpose, expand, slices, index-select, cat, cast, top-k)"
    )
}

/// The IR's element type for burn's.
pub(crate) fn dtype(d: BurnDType) -> Result<DType, String> {
    Ok(match d {
        BurnDType::F32 => DType::F32,
        BurnDType::F64 => DType::F64,
        BurnDType::F16 => DType::F16,
        BurnDType::BF16 => DType::Bf16,
        BurnDType::I64 => DType::I64,
        BurnDType::I32 => DType::I32,
        BurnDType::Bool(_) => DType::Bool,
        other => return Err(format!("the element type {other:?} is not one of the IR's")),
    })
}

fn scalar(s: &ScalarIr) -> Scalar {
    Scalar(match *s {
        ScalarIr::Float(x) => x,
        ScalarIr::Int(x) => x as f64,
        ScalarIr::UInt(x) => x as f64,
        ScalarIr::Bool(x) => f64::from(u8::from(x)),
    })
}

struct Lowering<'a> {
    tape: &'a mut Tape,
    constants: &'a mut HashMap<TensorId, TensorData>,
}

impl Lowering<'_> {
    fn input(&mut self, t: &TensorIr) -> Result<u32, String> {
        self.tape.resolve(t.id, self.constants)
    }

    fn define(&mut self, op: Op, out: &TensorIr) -> Lowered {
        self.tape.define(op, out.id).map(|_| ()).ok_or_else(|| "no body is running".into())
    }

    fn unary(&mut self, fun: UnaryFn, input: &TensorIr, out: &TensorIr) -> Lowered {
        let x = self.input(input)?;
        self.define(Op::Unary { fun, x }, out)
    }

    fn binary(&mut self, fun: BinaryFn, d: &BinaryOpIr) -> Lowered {
        let (lhs, rhs) = (self.input(&d.lhs)?, self.input(&d.rhs)?);
        self.define(Op::Binary { fun, lhs, rhs }, &d.out)
    }

    fn binary_scalar(&mut self, fun: BinaryFn, d: &burn_ir::ScalarOpIr) -> Lowered {
        let x = self.input(&d.lhs)?;
        self.define(Op::BinaryScalar { fun, x, scalar: scalar(&d.rhs) }, &d.out)
    }

    fn compare(&mut self, fun: CompareFn, d: &BinaryOpIr) -> Lowered {
        let (lhs, rhs) = (self.input(&d.lhs)?, self.input(&d.rhs)?);
        self.define(Op::Compare { fun, lhs, rhs }, &d.out)
    }

    fn compare_scalar(&mut self, fun: CompareFn, d: &burn_ir::ScalarOpIr) -> Lowered {
        let x = self.input(&d.lhs)?;
        self.define(Op::CompareScalar { fun, x, scalar: scalar(&d.rhs) }, &d.out)
    }

    fn reduce(&mut self, fun: ReduceFn, input: &TensorIr, out: &TensorIr, dim: Option<usize>) -> Lowered {
        let x = self.input(input)?;
        self.define(Op::Reduce { fun, x, dim: dim.map(|d| d as u32) }, out)
    }

    fn cast(&mut self, input: &TensorIr, out: &TensorIr) -> Lowered {
        let x = self.input(input)?;
        self.define(Op::Cast { x, dtype: dtype(out.dtype)? }, out)
    }

    /// A tensor the body creates from nothing (`zeros`, `full`): a constant, attached when used.
    fn constant(&mut self, out: &TensorIr, fill: f64) -> Lowered {
        let shape = out.shape.clone();
        let data = TensorData::full(shape, fill as f32).convert_dtype(out.dtype);
        self.constants.insert(out.id, data);
        Ok(())
    }

    fn ranges(slices: &[burn_backend::Slice]) -> Result<Vec<SliceRange>, String> {
        slices
            .iter()
            .map(|s| match s.step {
                1 => Ok(SliceRange { start: s.start as i64, end: s.end.map(|e| e as i64) }),
                step => Err(format!("a slice with step {step} (the IR's slices have step 1)")),
            })
            .collect()
    }

    fn base(&mut self, op: &BaseOperationIr) -> Lowered {
        match op {
            BaseOperationIr::Reshape(d) => {
                let x = self.input(&d.input)?;
                let shape = d.out.shape.as_slice().iter().map(|&s| s as i64).collect();
                self.define(Op::Reshape { x, shape }, &d.out)
            }
            BaseOperationIr::Expand(d) => {
                let x = self.input(&d.input)?;
                let shape = d.out.shape.as_slice().iter().map(|&s| s as u32).collect();
                self.define(Op::Expand { x, shape }, &d.out)
            }
            BaseOperationIr::SwapDims(d) => {
                let x = self.input(&d.input)?;
                self.define(Op::Transpose { x, dim0: d.dim1 as u32, dim1: d.dim2 as u32 }, &d.out)
            }
            BaseOperationIr::Permute(d) => {
                let x = self.input(&d.input)?;
                self.define(Op::Permute { x, dims: d.axes.iter().map(|&a| a as u32).collect() }, &d.out)
            }
            BaseOperationIr::Slice(d) => {
                let x = self.input(&d.tensor)?;
                self.define(Op::Slice { x, ranges: Self::ranges(&d.ranges)? }, &d.out)
            }
            BaseOperationIr::SliceAssign(d) => {
                let x = self.input(&d.tensor)?;
                let value = self.input(&d.value)?;
                self.define(Op::SliceAssign { x, ranges: Self::ranges(&d.ranges)?, value }, &d.out)
            }
            BaseOperationIr::Select(d) => {
                let x = self.input(&d.tensor)?;
                let indices = self.input(&d.indices)?;
                self.define(Op::IndexSelect { x, dim: d.dim as u32, indices }, &d.out)
            }
            BaseOperationIr::MaskWhere(d) => {
                let otherwise = self.input(&d.tensor)?;
                let mask = self.input(&d.mask)?;
                let value = self.input(&d.value)?;
                self.define(Op::Where { mask, value, otherwise }, &d.out)
            }
            BaseOperationIr::MaskFill(d) => {
                let otherwise = self.input(&d.tensor)?;
                let mask = self.input(&d.mask)?;
                let fill = self.tape.push(Op::FullLike { x: otherwise, value: scalar(&d.value) });
                let value = fill.ok_or("no body is running")?;
                self.define(Op::Where { mask, value, otherwise }, &d.out)
            }
            BaseOperationIr::Equal(d) => self.compare(CompareFn::Eq, d),
            BaseOperationIr::EqualElem(d) => self.compare_scalar(CompareFn::Eq, d),
            BaseOperationIr::Cat(d) => {
                let xs = d.tensors.iter().map(|t| self.input(t)).collect::<Result<_, _>>()?;
                self.define(Op::Cat { xs, dim: d.dim as u32 }, &d.out)
            }
            BaseOperationIr::Cast(d) => self.cast(&d.input, &d.out),
            BaseOperationIr::Zeros(d) => self.constant(&d.out, 0.0),
            BaseOperationIr::Ones(d) => self.constant(&d.out, 1.0),
            other => Err(refused(other)),
        }
    }

    fn numeric(&mut self, op: &NumericOperationIr) -> Lowered {
        use NumericOperationIr as N;
        match op {
            N::Add(d) => self.binary(BinaryFn::Add, d),
            N::Sub(d) => self.binary(BinaryFn::Sub, d),
            N::Mul(d) => self.binary(BinaryFn::Mul, d),
            N::Div(d) => self.binary(BinaryFn::Div, d),
            N::Rem(d) => self.binary(BinaryFn::Rem, d),
            N::AddScalar(d) => self.binary_scalar(BinaryFn::Add, d),
            N::SubScalar(d) => self.binary_scalar(BinaryFn::Sub, d),
            N::MulScalar(d) => self.binary_scalar(BinaryFn::Mul, d),
            N::DivScalar(d) => self.binary_scalar(BinaryFn::Div, d),
            N::RemScalar(d) => self.binary_scalar(BinaryFn::Rem, d),
            N::Abs(d) => self.unary(UnaryFn::Abs, &d.input, &d.out),
            N::Full(d) => self.constant(&d.out, scalar(&d.value).0),
            N::Mean(d) => self.reduce(ReduceFn::Mean, &d.input, &d.out, None),
            N::Sum(d) => self.reduce(ReduceFn::Sum, &d.input, &d.out, None),
            N::Prod(d) => self.reduce(ReduceFn::Prod, &d.input, &d.out, None),
            N::Max(d) => self.reduce(ReduceFn::Max, &d.input, &d.out, None),
            N::Min(d) => self.reduce(ReduceFn::Min, &d.input, &d.out, None),
            N::MeanDim(d) => self.reduce(ReduceFn::Mean, &d.input, &d.out, Some(d.axis)),
            N::SumDim(d) => self.reduce(ReduceFn::Sum, &d.input, &d.out, Some(d.axis)),
            N::ProdDim(d) => self.reduce(ReduceFn::Prod, &d.input, &d.out, Some(d.axis)),
            N::MaxDim(d) => self.reduce(ReduceFn::Max, &d.input, &d.out, Some(d.axis)),
            N::MinDim(d) => self.reduce(ReduceFn::Min, &d.input, &d.out, Some(d.axis)),
            N::ArgMax(d) => self.reduce(ReduceFn::Argmax, &d.input, &d.out, Some(d.axis)),
            N::ArgMin(d) => self.reduce(ReduceFn::Argmin, &d.input, &d.out, Some(d.axis)),
            N::TopK(d) | N::ArgTopK(d) => {
                let x = self.input(&d.input)?;
                let k = d.out.shape.as_slice()[d.axis] as u32;
                let part = if matches!(op, N::TopK(_)) { TopKPart::Values } else { TopKPart::Indices };
                self.define(Op::TopK { x, k, dim: d.axis as u32, part }, &d.out)
            }
            N::Greater(d) => self.compare(CompareFn::Gt, d),
            N::GreaterEqual(d) => self.compare(CompareFn::Ge, d),
            N::Lower(d) => self.compare(CompareFn::Lt, d),
            N::LowerEqual(d) => self.compare(CompareFn::Le, d),
            N::GreaterElem(d) => self.compare_scalar(CompareFn::Gt, d),
            N::GreaterEqualElem(d) => self.compare_scalar(CompareFn::Ge, d),
            N::LowerElem(d) => self.compare_scalar(CompareFn::Lt, d),
            N::LowerEqualElem(d) => self.compare_scalar(CompareFn::Le, d),
            N::Powi(d) => self.binary(BinaryFn::Pow, d),
            N::PowiScalar(d) => self.binary_scalar(BinaryFn::Pow, d),
            other => Err(refused(other)),
        }
    }

    fn float(&mut self, op: &FloatOperationIr) -> Lowered {
        use FloatOperationIr as F;
        fn unary(op: &FloatOperationIr) -> Option<(UnaryFn, &burn_ir::UnaryOpIr)> {
            use FloatOperationIr as F;
            Some(match op {
                F::Exp(d) => (UnaryFn::Exp, d),
                F::Log(d) => (UnaryFn::Log, d),
                F::Sqrt(d) => (UnaryFn::Sqrt, d),
                F::Cos(d) => (UnaryFn::Cos, d),
                F::Sin(d) => (UnaryFn::Sin, d),
                F::Tanh(d) => (UnaryFn::Tanh, d),
                F::Erf(d) => (UnaryFn::Erf, d),
                F::Recip(d) => (UnaryFn::Recip, d),
                _ => return None,
            })
        }
        if let Some((fun, d)) = unary(op) {
            return self.unary(fun, &d.input, &d.out);
        }
        match op {
            F::PowfScalar(d) => self.binary_scalar(BinaryFn::Pow, d),
            F::Powf(d) => self.binary(BinaryFn::Pow, d),
            F::IntoInt(d) => self.cast(&d.input, &d.out),
            F::Matmul(d) => {
                let (lhs, rhs) = (self.input(&d.lhs)?, self.input(&d.rhs)?);
                self.define(Op::Matmul { lhs, rhs }, &d.out)
            }
            F::Random(_) => Err("the body draws random numbers, which the IR cannot express: \
                                 make the tensor before the trace (it is attached as a constant)"
                .into()),
            other => Err(refused(other)),
        }
    }
}
