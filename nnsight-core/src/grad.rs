//! Gradients of intermediate activations: a body tracks a site's value, and after `backward()`
//! its exact gradient is read by value.
//!
//! With an autodiff backend (`Autodiff<Flex>`), [`Site::track_grad`] adds a zero tensor that
//! requires a gradient to the value (`h + 0`: the same numbers flow on). The gradient of that leaf
//! is the gradient of the activation, and the graph upstream of the activation is untouched. In a
//! batched trace the tracked part is the invoke's rows, spliced back like any write, so the
//! gradient flows through the batch exactly as through a single-prompt trace.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use burn::tensor::Tensor;
use burn::tensor::backend::AutodiffBackend;

use crate::access::{Lens, Site};
use crate::error::{Error, Result};
use crate::value::SiteValue;

/// An activation whose gradient the backward pass will compute: its value, and the gradient once
/// [`backward`](Tensor::backward) has run.
#[derive(Clone, Debug)]
pub struct Tracked<B: AutodiffBackend, const D: usize> {
    site: String,
    value: Tensor<B, D>,
    probe: Tensor<B, D>,
}

impl<B: AutodiffBackend, const D: usize> Tracked<B, D> {
    /// The activation (as the forward pass computed it).
    pub fn value(&self) -> Tensor<B, D> {
        self.value.clone()
    }

    /// The gradient of the backward pass's root with respect to the activation.
    ///
    /// # Errors
    /// [`Error::NoGradient`] when the backward pass did not go through the activation.
    pub fn grad(&self, grads: &B::Gradients) -> Result<Tensor<B::InnerBackend, D>> {
        self.probe.grad(grads).ok_or_else(|| Error::NoGradient { site: self.site.clone() })
    }
}

/// Tracking the gradient of a site's value: see [`Site::track_grad`].
#[must_use = "tracking does nothing unless awaited"]
#[derive(Debug)]
pub struct TrackGrad<'t, V, L> {
    site: Site<'t, V, L>,
    done: bool,
}

impl<'t, B, const D: usize, V, L> Site<'t, V, L>
where
    B: AutodiffBackend,
    V: SiteValue,
    L: Lens<V, Target = Tensor<B, D>>,
{
    /// Tracks the gradient of this value (e.g. a layer's output): after the trace, call
    /// `backward()` on a scalar computed from the model's output and read
    /// [`Tracked::grad`]. Needs an autodiff backend; the value flowing on is unchanged.
    pub fn track_grad(self) -> TrackGrad<'t, V, L> {
        TrackGrad { site: self, done: false }
    }
}

impl<'t, V, L> Unpin for TrackGrad<'t, V, L> {}

impl<B, const D: usize, V, L> Future for TrackGrad<'_, V, L>
where
    B: AutodiffBackend,
    V: SiteValue,
    L: Lens<V, Target = Tensor<B, D>>,
{
    type Output = Result<Tracked<B, D>>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(Err(Error::Unsupported { what: "polled a finished `track_grad`".into() }));
        }
        let (state, key) = this.site.parts();
        let polled = this.site.poll_write(|value| {
            let probe = value.zeros_like().require_grad();
            *value = value.clone() + probe.clone();
            Ok(Tracked { site: state.describe(key), value: value.clone(), probe })
        });
        if polled.is_ready() {
            this.done = true;
        }
        polled
    }
}
