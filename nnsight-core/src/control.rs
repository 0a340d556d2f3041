//! Control of the forward pass from a body: [`skip`](crate::ModuleEnvoy::skip) a module with a
//! replacement value, or [`stop`](crate::ModuleEnvoy::stop) the pass after the current site.

use std::any::type_name;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::erased::ErasedValue;
use crate::error::{Error, Result};
use crate::skipped::Skipped;
use crate::state::{Access, Key, Kind, SKIPPING, STOPPING, TraceState};
use crate::tree::NodeId;
use crate::value::SiteValue;

/// A value that can stand for a module's output in a skip: any [`SiteValue`], or an untyped one
/// ([`Erased`]).
pub trait SkipValue {
    /// The value, boxed, and its type's name.
    fn boxed(self) -> (Box<dyn std::any::Any>, &'static str);
    /// The value, untyped (for observers).
    fn erased(&self) -> &dyn ErasedValue;
}

impl<T: SiteValue> SkipValue for T {
    fn boxed(self) -> (Box<dyn std::any::Any>, &'static str) {
        (Box::new(self), type_name::<T>())
    }

    fn erased(&self) -> &dyn ErasedValue {
        self
    }
}

/// An untyped skip value (see [`DynEnvoy::skip_erased`](crate::DynEnvoy::skip_erased)): it must
/// be of the module's output type, checked when the module is reached.
pub struct Erased(pub Box<dyn ErasedValue>);

impl SkipValue for Erased {
    fn boxed(self) -> (Box<dyn std::any::Any>, &'static str) {
        let name = self.0.as_ref().type_name();
        (self.0, name)
    }

    fn erased(&self) -> &dyn ErasedValue {
        self.0.as_ref()
    }
}

/// Skipping a module: see [`ModuleEnvoy::skip`](crate::ModuleEnvoy::skip).
#[must_use = "a skip does nothing unless awaited"]
pub struct Skip<'t, T> {
    state: &'t TraceState,
    key: Key,
    value: Option<T>,
    _value: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Skip<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Skip({})", self.state.describe(self.key))
    }
}

impl<'t, T: SkipValue> Skip<'t, T> {
    pub(crate) fn new(state: &'t TraceState, node: NodeId, value: T) -> Self {
        Skip {
            state,
            key: Key { node, kind: Kind::Input, occurrence: 0 },
            value: Some(value),
            _value: PhantomData,
        }
    }

    /// Skips another call of the module: the `n`-th (0 is the first).
    pub fn at(mut self, occurrence: u32) -> Self {
        self.key.occurrence = occurrence;
        self
    }
}

// Not self-referential; no pin projection.
impl<T> Unpin for Skip<'_, T> {}

impl<T: SkipValue> Future for Skip<'_, T> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        match this.state.access(this.key) {
            Access::Wait => Poll::Pending,
            Access::Fail(error) => Poll::Ready(Err(error)),
            Access::Serve(..) => {
                if let Some(rows) = this.state.current_rows()
                    && !this.state.owns_whole(rows, this.key.node)
                {
                    return Poll::Ready(Err(Error::PartialSkip {
                        site: this.state.path(this.key.node),
                        invoke: this.state.current_body(),
                        rows: format!("{}..{} of {}", rows.start, rows.start + rows.len, rows.total),
                    }));
                }
                let Some(value) = this.value.take() else { return Poll::Ready(Ok(())) };
                if let Some(observer) = &this.state.observer {
                    observer.skipped(&this.state.observed(this.key, None), Some(value.erased()));
                }
                let (value, type_name) = value.boxed();
                *this.state.skip.borrow_mut() = Some(Skipped { key: this.key, value, type_name });
                this.state.raise(SKIPPING);
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// Ends the forward pass after the site being served (see
/// [`ModuleEnvoy::stop`](crate::ModuleEnvoy::stop)).
pub(crate) fn stop(state: &TraceState) -> Result<()> {
    if cfg!(panic = "unwind") {
        if let Some(observer) = &state.observer {
            observer.stopped();
        }
        state.raise(STOPPING);
        Ok(())
    } else {
        Err(Error::Unsupported {
            what: "asked to stop the forward pass, which needs `panic = \"unwind\"` (this build aborts on panic)"
                .to_owned(),
        })
    }
}
