//! The explicit tracing API: `model.trace(input).run(async |m| { .. })`.

use crate::engine::{Engine, Task};
use crate::error::Result;
use crate::inspectable::{Forward, Inspectable, IntoInputs};
use crate::state::TraceState;
use crate::tree::{NodeId, Tree};

/// Starts traces on a model; implemented for every [`Inspectable`] model with a [`Forward`].
pub trait TraceExt: Inspectable + Forward {
    /// Prepares a trace of one forward pass on `input` (one argument, or a tuple of them).
    ///
    /// # Examples
    /// ```
    /// use burn::backend::Flex;
    /// use burn::nn::{Linear, LinearConfig, Relu};
    /// use burn::prelude::*;
    /// use nnsight::prelude::*;
    ///
    /// #[derive(Module, Debug, Inspectable)]
    /// struct Mlp<B: Backend> {
    ///     up: Linear<B>,
    ///     act: Relu,
    ///     down: Linear<B>,
    /// }
    ///
    /// #[inspect]
    /// impl<B: Backend> Mlp<B> {
    ///     fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
    ///         self.down.forward(self.act.forward(self.up.forward(x)))
    ///     }
    /// }
    ///
    /// # fn main() -> nnsight::Result<()> {
    /// let device = Default::default();
    /// let mlp = Mlp::<Flex> {
    ///     up: LinearConfig::new(4, 8).init(&device),
    ///     act: Relu::new(),
    ///     down: LinearConfig::new(8, 4).init(&device),
    /// };
    /// let x = Tensor::<Flex, 2>::ones([1, 4], &device);
    /// let (hidden, out) = mlp.trace(x).run(async |m| {
    ///     let hidden: Tensor<Flex, 2> = m.act.output().await?;
    ///     m.down.input().replace(hidden.clone() * 2.0).await?;
    ///     Ok((hidden, m.output().await?))
    /// })?;
    /// assert_eq!(out.dims(), [1, 4]);
    /// # let _ = hidden;
    /// # Ok(())
    /// # }
    /// ```
    fn trace<I: IntoInputs<Self::Inputs>>(&self, input: I) -> Tracer<'_, Self> {
        Tracer { model: self, inputs: input.into_inputs() }
    }
}

impl<M: Inspectable + Forward> TraceExt for M {}

/// A prepared trace: the model and its inputs, waiting for a body.
#[must_use = "a trace runs only when `run` is called"]
pub struct Tracer<'m, M: Forward + ?Sized> {
    model: &'m M,
    inputs: M::Inputs,
}

impl<M: Forward + ?Sized> std::fmt::Debug for Tracer<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").finish_non_exhaustive()
    }
}

impl<M: Inspectable + Forward> Tracer<'_, M> {
    /// Runs the forward pass with `body` interleaved, and returns what the body returns.
    ///
    /// The body is an async closure over the model's envoy; each envoy access parks it until the
    /// forward pass reaches that site, then hands it the real value. What the body returns is all
    /// that leaves the trace.
    ///
    /// # Errors
    /// The first error of the body: an access out of execution order, a site never reached, an
    /// index out of range, a type or shape mismatch, or an error of the body's own code. The
    /// model is unchanged either way.
    pub fn run<R>(self, body: impl for<'e, 't> AsyncFnOnce(&'e M::Envoy<'t>) -> Result<R>) -> Result<R> {
        let state = TraceState::new(Tree::of(self.model), 1);
        let envoy = M::envoy(&state, NodeId::ROOT);
        let mut task = Task::new(body(&envoy));
        {
            let engine = Engine::new(&state, vec![&mut task]);
            if engine.start() {
                let model = self.model;
                engine.run_root(self.inputs, |inputs| model.forward_inputs(inputs));
            }
        }
        task.into_result(&state, 0)
    }
}
