//! The shape rule of each tensor operation, on shapes whose dimensions may be unknown (a text
//! prompt's length is known only after the host tokenizes it): what can be checked is.

use crate::ir::{DType, Op, SliceRange, TopKPart};

/// One dimension: known, or not known before the program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Size {
    Known(usize),
    Unknown,
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Known(n) => write!(f, "{n}"),
            Size::Unknown => f.write_str("?"),
        }
    }
}

/// A value's type: its shape and element type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ty {
    pub(crate) shape: Vec<Size>,
    pub(crate) dtype: DType,
}

impl Ty {
    pub(crate) fn known(shape: &[usize], dtype: DType) -> Ty {
        Ty { shape: shape.iter().map(|&d| Size::Known(d)).collect(), dtype }
    }

    pub(crate) fn describe(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(ToString::to_string).collect();
        format!("{:?} [{}]", self.dtype, dims.join(", "))
    }

    /// The most elements it can have, with `unknown` for each unknown dimension.
    pub(crate) fn elements(&self, unknown: usize) -> u64 {
        let size = |s: &Size| match s {
            Size::Known(n) => *n as u64,
            Size::Unknown => unknown as u64,
        };
        self.shape.iter().fold(1u64, |a, s| a.saturating_mul(size(s)))
    }
}

/// What is wrong, and under which code.
pub(crate) enum Fault {
    Shape(String),
    Type(String),
    Bounds(String),
}

type Rule = Result<Ty, Fault>;

fn is_float(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::Bf16)
}

fn is_int(d: DType) -> bool {
    matches!(d, DType::I32 | DType::I64)
}

/// Two sizes that must be equal: the known one, or a fault.
fn same(what: &str, a: Size, b: Size) -> Result<Size, Fault> {
    match (a, b) {
        (Size::Known(x), Size::Known(y)) if x != y => {
            Err(Fault::Shape(format!("{what}: {x} and {y} differ")))
        }
        (Size::Known(x), _) | (_, Size::Known(x)) => Ok(Size::Known(x)),
        _ => Ok(Size::Unknown),
    }
}

/// Element-wise broadcasting of two shapes of one rank.
fn broadcast(what: &str, a: &Ty, b: &Ty) -> Result<Vec<Size>, Fault> {
    if a.shape.len() != b.shape.len() {
        return Err(Fault::Shape(format!(
            "`{what}` of a {} and a {}: ranks differ",
            a.describe(),
            b.describe()
        )));
    }
    a.shape
        .iter()
        .zip(&b.shape)
        .map(|(&x, &y)| match (x, y) {
            (Size::Known(1), other) | (other, Size::Known(1)) => Ok(other),
            _ => same(&format!("`{what}` of a {} and a {}", a.describe(), b.describe()), x, y),
        })
        .collect()
}

fn dim(what: &str, dim: u32, rank: usize) -> Result<usize, Fault> {
    let d = dim as usize;
    if d < rank {
        Ok(d)
    } else {
        Err(Fault::Shape(format!("`{what}`: dimension {dim} of a rank-{rank} value")))
    }
}

fn float(what: &str, t: &Ty) -> Result<(), Fault> {
    if is_float(t.dtype) {
        Ok(())
    } else {
        Err(Fault::Type(format!("`{what}` takes a float tensor, not {}", t.describe())))
    }
}

fn numeric_pair(what: &str, a: &Ty, b: &Ty) -> Result<(), Fault> {
    let kind = |d: DType| (is_float(d), is_int(d));
    if kind(a.dtype) == kind(b.dtype) && a.dtype != DType::Bool {
        Ok(())
    } else {
        Err(Fault::Type(format!("`{what}` of a {} and a {}", a.describe(), b.describe())))
    }
}

/// The number of elements of known sizes (`None`: one is unknown); a fault when it overflows.
fn product<'a>(sizes: impl Iterator<Item = &'a Size>) -> Result<Option<usize>, Fault> {
    let mut total = Some(1usize);
    for s in sizes {
        total =
            match (total, s) {
                (Some(t), Size::Known(n)) => Some(t.checked_mul(*n).ok_or_else(|| {
                    Fault::Shape("a shape with more elements than a tensor can hold".into())
                })?),
                _ => None,
            };
    }
    Ok(total)
}

/// The size a slice range keeps of a dimension of size `n`.
fn range(r: &SliceRange, n: Size) -> Result<Size, Fault> {
    let Size::Known(n) = n else { return Ok(Size::Unknown) };
    let at = |i: i64| if i < 0 { n as i64 + i } else { i };
    let (start, end) = (at(r.start), r.end.map_or(n as i64, at));
    if start < 0 || end > n as i64 || start > end {
        return Err(Fault::Bounds(format!("the range {}..{:?} of a dimension of {n}", r.start, r.end)));
    }
    Ok(Size::Known((end - start) as usize))
}

/// The type of `op`'s value from its operands' (`get`), for the tensor operations; `int` is the
/// host's integer type (of indices), `None` for operations that are not tensor operations.
pub(crate) fn infer(op: &Op, get: &dyn Fn(u32) -> Option<Ty>, int: DType) -> Option<Rule> {
    if op.inputs().is_empty() || !op.has_value() || matches!(op, Op::Call { .. }) {
        return None;
    }
    let get = |r: u32| get(r).ok_or_else(|| Fault::Shape(format!("node {r} has no value of a known type")));
    Some((|| -> Rule {
        match op {
            Op::Unary { fun, x } => {
                use crate::ir::UnaryFn;
                let x = get(*x)?;
                let fits = match fun {
                    UnaryFn::Not => x.dtype == DType::Bool,
                    UnaryFn::Abs | UnaryFn::Neg => x.dtype != DType::Bool,
                    _ => is_float(x.dtype),
                };
                if !fits {
                    return Err(Fault::Type(format!("`{fun:?}` of a {}", x.describe())));
                }
                Ok(x)
            }
            Op::Binary { fun, lhs, rhs } => {
                let (a, b) = (get(*lhs)?, get(*rhs)?);
                numeric_pair(&format!("{fun:?}"), &a, &b)?;
                Ok(Ty { shape: broadcast(&format!("{fun:?}"), &a, &b)?, dtype: a.dtype })
            }
            Op::BinaryScalar { x, .. } | Op::FullLike { x, .. } => get(*x),
            Op::Compare { fun, lhs, rhs } => {
                let (a, b) = (get(*lhs)?, get(*rhs)?);
                numeric_pair(&format!("{fun:?}"), &a, &b)?;
                Ok(Ty { shape: broadcast(&format!("{fun:?}"), &a, &b)?, dtype: DType::Bool })
            }
            Op::CompareScalar { x, .. } => Ok(Ty { dtype: DType::Bool, ..get(*x)? }),
            Op::Where { mask, value, otherwise } => {
                let (m, v, o) = (get(*mask)?, get(*value)?, get(*otherwise)?);
                if m.dtype != DType::Bool {
                    return Err(Fault::Type(format!("`where` takes a boolean mask, not {}", m.describe())));
                }
                numeric_pair("where", &v, &o)?;
                let shape = broadcast("where", &v, &o)?;
                let shape = broadcast("where (mask)", &Ty { shape, dtype: o.dtype }, &m)?;
                Ok(Ty { shape, dtype: o.dtype })
            }
            Op::Reduce { fun, x, dim: d } => {
                let x = get(*x)?;
                let index = matches!(fun, crate::ir::ReduceFn::Argmax | crate::ir::ReduceFn::Argmin);
                let dtype = if index { int } else { x.dtype };
                match d {
                    None => Ok(Ty { shape: vec![Size::Known(1)], dtype }),
                    Some(d) => {
                        let d = dim("reduce", *d, x.shape.len())?;
                        let mut shape = x.shape;
                        shape[d] = Size::Known(1);
                        Ok(Ty { shape, dtype })
                    }
                }
            }
            Op::Softmax { x, dim: d } | Op::LogSoftmax { x, dim: d } => {
                let x = get(*x)?;
                float("softmax", &x)?;
                dim("softmax", *d, x.shape.len())?;
                Ok(x)
            }
            Op::Matmul { lhs, rhs } => {
                let (a, b) = (get(*lhs)?, get(*rhs)?);
                float("matmul", &a)?;
                let r = a.shape.len();
                if r != b.shape.len() || r < 2 {
                    return Err(Fault::Shape(format!(
                        "`matmul` of a {} and a {}",
                        a.describe(),
                        b.describe()
                    )));
                }
                same(
                    &format!("`matmul` of a {} and a {} (inner dimensions)", a.describe(), b.describe()),
                    a.shape[r - 1],
                    b.shape[r - 2],
                )?;
                let batch = broadcast(
                    "matmul (batch dimensions)",
                    &Ty { shape: a.shape[..r - 2].to_vec(), dtype: a.dtype },
                    &Ty { shape: b.shape[..r - 2].to_vec(), dtype: a.dtype },
                )?;
                let mut shape = batch;
                shape.extend([a.shape[r - 2], b.shape[r - 1]]);
                Ok(Ty { shape, dtype: a.dtype })
            }
            Op::Linear { x, weight, bias } => {
                let (x, w) = (get(*x)?, get(*weight)?);
                if w.shape.len() != 2 {
                    return Err(Fault::Shape(format!(
                        "`linear` takes a rank-2 weight, not {}",
                        w.describe()
                    )));
                }
                let last = *x.shape.last().ok_or_else(|| Fault::Shape("`linear` of a scalar".into()))?;
                same(
                    &format!("`linear` of a {} with a weight {}", x.describe(), w.describe()),
                    last,
                    w.shape[0],
                )?;
                if let Some(b) = bias {
                    let b = get(*b)?;
                    if b.shape.len() != 1 {
                        return Err(Fault::Shape(format!(
                            "`linear` takes a rank-1 bias, not {}",
                            b.describe()
                        )));
                    }
                    same("`linear` (bias)", b.shape[0], w.shape[1])?;
                }
                let mut shape = x.shape;
                *shape.last_mut().unwrap_or(&mut Size::Unknown) = w.shape[1];
                Ok(Ty { shape, dtype: x.dtype })
            }
            Op::LayerNorm { x, gamma, beta, .. } => {
                let x = get(*x)?;
                let last = *x.shape.last().ok_or_else(|| Fault::Shape("`layer_norm` of a scalar".into()))?;
                for v in [Some(*gamma), *beta].into_iter().flatten() {
                    let v = get(v)?;
                    if v.shape.len() != 1 {
                        return Err(Fault::Shape(format!(
                            "`layer_norm` takes vectors, not {}",
                            v.describe()
                        )));
                    }
                    same("`layer_norm` (width)", v.shape[0], last)?;
                }
                Ok(x)
            }
            Op::Reshape { x, shape } => {
                let x = get(*x)?;
                let known = product(x.shape.iter())?;
                let mut out = Vec::with_capacity(shape.len());
                let mut infer_at = None;
                for (i, &s) in shape.iter().enumerate() {
                    out.push(match s {
                        -1 => {
                            infer_at = Some(i);
                            Size::Unknown
                        }
                        0 => *x.shape.get(i).ok_or_else(|| {
                            Fault::Shape(format!("`reshape`: a 0 at {i} past the input's rank"))
                        })?,
                        n if n > 0 => Size::Known(n as usize),
                        n => return Err(Fault::Shape(format!("`reshape`: a size of {n}"))),
                    });
                }
                let rest =
                    product(out.iter().enumerate().filter(|(i, _)| Some(*i) != infer_at).map(|(_, s)| s))?;
                if let (Some(total), Some(rest)) = (known, rest) {
                    match infer_at {
                        Some(i) if rest > 0 && total % rest == 0 => out[i] = Size::Known(total / rest),
                        None if total == rest => {}
                        _ => {
                            return Err(Fault::Shape(format!(
                                "`reshape` of a {} to {shape:?}",
                                x.describe()
                            )));
                        }
                    }
                }
                Ok(Ty { shape: out, dtype: x.dtype })
            }
            Op::Permute { x, dims } => {
                let x = get(*x)?;
                let rank = x.shape.len();
                let mut seen = vec![false; rank];
                for &d in dims {
                    let d = dim("permute", d, rank)?;
                    if std::mem::replace(&mut seen[d], true) {
                        return Err(Fault::Shape(format!("`permute`: {dims:?} names {d} twice")));
                    }
                }
                if dims.len() != rank {
                    return Err(Fault::Shape(format!("`permute`: {dims:?} for a rank-{rank} value")));
                }
                Ok(Ty { shape: dims.iter().map(|&d| x.shape[d as usize]).collect(), dtype: x.dtype })
            }
            Op::Transpose { x, dim0, dim1 } => {
                let mut x = get(*x)?;
                let (a, b) =
                    (dim("transpose", *dim0, x.shape.len())?, dim("transpose", *dim1, x.shape.len())?);
                x.shape.swap(a, b);
                Ok(x)
            }
            Op::Expand { x, shape } => {
                let x = get(*x)?;
                if shape.len() != x.shape.len() {
                    return Err(Fault::Shape(format!(
                        "`expand` of a {} to {shape:?}: ranks differ",
                        x.describe()
                    )));
                }
                for (s, &t) in x.shape.iter().zip(shape) {
                    if let Size::Known(n) = s
                        && *n != 1
                        && *n != t as usize
                    {
                        return Err(Fault::Shape(format!("`expand` of a {} to {shape:?}", x.describe())));
                    }
                }
                Ok(Ty::known(&shape.iter().map(|&s| s as usize).collect::<Vec<_>>(), x.dtype))
            }
            Op::Slice { x, ranges } => {
                let mut x = get(*x)?;
                if ranges.len() > x.shape.len() {
                    return Err(Fault::Shape(format!(
                        "`slice` with {} ranges of a {}",
                        ranges.len(),
                        x.describe()
                    )));
                }
                for (i, r) in ranges.iter().enumerate() {
                    x.shape[i] = range(r, x.shape[i])?;
                }
                Ok(x)
            }
            Op::SliceAssign { x, ranges, value } => {
                let (x, v) = (get(*x)?, get(*value)?);
                if ranges.len() > x.shape.len() || v.shape.len() != x.shape.len() {
                    return Err(Fault::Shape(format!(
                        "`slice_assign` of a {} into a {}",
                        v.describe(),
                        x.describe()
                    )));
                }
                for (i, r) in ranges.iter().enumerate() {
                    same(
                        &format!(
                            "`slice_assign` of a {} into a {} (dimension {i})",
                            v.describe(),
                            x.describe()
                        ),
                        range(r, x.shape[i])?,
                        v.shape[i],
                    )?;
                }
                for i in ranges.len()..x.shape.len() {
                    same("`slice_assign`", x.shape[i], v.shape[i])?;
                }
                if v.dtype != x.dtype {
                    return Err(Fault::Type(format!(
                        "`slice_assign` of a {} into a {}",
                        v.describe(),
                        x.describe()
                    )));
                }
                Ok(x)
            }
            Op::IndexSelect { x, dim: d, indices } => {
                let (mut x, i) = (get(*x)?, get(*indices)?);
                let d = dim("index_select", *d, x.shape.len())?;
                if i.shape.len() != 1 || !is_int(i.dtype) {
                    return Err(Fault::Type(format!(
                        "`index_select` takes 1-D integer indices, not {}",
                        i.describe()
                    )));
                }
                x.shape[d] = i.shape[0];
                Ok(x)
            }
            Op::Cat { xs, dim: d } | Op::Stack { xs, dim: d } => {
                let stack = matches!(op, Op::Stack { .. });
                let tys = xs.iter().map(|r| get(*r)).collect::<Result<Vec<_>, _>>()?;
                let first = tys.first().cloned().ok_or_else(|| Fault::Shape("`cat` of nothing".into()))?;
                let rank = first.shape.len();
                let d = dim("cat", *d, rank + usize::from(stack))?;
                let mut total = Some(0usize);
                for t in &tys {
                    if t.shape.len() != rank || t.dtype != first.dtype {
                        return Err(Fault::Shape(format!(
                            "`cat` of a {} and a {}",
                            first.describe(),
                            t.describe()
                        )));
                    }
                    for i in 0..rank {
                        if stack || i != d {
                            same(
                                &format!("`cat` of a {} and a {}", first.describe(), t.describe()),
                                first.shape[i],
                                t.shape[i],
                            )?;
                        }
                    }
                    if !stack {
                        total = match (total, t.shape[d]) {
                            (Some(s), Size::Known(n)) => Some(s + n),
                            _ => None,
                        };
                    }
                }
                let mut shape = first.shape.clone();
                if stack {
                    shape.insert(d, Size::Known(tys.len()));
                } else {
                    shape[d] = total.map_or(Size::Unknown, Size::Known);
                }
                Ok(Ty { shape, dtype: first.dtype })
            }
            Op::Cast { x, dtype } => Ok(Ty { dtype: *dtype, ..get(*x)? }),
            Op::TopK { x, k, dim: d, part } => {
                let mut x = get(*x)?;
                let d = dim("top_k", *d, x.shape.len())?;
                if let Size::Known(n) = x.shape[d]
                    && *k as usize > n
                {
                    return Err(Fault::Bounds(format!("`top_k` of {k} of a dimension of {n}")));
                }
                x.shape[d] = Size::Known(*k as usize);
                if *part == TopKPart::Indices {
                    x.dtype = int;
                }
                Ok(x)
            }
            other => Err(Fault::Shape(format!("`{}` has no shape rule", other.name()))),
        }
    })())
}
