//! Operations: the closed list of what a node can do.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BinaryFn, CompareFn, DType, Node, ReduceFn, Ref, Scalar, Site, Steps, TopKPart, UnaryFn};

/// What a node does. Dimensions are counted from 0; shapes are the ones the body saw when it was
/// recorded, with the invoke's own rows (an invoke sees only its input's rows).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Op {
    // ---- sites ----
    /// The value at a site (waits until the forward pass reaches it).
    Read {
        /// The site.
        site: Site,
    },
    /// Replaces the value at a site (its shape and element type must stay).
    Write {
        /// The site.
        site: Site,
        /// The new value.
        value: Ref,
    },
    /// A standing edit: at each step of `steps`, the site's value becomes `body`'s last value.
    /// The body's first node is [`Op::Arg`], the site's value at that step; its nodes may use
    /// values of the invoke computed before the edit.
    Edit {
        /// The site; its `occurrence` is ignored (the steps say which).
        site: Site,
        /// The occurrences edited.
        steps: Steps,
        /// The computation, run once per step.
        body: Vec<Node>,
    },
    /// Inside an edit's body (as its first node): the site's value at the current step.
    Arg,
    /// Skips a module call: its output is `value` (of the output's shape and type).
    Skip {
        /// The module's path.
        module: String,
        /// Which call.
        #[serde(default)]
        occurrence: u32,
        /// The output used instead.
        value: Ref,
    },
    /// Stops the forward pass here: later modules do not run.
    Stop,
    /// Calls a hosted module on values (a logit lens: `model.norm` then `lm_head`), untraced.
    Call {
        /// The module's path.
        module: String,
        /// Its owned arguments.
        args: Vec<Ref>,
    },

    // ---- values from outside the invoke ----
    /// A tensor of the attached tensors file, by name.
    Tensor {
        /// Its name in the file.
        name: String,
    },
    /// A value saved under `name` by an earlier trace of the session.
    Saved {
        /// The save's name.
        name: String,
    },
    /// A parameter of the hosted model (a weight), by its path in the module tree
    /// (`lm_head.weight`); which parameters a program may read is the host's decision.
    Param {
        /// The parameter's path.
        path: String,
    },
    /// A value of an earlier invoke of the same trace.
    Shared {
        /// The invoke, counted from 0.
        invoke: u32,
        /// The node in that invoke.
        node: Ref,
    },

    // ---- tensor operations ----
    /// `fun(x)`, element-wise.
    Unary {
        /// The function.
        fun: UnaryFn,
        /// The operand.
        x: Ref,
    },
    /// `fun(lhs, rhs)`, element-wise, broadcasting size-1 dimensions.
    Binary {
        /// The function.
        fun: BinaryFn,
        /// The left operand.
        lhs: Ref,
        /// The right operand.
        rhs: Ref,
    },
    /// `fun(x, scalar)`, element-wise.
    BinaryScalar {
        /// The function.
        fun: BinaryFn,
        /// The tensor operand.
        x: Ref,
        /// The scalar operand (on the right).
        scalar: Scalar,
    },
    /// `fun(lhs, rhs)`, element-wise, broadcasting: a boolean tensor.
    Compare {
        /// The comparison.
        fun: CompareFn,
        /// The left operand.
        lhs: Ref,
        /// The right operand.
        rhs: Ref,
    },
    /// `fun(x, scalar)`, element-wise: a boolean tensor.
    CompareScalar {
        /// The comparison.
        fun: CompareFn,
        /// The tensor operand.
        x: Ref,
        /// The scalar operand (on the right).
        scalar: Scalar,
    },
    /// `value` where `mask` is true, `otherwise` elsewhere (burn's `otherwise.mask_where(mask,
    /// value)`).
    Where {
        /// A boolean tensor.
        mask: Ref,
        /// Taken where the mask is true.
        value: Ref,
        /// Taken elsewhere.
        otherwise: Ref,
    },
    /// A reduction over `dim` (kept with size 1), or over every element (a one-element tensor).
    Reduce {
        /// The reduction.
        fun: ReduceFn,
        /// The operand.
        x: Ref,
        /// The dimension; omitted: every element.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dim: Option<u32>,
    },
    /// Softmax over `dim`.
    Softmax {
        /// The operand.
        x: Ref,
        /// The dimension.
        dim: u32,
    },
    /// Log-softmax over `dim`.
    LogSoftmax {
        /// The operand.
        x: Ref,
        /// The dimension.
        dim: u32,
    },
    /// Matrix product over the last two dimensions, broadcasting the others.
    Matmul {
        /// `[.., m, k]`.
        lhs: Ref,
        /// `[.., k, n]`.
        rhs: Ref,
    },
    /// The same elements in a new shape: an entry `-1` is inferred, `0` keeps the input's size.
    Reshape {
        /// The operand.
        x: Ref,
        /// The new shape.
        shape: Vec<i64>,
    },
    /// burn's `linear`: `x.matmul(weight) + bias`, with
    /// `weight` of shape `[d_in, d_out]` (burn's layout) and `bias` of shape `[d_out]`.
    Linear {
        /// `[.., d_in]`.
        x: Ref,
        /// `[d_in, d_out]`.
        weight: Ref,
        /// `[d_out]`, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bias: Option<Ref>,
    },
    /// Layer normalisation over the last dimension: `(x - mean) / sqrt(var + epsilon) * gamma
    /// + beta` (burn's `layer_norm`, which backends may fuse).
    LayerNorm {
        /// The operand.
        x: Ref,
        /// The scale, of the last dimension's size.
        gamma: Ref,
        /// The shift, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        beta: Option<Ref>,
        /// Added to the variance.
        epsilon: Scalar,
    },
    /// Size-1 dimensions repeated to `shape` (of the same rank), without copying.
    Expand {
        /// The operand.
        x: Ref,
        /// The new shape.
        shape: Vec<u32>,
    },
    /// Dimensions reordered: output dimension `i` is input dimension `dims[i]`.
    Permute {
        /// The operand.
        x: Ref,
        /// A permutation of `0..rank`.
        dims: Vec<u32>,
    },
    /// Two dimensions swapped.
    Transpose {
        /// The operand.
        x: Ref,
        /// One dimension.
        dim0: u32,
        /// The other.
        dim1: u32,
    },
    /// A sub-tensor: one range per leading dimension (the rest whole).
    Slice {
        /// The operand.
        x: Ref,
        /// The ranges, of dimensions 0, 1, ...
        ranges: Vec<SliceRange>,
    },
    /// `x` with the sub-tensor at `ranges` replaced by `value` (of the sub-tensor's shape).
    SliceAssign {
        /// The operand.
        x: Ref,
        /// The ranges, of dimensions 0, 1, ...
        ranges: Vec<SliceRange>,
        /// The new sub-tensor.
        value: Ref,
    },
    /// The entries of `x` along `dim` at `indices` (a 1-D integer tensor).
    IndexSelect {
        /// The operand.
        x: Ref,
        /// The dimension.
        dim: u32,
        /// The indices.
        indices: Ref,
    },
    /// Tensors joined along an existing dimension.
    Cat {
        /// The tensors (at least one), of equal shapes apart from `dim`.
        xs: Vec<Ref>,
        /// The dimension.
        dim: u32,
    },
    /// Tensors of one shape stacked along a new dimension.
    Stack {
        /// The tensors (at least one).
        xs: Vec<Ref>,
        /// Where the new dimension goes.
        dim: u32,
    },
    /// The values converted to another element type.
    Cast {
        /// The operand.
        x: Ref,
        /// The element type.
        dtype: DType,
    },
    /// The `k` largest entries along `dim`, largest first, or their indices.
    TopK {
        /// The operand.
        x: Ref,
        /// How many.
        k: u32,
        /// The dimension.
        dim: u32,
        /// Values or indices.
        part: TopKPart,
    },
    /// A tensor of `x`'s shape and type filled with `value` (zeros_like: 0, ones_like: 1).
    FullLike {
        /// The tensor whose shape and type it takes.
        x: Ref,
        /// The fill value.
        value: Scalar,
    },

    // ---- results ----
    /// Sends `value` back under `name` (optionally converted).
    Save {
        /// The name in the results file; unique in the program.
        name: String,
        /// The value.
        value: Ref,
        /// Convert before sending (e.g. to `bf16`, to halve the bytes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cast: Option<DType>,
    },
    /// Reports `value` in the job's log (its shape, and its values when small).
    Log {
        /// What the log line says before the value.
        label: String,
        /// The value.
        value: Ref,
    },
}

/// `start..end` of one dimension; negative bounds count from the end (`-1` is the last entry), an
/// omitted `end` is the dimension's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SliceRange {
    /// The first index.
    pub start: i64,
    /// One past the last index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
}

impl Op {
    /// The operation's name, as the wire writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Read { .. } => "read",
            Op::Write { .. } => "write",
            Op::Edit { .. } => "edit",
            Op::Arg => "arg",
            Op::Skip { .. } => "skip",
            Op::Stop => "stop",
            Op::Call { .. } => "call",
            Op::Tensor { .. } => "tensor",
            Op::Saved { .. } => "saved",
            Op::Param { .. } => "param",
            Op::Linear { .. } => "linear",
            Op::Expand { .. } => "expand",
            Op::LayerNorm { .. } => "layer_norm",
            Op::Shared { .. } => "shared",
            Op::Unary { .. } => "unary",
            Op::Binary { .. } => "binary",
            Op::BinaryScalar { .. } => "binary_scalar",
            Op::Compare { .. } => "compare",
            Op::CompareScalar { .. } => "compare_scalar",
            Op::Where { .. } => "where",
            Op::Reduce { .. } => "reduce",
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::Matmul { .. } => "matmul",
            Op::Reshape { .. } => "reshape",
            Op::Permute { .. } => "permute",
            Op::Transpose { .. } => "transpose",
            Op::Slice { .. } => "slice",
            Op::SliceAssign { .. } => "slice_assign",
            Op::IndexSelect { .. } => "index_select",
            Op::Cat { .. } => "cat",
            Op::Stack { .. } => "stack",
            Op::Cast { .. } => "cast",
            Op::TopK { .. } => "top_k",
            Op::FullLike { .. } => "full_like",
            Op::Save { .. } => "save",
            Op::Log { .. } => "log",
        }
    }

    /// The lowest minor version of the current major that has this operation (and every option
    /// it uses). Every operation of IR 1.0 says 0; an addition in 1.1 says 1.
    pub fn since_minor(&self) -> u32 {
        match self {
            Op::Edit { body, .. } => body.iter().map(|n| n.op.since_minor()).max().unwrap_or(0),
            _ => 0,
        }
    }

    /// Whether the node has a value other nodes can use (sites ops that only act, saves and logs
    /// have none).
    pub fn has_value(&self) -> bool {
        !matches!(
            self,
            Op::Write { .. }
                | Op::Edit { .. }
                | Op::Skip { .. }
                | Op::Stop
                | Op::Save { .. }
                | Op::Log { .. }
        )
    }

    /// The references of [`inputs`](Self::inputs), to rewrite them (a renumbering).
    pub fn inputs_mut(&mut self) -> Vec<&mut Ref> {
        match self {
            Op::Write { value, .. }
            | Op::Skip { value, .. }
            | Op::Save { value, .. }
            | Op::Log { value, .. } => {
                vec![value]
            }
            Op::Call { args, .. } | Op::Cat { xs: args, .. } | Op::Stack { xs: args, .. } => {
                args.iter_mut().collect()
            }
            Op::Unary { x, .. }
            | Op::BinaryScalar { x, .. }
            | Op::CompareScalar { x, .. }
            | Op::Reduce { x, .. }
            | Op::Softmax { x, .. }
            | Op::LogSoftmax { x, .. }
            | Op::Reshape { x, .. }
            | Op::Permute { x, .. }
            | Op::Transpose { x, .. }
            | Op::Slice { x, .. }
            | Op::Cast { x, .. }
            | Op::TopK { x, .. }
            | Op::FullLike { x, .. }
            | Op::Expand { x, .. } => vec![x],
            Op::Linear { x, weight, bias } => {
                [Some(x), Some(weight), bias.as_mut()].into_iter().flatten().collect()
            }
            Op::LayerNorm { x, gamma, beta, .. } => {
                [Some(x), Some(gamma), beta.as_mut()].into_iter().flatten().collect()
            }
            Op::Binary { lhs, rhs, .. } | Op::Compare { lhs, rhs, .. } | Op::Matmul { lhs, rhs } => {
                vec![lhs, rhs]
            }
            Op::Where { mask, value, otherwise } => vec![mask, value, otherwise],
            Op::SliceAssign { x, value, .. } => vec![x, value],
            Op::IndexSelect { x, indices, .. } => vec![x, indices],
            Op::Read { .. }
            | Op::Edit { .. }
            | Op::Arg
            | Op::Stop
            | Op::Tensor { .. }
            | Op::Saved { .. }
            | Op::Param { .. }
            | Op::Shared { .. } => Vec::new(),
        }
    }

    /// The values of this invoke the node uses (not counting an edit body's own nodes, nor
    /// [`Op::Shared`]'s reference, which is another invoke's): those of
    /// [`inputs_mut`](Self::inputs_mut), the one list of each operation's references.
    pub fn inputs(&self) -> Vec<Ref> {
        // An edit uses none of its invoke's values directly; do not copy its body to say so.
        if let Op::Edit { .. } = self {
            return Vec::new();
        }
        self.clone().inputs_mut().into_iter().map(|r| *r).collect()
    }
}
