//! burn's router has no description for the operations backends fuse (`softmax`, `gelu`,
//! `relu`, `sigmoid`, `layer_norm`): it runs burn's default decomposition of each, so the tape
//! sees its steps. A backend that fuses them (the CPU backend does) computes the fused form with
//! other roundings, so a program made of the steps would not replay bit for bit. The recorder
//! therefore recognises each default decomposition, step for step, when its last step arrives,
//! and records the fused operation instead (the steps become dead nodes, pruned at the end). A
//! body that spells out the very same steps by hand is recorded as the fused operation too.

use crate::ir::{BinaryFn, CompareFn, Op, ReduceFn, Ref, Scalar, UnaryFn};

/// The fused operation `op` (about to be appended to `nodes`) completes, if it is the last step
/// of one of burn's default decompositions.
pub(crate) fn fuse<'a>(at: &dyn Fn(Ref) -> Option<&'a Op>, op: &Op) -> Option<Op> {
    match op {
        // softmax: exp(x - max(x)) / sum(exp(x - max(x)))
        Op::Binary { fun: BinaryFn::Div, lhs: e, rhs: s } => {
            let Op::Unary { fun: UnaryFn::Exp, x: shifted } = at(*e)? else { return None };
            let Op::Reduce { fun: ReduceFn::Sum, x: summed, dim: Some(d) } = at(*s)? else { return None };
            let Op::Binary { fun: BinaryFn::Sub, lhs: x, rhs: m } = at(*shifted)? else { return None };
            let Op::Reduce { fun: ReduceFn::Max, x: x2, dim: Some(d2) } = at(*m)? else { return None };
            (summed == e && x2 == x && d2 == d).then_some(Op::Softmax { x: *x, dim: *d })
        }
        // gelu: x * (erf(x / √2) + 1) / 2
        Op::BinaryScalar { fun: BinaryFn::Div, x: y, scalar } if scalar.0 == 2.0 => {
            let Op::Binary { fun: BinaryFn::Mul, lhs: x, rhs: a } = at(*y)? else { return None };
            let Op::BinaryScalar { fun: BinaryFn::Add, x: erf, scalar: one } = at(*a)? else { return None };
            let Op::Unary { fun: UnaryFn::Erf, x: q } = at(*erf)? else { return None };
            let Op::BinaryScalar { fun: BinaryFn::Div, x: x2, scalar: root } = at(*q)? else { return None };
            let root_two = (root.0 as f32) == std::f32::consts::SQRT_2;
            (one.0 == 1.0 && root_two && x2 == x).then_some(Op::Unary { fun: UnaryFn::Gelu, x: *x })
        }
        // relu: x where x > 0, else 0 (a mask fill)
        Op::Where { mask, value, otherwise: x } => {
            let Op::FullLike { x: x2, value: Scalar(zero) } = at(*value)? else { return None };
            let Op::CompareScalar { fun: CompareFn::Le, x: x3, scalar: Scalar(zero2) } = at(*mask)? else {
                return None;
            };
            (*zero == 0.0 && *zero2 == 0.0 && x2 == x && x3 == x)
                .then_some(Op::Unary { fun: UnaryFn::Relu, x: *x })
        }
        // sigmoid: exp(-log(1 + exp(-x))), computed in f32
        Op::Cast { x: e, dtype } => {
            let Op::Unary { fun: UnaryFn::Exp, x: n1 } = at(*e)? else { return None };
            let Op::BinaryScalar { fun: BinaryFn::Mul, x: l, scalar: m1 } = at(*n1)? else { return None };
            let Op::Unary { fun: UnaryFn::Log, x: p } = at(*l)? else { return None };
            let Op::BinaryScalar { fun: BinaryFn::Add, x: e2, scalar: one } = at(*p)? else { return None };
            let Op::Unary { fun: UnaryFn::Exp, x: n2 } = at(*e2)? else { return None };
            let Op::BinaryScalar { fun: BinaryFn::Mul, x: c, scalar: m2 } = at(*n2)? else { return None };
            let Op::Cast { x, dtype: _ } = at(*c)? else { return None };
            let _ = dtype;
            (m1.0 == -1.0 && m2.0 == -1.0 && one.0 == 1.0)
                .then_some(Op::Unary { fun: UnaryFn::Sigmoid, x: *x })
        }
        // layer_norm: (x - mean) / sqrt(var + ε) * γ (+ β), over the last dimension
        Op::Binary { fun: BinaryFn::Mul, lhs: normalized, rhs: g } => {
            let Op::Reshape { x: gamma, shape } = at(*g)? else { return None };
            // γ broadcast along the last dimension: `[1, .., 1, d]`.
            let last = shape.len().checked_sub(1)?;
            if shape[..last].iter().any(|&s| s != 1) {
                return None;
            }
            let Op::Binary { fun: BinaryFn::Div, lhs: c, rhs: denom } = at(*normalized)? else { return None };
            let Op::Unary { fun: UnaryFn::Sqrt, x: ve } = at(*denom)? else { return None };
            let Op::BinaryScalar { fun: BinaryFn::Add, x: var, scalar: epsilon } = at(*ve)? else {
                return None;
            };
            let Op::Reduce { fun: ReduceFn::Mean, x: sq, dim: Some(d) } = at(*var)? else { return None };
            let Op::Binary { fun: BinaryFn::Mul, lhs: c1, rhs: c2 } = at(*sq)? else { return None };
            let Op::Binary { fun: BinaryFn::Sub, lhs: x, rhs: mean } = at(*c)? else { return None };
            let Op::Reduce { fun: ReduceFn::Mean, x: x2, dim: Some(d2) } = at(*mean)? else { return None };
            let over_last = *d as usize == last;
            (over_last && c1 == c && c2 == c && x2 == x && d2 == d).then_some(Op::LayerNorm {
                x: *x,
                gamma: *gamma,
                beta: None,
                epsilon: *epsilon,
            })
        }
        Op::Binary { fun: BinaryFn::Add, lhs: ln, rhs: b } => {
            let Op::Reshape { x: beta, .. } = at(*b)? else { return None };
            let Op::LayerNorm { x, gamma, beta: None, epsilon } = at(*ln)? else { return None };
            Some(Op::LayerNorm { x: *x, gamma: *gamma, beta: Some(*beta), epsilon: *epsilon })
        }
        _ => None,
    }
}
