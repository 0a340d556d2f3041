//! The explicit tracing API: `model.trace(input).run(async |m| { .. })`, and its entry points
//! for invokes (`model.tracer()`) and persistent edits (`model.edit(..)`).

use std::rc::Rc;

use crate::batch::Concat;
use crate::edit::{EditList, Edited};
use crate::error::Result;
use crate::group::One;
use crate::inspectable::{Forward, Inspectable, IntoInputs};
use crate::invokes::{Invokes, drive};

/// Starts traces on a model; implemented for every [`Inspectable`] model with a [`Forward`].
pub trait TraceExt: Inspectable + Forward + Sized {
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
        Tracer::new(self, input.into_inputs(), Vec::new())
    }

    /// Prepares a trace made of invokes: several inputs, each with its own body, joined along
    /// dimension 0 into **one** batched forward pass. See [`Invokes`].
    ///
    /// # Examples
    /// ```
    /// # use burn::backend::Flex;
    /// # use burn::nn::{Linear, LinearConfig};
    /// # use burn::prelude::*;
    /// # use nnsight::prelude::*;
    /// # #[derive(Module, Debug, Inspectable)]
    /// # struct Net<B: Backend> { a: Linear<B>, b: Linear<B> }
    /// # #[inspect]
    /// # impl<B: Backend> Net<B> {
    /// #     fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> { self.b.forward(self.a.forward(x)) }
    /// # }
    /// # fn main() -> nnsight::Result<()> {
    /// # let device = Default::default();
    /// # let net = Net::<Flex> { a: LinearConfig::new(3, 3).init(&device), b: LinearConfig::new(3, 3).init(&device) };
    /// let clean = Tensor::<Flex, 2>::ones([1, 3], &device);
    /// let corrupted = Tensor::<Flex, 2>::zeros([1, 3], &device);
    /// let hidden = nnsight::Shared::new("a's output on the clean input");
    /// let (_, patched) = net
    ///     .tracer()
    ///     .invoke(clean, async |m| hidden.set(m.a.output::<Tensor<Flex, 2>>().await?))
    ///     .invoke(corrupted, async |m| {
    ///         // `replace_with` takes the value when the site is reached, after invoke 0 read it.
    ///         m.a.output().replace_with(|| hidden.get()).await?;
    ///         m.output().await
    ///     })
    ///     .run()?;
    /// assert_eq!(patched.dims(), [1, 3]);
    /// # Ok(())
    /// # }
    /// ```
    fn tracer(&self) -> Invokes<'_, Self, Self::Inputs, ()>
    where
        Self::Inputs: Concat,
    {
        Invokes::concatenating(self)
    }

    /// A handle on this model that applies `body` first on every later trace (nnsight's
    /// `model.edit()`): the model is unchanged, the handle shares its weights. See [`Edited`].
    fn edit<'m, C>(&'m self, body: C) -> Edited<'m, Self>
    where
        C: for<'e, 't> AsyncFn(&'e Self::Envoy<'t>) -> Result<()> + 'm,
    {
        let edits: EditList<'m, Self> = vec![Rc::new(body)];
        Edited::new(self, edits)
    }
}

impl<M: Inspectable + Forward> TraceExt for M {}

/// A prepared trace: the model and its inputs, waiting for a body.
#[must_use = "a trace runs only when `run` is called"]
pub struct Tracer<'m, M: Inspectable + Forward> {
    model: &'m M,
    inputs: M::Inputs,
    edits: EditList<'m, M>,
}

impl<M: Inspectable + Forward> std::fmt::Debug for Tracer<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").finish_non_exhaustive()
    }
}

impl<'m, M: Inspectable + Forward> Tracer<'m, M> {
    pub(crate) fn new(model: &'m M, inputs: M::Inputs, edits: EditList<'m, M>) -> Self {
        Tracer { model, inputs, edits }
    }

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
        let (result,) = drive(self.model, self.inputs, vec![None], &self.edits, (One(body),))?;
        Ok(result)
    }
}
