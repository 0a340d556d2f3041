//! The tensor operations of the IR on interpreted values, each checked first so that bad
//! operands are an error naming the operation, never a panic inside burn.

use burn::prelude::*;
use burn::tensor::activation;
use burn::tensor::{FloatDType, IntDType, Slice};

use super::value::{Kind, Value, map_each};
use crate::ir::{BinaryFn, CompareFn, DType, ReduceFn, SliceRange, TopKPart, UnaryFn};

/// What is wrong with an operation's operands.
pub(crate) type OpResult<T> = std::result::Result<T, String>;

/// The arms of a map of one value: each `$in` variant's tensor bound as `$x`, `$body` wrapped in
/// `$out`; any other variant is an error naming what the operation takes.
macro_rules! map_arms {
    ($value:expr, $what:expr, $takes:literal, $x:ident => $body:expr, [$($in:ident => $out:ident),*]) => {
        match $value {
            $(Value::$in($x) => Ok(Value::$out($body)),)*
            other => Err(format!("{} takes {}, not {}", $what, $takes, other.describe())),
        }
    };
}

/// The arms of a map of two values of the same variant `$in` (bound as `$a`, `$b`).
macro_rules! pair_arms {
    ($lhs:expr, $rhs:expr, $what:expr, ($a:ident, $b:ident) => $body:expr, [$($in:ident => $out:ident),*]) => {
        match ($lhs, $rhs) {
            $((Value::$in($a), Value::$in($b)) => Ok(Value::$out($body)),)*
            (a, b) => Err(format!(
                "{} takes two float or two integer tensors of one rank, not {} and {}",
                $what,
                a.describe(),
                b.describe()
            )),
        }
    };
}

/// Maps the float variants with `$body` (binding the tensor as `$x`); other kinds are an error.
macro_rules! float_map {
    ($value:expr, $what:expr, $x:ident => $body:expr) => {
        map_arms!($value, $what, "a float tensor", $x => $body, [F1 => F1, F2 => F2, F3 => F3, F4 => F4])
    };
}

/// Maps the float and integer variants with `$body`; booleans are an error.
macro_rules! numeric_map {
    ($value:expr, $what:expr, $x:ident => $body:expr) => {
        map_arms!($value, $what, "a float or integer tensor", $x => $body,
            [F1 => F1, F2 => F2, F3 => F3, F4 => F4, I1 => I1, I2 => I2, I3 => I3, I4 => I4])
    };
}

/// As `numeric_map`, the result a boolean tensor of the same rank (comparisons).
macro_rules! compare_map {
    ($value:expr, $what:expr, $x:ident => $body:expr) => {
        map_arms!($value, $what, "a float or integer tensor", $x => $body,
            [F1 => B1, F2 => B2, F3 => B3, F4 => B4, I1 => B1, I2 => B2, I3 => B3, I4 => B4])
    };
}

/// Pairs two float or two integer values of the same rank; the result has their variant.
macro_rules! numeric_pair {
    ($lhs:expr, $rhs:expr, $what:expr, ($a:ident, $b:ident) => $body:expr) => {
        pair_arms!($lhs, $rhs, $what, ($a, $b) => $body,
            [F1 => F1, F2 => F2, F3 => F3, F4 => F4, I1 => I1, I2 => I2, I3 => I3, I4 => I4])
    };
}

/// As `numeric_pair`, the result a boolean tensor of the same rank (comparisons).
macro_rules! compare_pair {
    ($lhs:expr, $rhs:expr, $what:expr, ($a:ident, $b:ident) => $body:expr) => {
        pair_arms!($lhs, $rhs, $what, ($a, $b) => $body,
            [F1 => B1, F2 => B2, F3 => B3, F4 => B4, I1 => B1, I2 => B2, I3 => B3, I4 => B4])
    };
}

/// Checks that `a` and `b` broadcast: equal ranks, each dimension equal or 1 in one of them.
fn broadcast(what: &str, a: &[usize], b: &[usize]) -> OpResult<()> {
    if a.len() != b.len() {
        return Err(format!(
            "{what}: operands of rank {} and {} ({a:?} and {b:?}); reshape one first",
            a.len(),
            b.len()
        ));
    }
    if a.iter().zip(b).any(|(x, y)| x != y && *x != 1 && *y != 1) {
        return Err(format!("{what}: shapes {a:?} and {b:?} do not broadcast"));
    }
    Ok(())
}

fn dim_in(what: &str, dim: u32, rank: usize) -> OpResult<usize> {
    let dim = dim as usize;
    if dim < rank { Ok(dim) } else { Err(format!("{what}: dimension {dim} of a rank-{rank} tensor")) }
}

/// `fun(x)`.
pub(crate) fn unary<B: Backend>(fun: UnaryFn, x: Value<B>) -> OpResult<Value<B>> {
    let what = format!("`{}`", name(fun));
    match fun {
        UnaryFn::Neg => numeric_map!(x, what, t => t.neg()),
        UnaryFn::Abs => numeric_map!(x, what, t => t.abs()),
        UnaryFn::Exp => float_map!(x, what, t => t.exp()),
        UnaryFn::Log => float_map!(x, what, t => t.log()),
        UnaryFn::Log1p => float_map!(x, what, t => t.log1p()),
        UnaryFn::Sqrt => float_map!(x, what, t => t.sqrt()),
        UnaryFn::Recip => float_map!(x, what, t => t.recip()),
        UnaryFn::Sin => float_map!(x, what, t => t.sin()),
        UnaryFn::Cos => float_map!(x, what, t => t.cos()),
        UnaryFn::Tanh => float_map!(x, what, t => t.tanh()),
        UnaryFn::Erf => float_map!(x, what, t => t.erf()),
        UnaryFn::Sigmoid => float_map!(x, what, t => activation::sigmoid(t)),
        UnaryFn::Relu => float_map!(x, what, t => activation::relu(t)),
        UnaryFn::Gelu => float_map!(x, what, t => activation::gelu(t)),
        UnaryFn::Silu => float_map!(x, what, t => activation::silu(t)),
        UnaryFn::Not => match x {
            Value::B1(t) => Ok(Value::B1(t.bool_not())),
            Value::B2(t) => Ok(Value::B2(t.bool_not())),
            Value::B3(t) => Ok(Value::B3(t.bool_not())),
            Value::B4(t) => Ok(Value::B4(t.bool_not())),
            other => Err(format!("`not` takes a boolean tensor, not {}", other.describe())),
        },
    }
}

/// The wire name of a function enum (`gelu`, `add`, ...), for messages.
fn name(fun: impl serde::Serialize) -> String {
    serde_json::to_value(fun).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// `fun(lhs, rhs)`, broadcasting.
pub(crate) fn binary<B: Backend>(fun: BinaryFn, lhs: Value<B>, rhs: Value<B>) -> OpResult<Value<B>> {
    let what = format!("`{}`", name(fun));
    broadcast(&what, &lhs.dims(), &rhs.dims())?;
    match fun {
        BinaryFn::Add => numeric_pair!(lhs, rhs, what, (a, b) => a.add(b)),
        BinaryFn::Sub => numeric_pair!(lhs, rhs, what, (a, b) => a.sub(b)),
        BinaryFn::Mul => numeric_pair!(lhs, rhs, what, (a, b) => a.mul(b)),
        BinaryFn::Div => numeric_pair!(lhs, rhs, what, (a, b) => a.div(b)),
        BinaryFn::Rem => numeric_pair!(lhs, rhs, what, (a, b) => a.remainder(b)),
        BinaryFn::Max => numeric_pair!(lhs, rhs, what, (a, b) => a.max_pair(b)),
        BinaryFn::Min => numeric_pair!(lhs, rhs, what, (a, b) => a.min_pair(b)),
        BinaryFn::Pow => match (lhs, rhs) {
            (Value::F1(a), Value::F1(b)) => Ok(Value::F1(a.powf(b))),
            (Value::F2(a), Value::F2(b)) => Ok(Value::F2(a.powf(b))),
            (Value::F3(a), Value::F3(b)) => Ok(Value::F3(a.powf(b))),
            (Value::F4(a), Value::F4(b)) => Ok(Value::F4(a.powf(b))),
            (a, b) => Err(format!(
                "`pow` takes two float tensors of one rank, not {} and {}",
                a.describe(),
                b.describe()
            )),
        },
    }
}

/// `fun(x, scalar)`. On integer tensors the scalar must be a whole number.
pub(crate) fn binary_scalar<B: Backend>(fun: BinaryFn, x: Value<B>, scalar: f64) -> OpResult<Value<B>> {
    let what = format!("`{}` with a scalar", name(fun));
    if x.kind() == Kind::Int && scalar.fract() != 0.0 {
        return Err(format!("{what}: {scalar} is not a whole number, and the tensor is {}", x.describe()));
    }
    match fun {
        BinaryFn::Add => numeric_map!(x, what, t => t.add_scalar(scalar)),
        BinaryFn::Sub => numeric_map!(x, what, t => t.sub_scalar(scalar)),
        BinaryFn::Mul => numeric_map!(x, what, t => t.mul_scalar(scalar)),
        BinaryFn::Div => numeric_map!(x, what, t => t.div_scalar(scalar)),
        BinaryFn::Rem => numeric_map!(x, what, t => t.remainder_scalar(scalar)),
        BinaryFn::Max => numeric_map!(x, what, t => t.clamp_min(scalar)),
        BinaryFn::Min => numeric_map!(x, what, t => t.clamp_max(scalar)),
        BinaryFn::Pow => float_map!(x, what, t => t.powf_scalar(scalar)),
    }
}

/// `fun(lhs, rhs)`, element-wise, a boolean tensor.
pub(crate) fn compare<B: Backend>(fun: CompareFn, lhs: Value<B>, rhs: Value<B>) -> OpResult<Value<B>> {
    let what = format!("`{}`", name(fun));
    if lhs.dims() != rhs.dims() {
        return Err(format!("{what}: shapes {:?} and {:?} differ", lhs.dims(), rhs.dims()));
    }
    match fun {
        CompareFn::Eq => compare_pair!(lhs, rhs, what, (a, b) => a.equal(b)),
        CompareFn::Ne => compare_pair!(lhs, rhs, what, (a, b) => a.not_equal(b)),
        CompareFn::Lt => compare_pair!(lhs, rhs, what, (a, b) => a.lower(b)),
        CompareFn::Le => compare_pair!(lhs, rhs, what, (a, b) => a.lower_equal(b)),
        CompareFn::Gt => compare_pair!(lhs, rhs, what, (a, b) => a.greater(b)),
        CompareFn::Ge => compare_pair!(lhs, rhs, what, (a, b) => a.greater_equal(b)),
    }
}

/// `fun(x, scalar)`, element-wise, a boolean tensor.
pub(crate) fn compare_scalar<B: Backend>(fun: CompareFn, x: Value<B>, scalar: f64) -> OpResult<Value<B>> {
    let what = format!("`{}` with a scalar", name(fun));
    match fun {
        CompareFn::Eq => compare_map!(x, what, t => t.equal_elem(scalar)),
        CompareFn::Ne => compare_map!(x, what, t => t.not_equal_elem(scalar)),
        CompareFn::Lt => compare_map!(x, what, t => t.lower_elem(scalar)),
        CompareFn::Le => compare_map!(x, what, t => t.lower_equal_elem(scalar)),
        CompareFn::Gt => compare_map!(x, what, t => t.greater_elem(scalar)),
        CompareFn::Ge => compare_map!(x, what, t => t.greater_equal_elem(scalar)),
    }
}

/// `value` where `mask`, `otherwise` elsewhere: all three of one shape.
pub(crate) fn select_where<B: Backend>(
    mask: Value<B>,
    value: Value<B>,
    otherwise: Value<B>,
) -> OpResult<Value<B>> {
    if mask.dims() != value.dims() || value.dims() != otherwise.dims() {
        return Err(format!(
            "`where`: mask, value and otherwise have shapes {:?}, {:?}, {:?}; they must be one",
            mask.dims(),
            value.dims(),
            otherwise.dims()
        ));
    }
    macro_rules! arms {
        ($($m:ident $v:ident),*) => {
            match (mask, value, otherwise) {
                $((Value::$m(m), Value::$v(v), Value::$v(o)) => Ok(Value::$v(o.mask_where(m, v))),)*
                (m, v, o) => Err(format!(
                    "`where` takes a boolean mask and two tensors of one kind, not {}, {}, {}",
                    m.describe(), v.describe(), o.describe()
                )),
            }
        };
    }
    arms!(B1 F1, B2 F2, B3 F3, B4 F4, B1 I1, B2 I2, B3 I3, B4 I4)
}

/// A reduction over `dim` (kept) or over every element (a 1-element rank-1 tensor).
pub(crate) fn reduce<B: Backend>(fun: ReduceFn, x: Value<B>, dim: Option<u32>) -> OpResult<Value<B>> {
    let what = format!("`{}`", name(fun));
    let rank = x.rank();
    let Some(dim) = dim else {
        return match fun {
            ReduceFn::Sum => whole(x, &what, |t| t.sum(), |t| t.sum()),
            ReduceFn::Mean => whole(x, &what, |t| t.mean(), |t| t.mean()),
            ReduceFn::Prod => whole(x, &what, |t| t.prod(), |t| t.prod()),
            ReduceFn::Max => whole(x, &what, |t| t.max(), |t| t.max()),
            ReduceFn::Min => whole(x, &what, |t| t.min(), |t| t.min()),
            ReduceFn::Argmax | ReduceFn::Argmin => Err(format!("{what} needs a dimension")),
        };
    };
    let dim = dim_in(&what, dim, rank)?;
    match fun {
        ReduceFn::Sum => numeric_map!(x, what, t => t.sum_dim(dim)),
        ReduceFn::Mean => numeric_map!(x, what, t => t.mean_dim(dim)),
        ReduceFn::Prod => numeric_map!(x, what, t => t.prod_dim(dim)),
        ReduceFn::Max => numeric_map!(x, what, t => t.max_dim(dim)),
        ReduceFn::Min => numeric_map!(x, what, t => t.min_dim(dim)),
        ReduceFn::Argmax => index_map(x, &what, dim, true),
        ReduceFn::Argmin => index_map(x, &what, dim, false),
    }
}

/// A whole-tensor reduction of a float or integer tensor, to rank 1.
fn whole<B: Backend>(
    x: Value<B>,
    what: &str,
    float: impl Fn(Tensor<B, 4>) -> Tensor<B, 1>,
    int: impl Fn(Tensor<B, 4, Int>) -> Tensor<B, 1, Int>,
) -> OpResult<Value<B>> {
    // Every rank reduces the same way once viewed as rank 4 (a reshape adds leading ones).
    let dims = x.dims();
    let mut shape = [1usize; 4];
    shape[4 - dims.len()..].copy_from_slice(&dims);
    match x {
        Value::F1(t) => Ok(Value::F1(float(t.reshape(shape)))),
        Value::F2(t) => Ok(Value::F1(float(t.reshape(shape)))),
        Value::F3(t) => Ok(Value::F1(float(t.reshape(shape)))),
        Value::F4(t) => Ok(Value::F1(float(t))),
        Value::I1(t) => Ok(Value::I1(int(t.reshape(shape)))),
        Value::I2(t) => Ok(Value::I1(int(t.reshape(shape)))),
        Value::I3(t) => Ok(Value::I1(int(t.reshape(shape)))),
        Value::I4(t) => Ok(Value::I1(int(t))),
        other => Err(format!("{what} takes a float or integer tensor, not {}", other.describe())),
    }
}

/// argmax / argmin along `dim`: integer indices, the dimension kept.
fn index_map<B: Backend>(x: Value<B>, what: &str, dim: usize, max: bool) -> OpResult<Value<B>> {
    macro_rules! arms {
        ($($v:ident $i:ident),*) => {
            match x {
                $(Value::$v(t) => Ok(Value::$i(if max { t.argmax(dim) } else { t.argmin(dim) })),)*
                other => Err(format!("{what} takes a float or integer tensor, not {}", other.describe())),
            }
        };
    }
    arms!(F1 I1, F2 I2, F3 I3, F4 I4, I1 I1, I2 I2, I3 I3, I4 I4)
}

/// Softmax (or log-softmax) over `dim`.
pub(crate) fn softmax<B: Backend>(x: Value<B>, dim: u32, log: bool) -> OpResult<Value<B>> {
    let what = if log { "`log_softmax`" } else { "`softmax`" };
    let dim = dim_in(what, dim, x.rank())?;
    float_map!(x, what, t => if log { activation::log_softmax(t, dim) } else { activation::softmax(t, dim) })
}

/// The matrix product over the last two dimensions.
pub(crate) fn matmul<B: Backend>(lhs: Value<B>, rhs: Value<B>) -> OpResult<Value<B>> {
    let (a, b) = (lhs.dims(), rhs.dims());
    if a.len() != b.len() || a.len() < 2 {
        return Err(format!("`matmul` takes two tensors of one rank ≥ 2, not {a:?} and {b:?}"));
    }
    let r = a.len();
    if a[r - 1] != b[r - 2] {
        return Err(format!(
            "`matmul`: {a:?} × {b:?}: the inner dimensions {} and {} differ",
            a[r - 1],
            b[r - 2]
        ));
    }
    broadcast("`matmul` (batch dimensions)", &a[..r - 2], &b[..r - 2])?;
    match (lhs, rhs) {
        (Value::F2(a), Value::F2(b)) => Ok(Value::F2(a.matmul(b))),
        (Value::F3(a), Value::F3(b)) => Ok(Value::F3(a.matmul(b))),
        (Value::F4(a), Value::F4(b)) => Ok(Value::F4(a.matmul(b))),
        (a, b) => Err(format!("`matmul` takes float tensors, not {} and {}", a.describe(), b.describe())),
    }
}

/// Two dimensions swapped.
pub(crate) fn transpose<B: Backend>(x: Value<B>, dim0: u32, dim1: u32) -> OpResult<Value<B>> {
    let rank = x.rank();
    let (d0, d1) = (dim_in("`transpose`", dim0, rank)?, dim_in("`transpose`", dim1, rank)?);
    Ok(map_each!(x, t => t.swap_dims(d0, d1)))
}

/// Dimensions reordered.
pub(crate) fn permute<B: Backend>(x: Value<B>, dims: &[u32]) -> OpResult<Value<B>> {
    let rank = x.rank();
    let mut seen = vec![false; rank];
    for &d in dims {
        let d = dim_in("`permute`", d, rank)?;
        if std::mem::replace(&mut seen[d], true) {
            return Err(format!("`permute`: {dims:?} names dimension {d} twice"));
        }
    }
    if dims.len() != rank {
        return Err(format!("`permute`: {dims:?} for a rank-{rank} tensor"));
    }
    let d: Vec<isize> = dims.iter().map(|&d| d as isize).collect();
    Ok(match x {
        Value::F1(t) => Value::F1(t.permute([d[0]])),
        Value::F2(t) => Value::F2(t.permute([d[0], d[1]])),
        Value::F3(t) => Value::F3(t.permute([d[0], d[1], d[2]])),
        Value::F4(t) => Value::F4(t.permute([d[0], d[1], d[2], d[3]])),
        Value::I1(t) => Value::I1(t.permute([d[0]])),
        Value::I2(t) => Value::I2(t.permute([d[0], d[1]])),
        Value::I3(t) => Value::I3(t.permute([d[0], d[1], d[2]])),
        Value::I4(t) => Value::I4(t.permute([d[0], d[1], d[2], d[3]])),
        Value::B1(t) => Value::B1(t.permute([d[0]])),
        Value::B2(t) => Value::B2(t.permute([d[0], d[1]])),
        Value::B3(t) => Value::B3(t.permute([d[0], d[1], d[2]])),
        Value::B4(t) => Value::B4(t.permute([d[0], d[1], d[2], d[3]])),
    })
}

/// The new shape of a reshape (`-1` inferred, `0` kept), checked against the element count.
fn reshaped(dims: &[usize], shape: &[i64]) -> OpResult<Vec<usize>> {
    let count: usize = dims.iter().product();
    let mut out = Vec::with_capacity(shape.len());
    let mut infer = None;
    for (i, &s) in shape.iter().enumerate() {
        match s {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 => {
                out.push(*dims.get(i).ok_or_else(|| {
                    format!("`reshape`: entry {i} keeps a dimension {dims:?} does not have")
                })?)
            }
            s if s > 0 => out.push(s as usize),
            _ => return Err(format!("`reshape`: {shape:?} has an entry that is not a size, 0 or one -1")),
        }
    }
    let Some(known) = out.iter().try_fold(1usize, |a, &b| a.checked_mul(b)) else {
        return Err(format!("`reshape`: the shape {shape:?} has more elements than a tensor can"));
    };
    if let Some(i) = infer {
        if known == 0 || !count.is_multiple_of(known) {
            return Err(format!("`reshape`: {dims:?} ({count} elements) cannot take the shape {shape:?}"));
        }
        out[i] = count / known;
    } else if known != count {
        return Err(format!("`reshape`: {dims:?} ({count} elements) cannot take the shape {shape:?}"));
    }
    Ok(out)
}

/// The same elements in a new shape.
pub(crate) fn reshape<B: Backend>(x: Value<B>, shape: &[i64]) -> OpResult<Value<B>> {
    let new = reshaped(&x.dims(), shape)?;
    macro_rules! to_rank {
        ($t:expr, $f1:ident, $f2:ident, $f3:ident, $f4:ident) => {
            match new.len() {
                1 => Ok(Value::$f1($t.reshape([new[0]]))),
                2 => Ok(Value::$f2($t.reshape([new[0], new[1]]))),
                3 => Ok(Value::$f3($t.reshape([new[0], new[1], new[2]]))),
                4 => Ok(Value::$f4($t.reshape([new[0], new[1], new[2], new[3]]))),
                n => Err(format!("`reshape` to rank {n}: ranks 1 to 4 are interpreted")),
            }
        };
    }
    match x {
        Value::F1(t) => to_rank!(t, F1, F2, F3, F4),
        Value::F2(t) => to_rank!(t, F1, F2, F3, F4),
        Value::F3(t) => to_rank!(t, F1, F2, F3, F4),
        Value::F4(t) => to_rank!(t, F1, F2, F3, F4),
        Value::I1(t) => to_rank!(t, I1, I2, I3, I4),
        Value::I2(t) => to_rank!(t, I1, I2, I3, I4),
        Value::I3(t) => to_rank!(t, I1, I2, I3, I4),
        Value::I4(t) => to_rank!(t, I1, I2, I3, I4),
        Value::B1(t) => to_rank!(t, B1, B2, B3, B4),
        Value::B2(t) => to_rank!(t, B1, B2, B3, B4),
        Value::B3(t) => to_rank!(t, B1, B2, B3, B4),
        Value::B4(t) => to_rank!(t, B1, B2, B3, B4),
    }
}

/// burn's slices of `ranges`, after checking them against `dims` (negative bounds from the end).
fn slices(what: &str, dims: &[usize], ranges: &[SliceRange]) -> OpResult<Vec<Slice>> {
    if ranges.len() > dims.len() {
        return Err(format!("{what}: {} ranges for a rank-{} tensor", ranges.len(), dims.len()));
    }
    let mut out = Vec::with_capacity(dims.len());
    for (d, &size) in dims.iter().enumerate() {
        let Some(range) = ranges.get(d) else {
            out.push(Slice::new(0, None, 1));
            continue;
        };
        let resolve = |i: i64| if i < 0 { i + size as i64 } else { i };
        let (start, end) = (resolve(range.start), range.end.map_or(size as i64, resolve));
        if start < 0 || end > size as i64 || start >= end {
            return Err(format!(
                "{what}: range {}..{} of dimension {d} (size {size}) is empty or out of bounds",
                range.start,
                range.end.map_or(String::new(), |e| e.to_string())
            ));
        }
        out.push(Slice::new(start as isize, Some(end as isize), 1));
    }
    Ok(out)
}

/// A sub-tensor.
pub(crate) fn slice<B: Backend>(x: Value<B>, ranges: &[SliceRange]) -> OpResult<Value<B>> {
    let s = slices("`slice`", &x.dims(), ranges)?;
    Ok(map_each!(x, t => t.slice(&s[..])))
}

/// `x` with the sub-tensor at `ranges` replaced by `value`.
pub(crate) fn slice_assign<B: Backend>(
    x: Value<B>,
    ranges: &[SliceRange],
    value: Value<B>,
) -> OpResult<Value<B>> {
    let s = slices("`slice_assign`", &x.dims(), ranges)?;
    let expected: Vec<usize> = s
        .iter()
        .zip(x.dims())
        .map(|(s, size)| s.end.map_or(size, |e| e as usize) - s.start as usize)
        .collect();
    if value.dims() != expected {
        return Err(format!("`slice_assign`: the value is {:?}, the slice {expected:?}", value.dims()));
    }
    macro_rules! arms {
        ($($v:ident),*) => {
            match (x, value) {
                $((Value::$v(t), Value::$v(v)) => Ok(Value::$v(t.slice_assign(&s[..], v))),)*
                (t, v) => Err(format!("`slice_assign`: a {} value into a {} tensor", v.describe(), t.describe())),
            }
        };
    }
    arms!(F1, F2, F3, F4, I1, I2, I3, I4, B1, B2, B3, B4)
}

/// Entries along `dim` at `indices` (a rank-1 integer tensor, each index checked).
pub(crate) fn index_select<B: Backend>(x: Value<B>, dim: u32, indices: Value<B>) -> OpResult<Value<B>> {
    let dim = dim_in("`index_select`", dim, x.rank())?;
    let Value::I1(indices) = indices else {
        return Err(format!("`index_select` takes rank-1 integer indices, not {}", indices.describe()));
    };
    let size = x.dims()[dim] as i64;
    let values: Vec<i64> =
        indices.to_data().convert::<i64>().to_vec().map_err(|e| format!("`index_select`: {e:?}"))?;
    if let Some(bad) = values.iter().find(|&&i| i < 0 || i >= size) {
        return Err(format!("`index_select`: index {bad} of dimension {dim}, whose size is {size}"));
    }
    Ok(map_each!(x, t => t.select(dim, indices.clone())))
}

/// Tensors of one kind and rank joined along `dim` (`stack`: along a new dimension).
pub(crate) fn join<B: Backend>(xs: Vec<Value<B>>, dim: u32, stack: bool) -> OpResult<Value<B>> {
    let what = if stack { "`stack`" } else { "`cat`" };
    let first = xs.first().ok_or_else(|| format!("{what} of no tensor"))?.dims();
    let rank = first.len();
    let dim = if stack {
        let d = dim as usize;
        if d > rank || rank == 4 {
            return Err(format!("{what}: dimension {d} for rank-{rank} tensors (results of rank ≤ 4)"));
        }
        d
    } else {
        dim_in(what, dim, rank)?
    };
    for x in &xs[1..] {
        let dims = x.dims();
        let fits = dims.len() == rank
            && dims.iter().zip(&first).enumerate().all(|(d, (a, b))| a == b || (!stack && d == dim));
        if !fits {
            return Err(format!(
                "{what}: shapes {first:?} and {dims:?} cannot be joined along dimension {dim}"
            ));
        }
    }
    macro_rules! gather {
        ($v:ident) => {
            xs.into_iter()
                .map(|x| match x {
                    Value::$v(t) => Ok(t),
                    other => Err(format!("{what} of tensors of different kinds ({})", other.describe())),
                })
                .collect::<OpResult<Vec<_>>>()?
        };
    }
    macro_rules! cat_or_stack {
        ($($v:ident => $up:ident),*) => {
            match &xs[0] {
                $(Value::$v(_) => {
                    let ts = gather!($v);
                    if stack { Ok(Value::$up(Tensor::stack(ts, dim))) } else { Ok(Value::$v(Tensor::cat(ts, dim))) }
                })*
                Value::F4(_) => Ok(Value::F4(Tensor::cat(gather!(F4), dim))),
                Value::I4(_) => Ok(Value::I4(Tensor::cat(gather!(I4), dim))),
                Value::B4(_) => Ok(Value::B4(Tensor::cat(gather!(B4), dim))),
            }
        };
    }
    cat_or_stack!(F1 => F2, F2 => F3, F3 => F4, I1 => I2, I2 => I3, I3 => I4, B1 => B2, B2 => B3, B3 => B4)
}

/// The values converted to another element type.
pub(crate) fn cast<B: Backend>(x: Value<B>, dtype: DType) -> OpResult<Value<B>> {
    let float = match dtype {
        DType::F32 => Some(FloatDType::F32),
        DType::F64 => Some(FloatDType::F64),
        DType::F16 => Some(FloatDType::F16),
        DType::Bf16 => Some(FloatDType::BF16),
        _ => None,
    };
    let int = match dtype {
        DType::I64 => Some(IntDType::I64),
        DType::I32 => Some(IntDType::I32),
        _ => None,
    };
    macro_rules! arms {
        ($(($f:ident, $i:ident, $b:ident)),*) => {
            match x {
                $(
                    Value::$f(t) => match (float, int) {
                        (Some(f), _) => Ok(Value::$f(t.cast(f))),
                        (_, Some(i)) => Ok(Value::$i(t.int().cast(i))),
                        _ => Ok(Value::$b(t.not_equal_elem(0.0))),
                    },
                    Value::$i(t) => match (float, int) {
                        (Some(f), _) => Ok(Value::$f(t.float().cast(f))),
                        (_, Some(i)) => Ok(Value::$i(t.cast(i))),
                        _ => Ok(Value::$b(t.not_equal_elem(0))),
                    },
                    Value::$b(t) => match (float, int) {
                        (Some(f), _) => Ok(Value::$f(t.float().cast(f))),
                        (_, Some(i)) => Ok(Value::$i(t.int().cast(i))),
                        _ => Ok(Value::$b(t)),
                    },
                )*
            }
        };
    }
    arms!((F1, I1, B1), (F2, I2, B2), (F3, I3, B3), (F4, I4, B4))
}

/// The `k` largest entries along `dim`, or their indices.
pub(crate) fn top_k<B: Backend>(x: Value<B>, k: u32, dim: u32, part: TopKPart) -> OpResult<Value<B>> {
    let dim = dim_in("`top_k`", dim, x.rank())?;
    let size = x.dims()[dim];
    let k = k as usize;
    if k == 0 || k > size {
        return Err(format!("`top_k`: k = {k} along dimension {dim} of size {size}"));
    }
    macro_rules! arms {
        ($($v:ident $i:ident),*) => {
            match x {
                $(Value::$v(t) => Ok(match part {
                    TopKPart::Values => Value::$v(t.topk(k, dim)),
                    TopKPart::Indices => Value::$i(t.topk_with_indices(k, dim).1),
                }),)*
                other => Err(format!("`top_k` takes a float or integer tensor, not {}", other.describe())),
            }
        };
    }
    arms!(F1 I1, F2 I2, F3 I3, F4 I4, I1 I1, I2 I2, I3 I3, I4 I4)
}

/// A tensor of `x`'s shape and type filled with `value`.
pub(crate) fn full_like<B: Backend>(x: &Value<B>, value: f64) -> OpResult<Value<B>> {
    if x.kind() == Kind::Int && value.fract() != 0.0 {
        return Err(format!(
            "`full_like`: {value} is not a whole number, and the tensor is {}",
            x.describe()
        ));
    }
    match x {
        Value::B1(_) | Value::B2(_) | Value::B3(_) | Value::B4(_) => {
            Err(format!("`full_like` takes a float or integer tensor, not {}", x.describe()))
        }
        x => numeric_map!(x.clone(), "`full_like`", t => t.full_like(value)),
    }
}

/// burn's `linear`: `x.matmul(weight) + bias`, `weight` of shape `[d_in, d_out]`.
pub(crate) fn linear<B: Backend>(
    x: Value<B>,
    weight: Value<B>,
    bias: Option<Value<B>>,
) -> OpResult<Value<B>> {
    let Value::F2(weight) = weight else {
        return Err(format!("`linear` takes a rank-2 float weight, not {}", weight.describe()));
    };
    let bias = match bias {
        None => None,
        Some(Value::F1(b)) => Some(b),
        Some(other) => return Err(format!("`linear` takes a rank-1 float bias, not {}", other.describe())),
    };
    let [d_in, d_out] = weight.dims();
    if bias.as_ref().is_some_and(|b| b.dims() != [d_out]) {
        return Err(format!(
            "`linear`: a bias of shape {:?} for a weight [{d_in}, {d_out}]",
            bias.map(|b| b.dims())
        ));
    }
    if x.dims().last() != Some(&d_in) {
        return Err(format!("`linear`: an input {:?} for a weight [{d_in}, {d_out}]", x.dims()));
    }
    use burn::tensor::module::linear as affine;
    match x {
        Value::F1(x) => Ok(Value::F1(affine(x, weight, bias))),
        Value::F2(x) => Ok(Value::F2(affine(x, weight, bias))),
        Value::F3(x) => Ok(Value::F3(affine(x, weight, bias))),
        Value::F4(x) => Ok(Value::F4(affine(x, weight, bias))),
        other => Err(format!("`linear` takes a float input, not {}", other.describe())),
    }
}

/// Size-1 dimensions repeated to `shape`, of the same rank.
pub(crate) fn expand<B: Backend>(x: Value<B>, shape: &[u32]) -> OpResult<Value<B>> {
    let dims = x.dims();
    let to: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    if to.len() != dims.len() || dims.iter().zip(&to).any(|(&d, &t)| d != t && d != 1) {
        return Err(format!(
            "`expand`: {dims:?} cannot expand to {to:?} (same rank, only size-1 dimensions grow)"
        ));
    }
    Ok(match x {
        Value::F1(t) => Value::F1(t.expand([to[0]])),
        Value::F2(t) => Value::F2(t.expand([to[0], to[1]])),
        Value::F3(t) => Value::F3(t.expand([to[0], to[1], to[2]])),
        Value::F4(t) => Value::F4(t.expand([to[0], to[1], to[2], to[3]])),
        Value::I1(t) => Value::I1(t.expand([to[0]])),
        Value::I2(t) => Value::I2(t.expand([to[0], to[1]])),
        Value::I3(t) => Value::I3(t.expand([to[0], to[1], to[2]])),
        Value::I4(t) => Value::I4(t.expand([to[0], to[1], to[2], to[3]])),
        Value::B1(t) => Value::B1(t.expand([to[0]])),
        Value::B2(t) => Value::B2(t.expand([to[0], to[1]])),
        Value::B3(t) => Value::B3(t.expand([to[0], to[1], to[2]])),
        Value::B4(t) => Value::B4(t.expand([to[0], to[1], to[2], to[3]])),
    })
}

/// burn's `layer_norm` over the last dimension (the backend's own, fused where it has one).
pub(crate) fn layer_norm<B: Backend>(
    x: Value<B>,
    gamma: Value<B>,
    beta: Option<Value<B>>,
    epsilon: f64,
) -> OpResult<Value<B>> {
    use burn::tensor::TensorPrimitive;
    let width = x.dims().last().copied().unwrap_or(0);
    let vector = |v: Value<B>, what: &str| match v {
        Value::F1(t) if t.dims() == [width] => Ok(t.into_primitive().tensor()),
        other => {
            Err(format!("`layer_norm`: {what} must be a float vector of {width}, not {}", other.describe()))
        }
    };
    let gamma = vector(gamma, "gamma")?;
    let beta = beta.map(|b| vector(b, "beta")).transpose()?;
    let norm = |t: burn::tensor::ops::FloatTensor<B>| {
        TensorPrimitive::Float(B::layer_norm(t, gamma.clone(), beta.clone(), epsilon))
    };
    match x {
        Value::F1(t) => Ok(Value::F1(Tensor::from_primitive(norm(t.into_primitive().tensor())))),
        Value::F2(t) => Ok(Value::F2(Tensor::from_primitive(norm(t.into_primitive().tensor())))),
        Value::F3(t) => Ok(Value::F3(Tensor::from_primitive(norm(t.into_primitive().tensor())))),
        Value::F4(t) => Ok(Value::F4(Tensor::from_primitive(norm(t.into_primitive().tensor())))),
        other => Err(format!("`layer_norm` takes a float tensor, not {}", other.describe())),
    }
}
