//! Persistent edits: an intervention stored on a model handle and applied first on every later
//! trace, like nnsight's `model.edit()`.
//!
//! [`TraceExt::edit`](crate::TraceExt::edit) returns an [`Edited`] handle that borrows the model:
//! the model itself is unchanged (and its weights are shared, not copied); traces of the handle run
//! the stored edits before their own bodies, at every site, on the whole batch.

use std::fmt;
use std::rc::Rc;

use crate::engine::BodyFuture;
use crate::error::Result;
use crate::inspectable::{Forward, Inspectable, IntoInputs};
use crate::invokes::Invokes;
use crate::trace::Tracer;

/// A stored intervention: an async closure over the envoy, run again on every trace.
pub trait EditBody<M: Inspectable> {
    /// Starts one run of the edit on `envoy`.
    #[doc(hidden)]
    fn start<'a, 't>(&'a self, envoy: &'a M::Envoy<'t>) -> BodyFuture<'a, ()>;
}

impl<M: Inspectable, F> EditBody<M> for F
where
    F: for<'e, 't> AsyncFn(&'e M::Envoy<'t>) -> Result<()>,
{
    fn start<'a, 't>(&'a self, envoy: &'a M::Envoy<'t>) -> BodyFuture<'a, ()> {
        Box::pin(self(envoy))
    }
}

/// The edits stored on a handle, in the order they apply.
pub(crate) type EditList<'m, M> = Vec<Rc<dyn EditBody<M> + 'm>>;

/// A model with persistent edits: every trace of it runs the edits first.
///
/// Built by [`TraceExt::edit`](crate::TraceExt::edit); cheap to clone (the edits are shared).
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
/// # let x = Tensor::<Flex, 2>::ones([1, 3], &device);
/// // Zero the first layer's output on every trace of `edited`; `net` itself is unchanged.
/// let edited = net.edit(async |m| m.a.output::<Tensor<Flex, 2>>().edit(|h| h.zeros_like()).await);
/// let out = edited.trace(x.clone()).run(async |m| m.output().await)?;
/// let plain = net.trace(x).run(async |m| m.output().await)?;
/// assert_ne!(out.to_data(), plain.to_data());
/// # Ok(())
/// # }
/// ```
pub struct Edited<'m, M: Inspectable> {
    model: &'m M,
    edits: EditList<'m, M>,
}

impl<M: Inspectable> Clone for Edited<'_, M> {
    fn clone(&self) -> Self {
        Edited { model: self.model, edits: self.edits.clone() }
    }
}

impl<M: Inspectable> fmt::Debug for Edited<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Edited").field("edits", &self.edits.len()).finish_non_exhaustive()
    }
}

impl<'m, M: Inspectable + Forward> Edited<'m, M> {
    pub(crate) fn new(model: &'m M, edits: EditList<'m, M>) -> Self {
        Edited { model, edits }
    }

    /// The same handle with one more edit, applied after the ones already stored.
    pub fn edit<C>(mut self, body: C) -> Self
    where
        C: for<'e, 't> AsyncFn(&'e M::Envoy<'t>) -> Result<()> + 'm,
    {
        self.edits.push(Rc::new(body));
        self
    }

    /// Removes the most recent edit; `false` if there was none.
    pub fn undo(&mut self) -> bool {
        self.edits.pop().is_some()
    }

    /// The stored edits, shared.
    pub(crate) fn edit_list(&self) -> EditList<'m, M> {
        self.edits.clone()
    }

    /// The number of stored edits.
    pub fn edits(&self) -> usize {
        self.edits.len()
    }

    /// The unedited model (the weights this handle shares).
    pub fn model(&self) -> &'m M {
        self.model
    }

    /// A trace of one forward pass on `input`, the edits applied first.
    pub fn trace<I: IntoInputs<M::Inputs>>(&self, input: I) -> Tracer<'m, M> {
        Tracer::new(self.model, input.into_inputs(), self.edits.clone())
    }

    /// A trace made of invokes (see [`TraceExt::tracer`](crate::TraceExt::tracer)), the edits
    /// applied first.
    pub fn tracer(&self) -> Invokes<'m, M, M::Inputs, ()>
    where
        M::Inputs: crate::batch::Concat,
    {
        Invokes::concatenating(self.model).with_edits(self.edits.clone())
    }
}
