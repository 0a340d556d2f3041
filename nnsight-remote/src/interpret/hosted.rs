//! The modules a host lets programs call ([`Op::Call`](crate::ir::Op::Call)) — a logit lens
//! applies the final norm and the head to a block's output. The host names each by its path:
//! which modules are callable is the host's decision (and the manifest's list), not the
//! program's. A call runs the module untraced, on the values given.

use std::any::Any;

use burn::nn::{LayerNorm, Linear, RmsNorm};
use burn::prelude::*;
use nnsight::inspect::{Forward, SiteValue};

use super::value::Value;

/// A rank-generic float layer of burn (`forward::<D>` for every rank) whose input's last dimension
/// must be `$width`, made callable at `$path`.
macro_rules! rank_generic_layer {
    ($self:ident, $path:ident, $module:ident, $width:expr) => {{
        let width = $width;
        $self.with($path, move |mut args| {
            let x = last_dim(one(&mut args)?, width)?;
            rank_generic(
                x,
                |x| $module.forward(x),
                |x| $module.forward(x),
                |x| $module.forward(x),
                |x| $module.forward(x),
            )
        })
    }};
}

/// One callable module: its arguments to its output.
type Call<'m, B> = Box<dyn Fn(Vec<Value<B>>) -> Result<Value<B>, String> + 'm>;

/// The modules programs may call, by path.
pub struct Hosted<'m, B: Backend> {
    calls: Vec<(String, Call<'m, B>)>,
    /// The parameters programs may read ([`Op::Param`](crate::ir::Op::Param)), by path.
    params: std::collections::BTreeMap<String, Value<B>>,
}

impl<B: Backend> Default for Hosted<'_, B> {
    fn default() -> Self {
        Hosted { calls: Vec::new(), params: Default::default() }
    }
}

impl<'m, B: Backend> Hosted<'m, B> {
    /// No module is callable.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every parameter of `module` readable by programs, by its path (`lm_head.weight`, the
    /// names [`parameters`](crate::record::parameters) gives): a recorded body that uses a weight
    /// (a logit lens through the final norm and the head) reads it this way.
    pub fn parameters<M: burn::module::Module<B>>(mut self, module: &M) -> Self {
        for (path, value) in crate::record::parameters(module) {
            self.params.insert(path, value);
        }
        self
    }

    /// The parameter at `path`, if the host offers it.
    pub fn param(&self, path: &str) -> Option<Value<B>> {
        self.params.get(path).cloned()
    }

    /// How many parameters the host offers.
    pub fn param_count(&self) -> usize {
        self.params.len()
    }

    /// A module with a one-argument `forward` (an `#[inspect]` impl gives it `Forward`), e.g. a
    /// language model's head.
    pub fn forward<M, A>(self, path: &str, module: &'m M) -> Self
    where
        M: Forward<Inputs = (A,)>,
        A: SiteValue,
    {
        self.with(path, move |mut args| {
            let arg = one(&mut args)?;
            let found = arg.describe();
            let arg: Box<dyn Any> = arg.into_erased();
            let arg = arg
                .downcast::<A>()
                .map_err(|_| format!("takes a `{}`, not {found}", std::any::type_name::<A>()))?;
            // The module's own code may panic on a value it cannot take (burn checks shapes by
            // panicking); that is this call's error, and the module is left as it was (`&self`).
            let output =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| module.forward_inputs((*arg,))))
                    .map_err(|panic| format!("cannot take {found}: {}", panic_message(&panic)))?;
            let name = std::any::type_name::<M::Output>();
            Value::from_erased(&output)
                .ok_or_else(|| format!("returns a `{name}`, not a tensor of rank 1 to 4"))
        })
    }

    /// burn's `LayerNorm`, on a float tensor of any rank.
    pub fn layer_norm(self, path: &str, module: &'m LayerNorm<B>) -> Self {
        rank_generic_layer!(self, path, module, module.gamma.dims()[0])
    }

    /// burn's `RmsNorm`, on a float tensor of any rank.
    pub fn rms_norm(self, path: &str, module: &'m RmsNorm<B>) -> Self {
        rank_generic_layer!(self, path, module, module.gamma.dims()[0])
    }

    /// burn's `Linear`, on a float tensor of any rank.
    pub fn linear(self, path: &str, module: &'m Linear<B>) -> Self {
        rank_generic_layer!(self, path, module, module.weight.dims()[0])
    }

    fn with(mut self, path: &str, call: impl Fn(Vec<Value<B>>) -> Result<Value<B>, String> + 'm) -> Self {
        self.calls.retain(|(p, _)| p != path);
        self.calls.push((path.to_owned(), Box::new(call)));
        self
    }

    /// Whether `path` is callable.
    pub fn offers(&self, path: &str) -> bool {
        self.calls.iter().any(|(p, _)| p == path)
    }

    /// The callable paths, in the order they were added.
    pub fn paths(&self) -> Vec<&str> {
        self.calls.iter().map(|(p, _)| p.as_str()).collect()
    }

    /// Calls `path` on `args`.
    pub(crate) fn call(&self, path: &str, args: Vec<Value<B>>) -> Result<Value<B>, String> {
        let (_, call) = self.calls.iter().find(|(p, _)| p == path).ok_or_else(|| {
            format!("`{path}` is not callable here (callable: {})", self.paths().join(", "))
        })?;
        call(args).map_err(|problem| format!("`{path}` {problem}"))
    }
}

/// `x`, if its last dimension is `width` (what the layer's weights need).
fn last_dim<B: Backend>(x: Value<B>, width: usize) -> Result<Value<B>, String> {
    match x.dims().last() {
        Some(&d) if d == width => Ok(x),
        _ => Err(format!("takes a last dimension of {width}, not {}", x.describe())),
    }
}

/// The message of a caught panic.
fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "the module panicked".to_owned())
}

/// The one argument of `args`.
fn one<B: Backend>(args: &mut Vec<Value<B>>) -> Result<Value<B>, String> {
    match (args.pop(), args.is_empty()) {
        (Some(arg), true) => Ok(arg),
        _ => Err(format!("takes one argument, not {}", args.len() + 1)),
    }
}

/// A rank-generic float layer applied at the argument's rank.
fn rank_generic<B: Backend>(
    x: Value<B>,
    f1: impl Fn(Tensor<B, 1>) -> Tensor<B, 1>,
    f2: impl Fn(Tensor<B, 2>) -> Tensor<B, 2>,
    f3: impl Fn(Tensor<B, 3>) -> Tensor<B, 3>,
    f4: impl Fn(Tensor<B, 4>) -> Tensor<B, 4>,
) -> Result<Value<B>, String> {
    match x {
        Value::F1(t) => Ok(Value::F1(f1(t))),
        Value::F2(t) => Ok(Value::F2(f2(t))),
        Value::F3(t) => Ok(Value::F3(f3(t))),
        Value::F4(t) => Ok(Value::F4(f4(t))),
        other => Err(format!("takes a float tensor, not {}", other.describe())),
    }
}
