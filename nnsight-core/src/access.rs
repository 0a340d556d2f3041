//! Accesses to one site: futures that park the body until the forward pass reaches the site.
//!
//! [`Site`] is what `envoy.output()`, `.input()` and `.inputs()` return. Awaiting it reads the
//! value (a clone: for tensors a handle, no copy); [`Site::replace`] and [`Site::edit`] change it.

use std::any::type_name;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::{Error, Result};
use crate::state::{Access, Key, Kind, TraceState, View, WRITTEN};
use crate::tree::NodeId;
use crate::value::{Args, SiteValue};

/// Projects the value stored at a site onto the part an access sees.
pub trait Lens<V> {
    /// What the access sees.
    type Target: SiteValue;
    /// Which argument the access sees (`None`: the whole value), for observers.
    const ELEMENT: Option<usize>;
    /// The part of `value` the access sees.
    fn focus(value: &mut V) -> &mut Self::Target;
}

/// The whole value: a module's output, or all its arguments (`inputs()`).
#[derive(Debug)]
pub struct Whole;

impl<V: SiteValue> Lens<V> for Whole {
    type Target = V;
    const ELEMENT: Option<usize> = None;
    fn focus(value: &mut V) -> &mut V {
        value
    }
}

/// The first argument of a call (`input()`).
#[derive(Debug)]
pub struct First;

impl<V: Args> Lens<V> for First {
    type Target = V::First;
    const ELEMENT: Option<usize> = Some(0);
    fn focus(value: &mut V) -> &mut V::First {
        value.first_mut()
    }
}

/// One site of one module: its input or output, at one occurrence.
///
/// Await it to read the value; call [`replace`](Self::replace) or [`edit`](Self::edit) to change
/// what flows downstream. `V` is the value stored at the site and `L` the part this access sees.
#[must_use = "a site does nothing unless awaited"]
pub struct Site<'t, V, L = Whole> {
    state: &'t TraceState,
    key: Key,
    /// Where the body asked for the site (for a recorder's diagnostics).
    at: &'static std::panic::Location<'static>,
    _value: PhantomData<fn() -> (V, L)>,
}

impl<V, L> std::fmt::Debug for Site<'_, V, L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.state.describe(self.key))
    }
}

impl<'t, V: SiteValue, L: Lens<V>> Site<'t, V, L> {
    #[track_caller]
    pub(crate) fn new(state: &'t TraceState, node: NodeId, kind: Kind) -> Self {
        let at = std::panic::Location::caller();
        Site { state, key: Key { node, kind, occurrence: 0 }, at, _value: PhantomData }
    }

    /// The same site at another occurrence: the `n`-th call of the module (0 is the first).
    pub fn at(mut self, occurrence: u32) -> Self {
        self.key.occurrence = occurrence;
        self
    }

    /// Replaces the value with `value` when the site is reached; downstream computation sees it.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `value` has another shape than the value it replaces,
    /// [`Error::TypeMismatch`] when its element type differs (an `f16` tensor for an `f32` site);
    /// the errors of reading the site.
    pub fn replace(self, value: L::Target) -> Replace<'t, V, L> {
        Replace { site: self, value: Some(value) }
    }

    /// Replaces the value with `f(value)` when the site is reached (e.g. a slice assignment).
    ///
    /// # Errors
    /// As [`replace`](Self::replace).
    pub fn edit<F: FnOnce(L::Target) -> L::Target>(self, f: F) -> Edit<'t, V, L, F> {
        Edit { site: self, f: Some(f) }
    }

    /// Replaces the value with `f(value)`, where `f` may fail; `f` runs when the site is
    /// reached. Errors of `f` end the body like any error.
    ///
    /// # Errors
    /// The error of `f`; as [`replace`](Self::replace).
    pub fn try_edit<F: FnOnce(L::Target) -> Result<L::Target>>(self, f: F) -> TryEdit<'t, V, L, F> {
        TryEdit { site: self, f: Some(f) }
    }

    /// Replaces the value with `f()`, computed when the site is reached — not when the body
    /// starts. This is how a later invoke patches in a value an earlier invoke reads at the same
    /// site: `m.h[6].output().replace_with(|| clean.get())`.
    ///
    /// # Errors
    /// The error of `f`; as [`replace`](Self::replace).
    #[allow(clippy::type_complexity)]
    pub fn replace_with<F: FnOnce() -> Result<L::Target>>(
        self,
        f: F,
    ) -> TryEdit<'t, V, L, impl FnOnce(L::Target) -> Result<L::Target>> {
        self.try_edit(move |_| f())
    }

    /// Waits until the forward pass reaches this site, without touching the value; a `replace`
    /// or `edit` of the same site right after is served on the same visit. (`trace!` uses it so
    /// that a replacement value is computed when the site is reached.)
    ///
    /// # Errors
    /// The errors of reading the site, except a type mismatch.
    pub fn reached(&self) -> Reached<'_, 't, V, L> {
        Reached { site: self }
    }

    /// Polls the access: `op` runs on the served value (the invoke's rows of it), at most once;
    /// when the access `writes`, the rows are spliced back.
    fn poll_with<R>(&self, writes: bool, op: impl FnOnce(&mut L::Target) -> Result<R>) -> Poll<Result<R>> {
        match self.state.access(self.key) {
            Access::Wait => Poll::Pending,
            Access::Fail(error) => Poll::Ready(Err(error)),
            Access::Serve(value, found) => {
                // SAFETY: the engine points `value` at the live site value on its stack right
                // before it polls the waiting body and clears it right after; this access runs
                // inside that poll, and nothing else touches the value meanwhile.
                let value = unsafe { &mut *value };
                let Some(value) = value.as_any_mut().downcast_mut::<V>() else {
                    return Poll::Ready(Err(Error::TypeMismatch {
                        site: self.state.describe(self.key),
                        expected: type_name::<V>(),
                        found,
                    }));
                };
                let target = L::focus(value);
                let state = self.state;
                let observe = |part: &mut L::Target| {
                    if let Some(observer) = &state.observer {
                        observer.read(&state.observed(self.key, L::ELEMENT), part, self.at);
                    }
                };
                let refuse = |problem: String| state.not_batched(self.key, state.current_body(), problem);
                Poll::Ready(match state.view(state.current_rows(), self.key.node) {
                    View::Whole => {
                        observe(target);
                        op(target)
                    }
                    View::Shared(refusal) if writes => {
                        Err(state.refuse_write(self.key, state.current_body(), refusal))
                    }
                    View::Shared(_) => {
                        observe(target);
                        op(target)
                    }
                    View::Rows(rows) => match state.engine_work(|| target.narrow_rows(rows)) {
                        Err(problem) => Err(refuse(problem)),
                        Ok(mut part) => {
                            observe(&mut part);
                            match op(&mut part) {
                                Ok(result) if writes => state
                                    .engine_work(|| target.splice_rows(rows, part))
                                    .map(|()| result)
                                    .map_err(refuse),
                                result => result,
                            }
                        }
                    },
                })
            }
        }
    }

    fn assign(&self, slot: &mut L::Target, value: L::Target) -> Result<()> {
        slot.check_replacement(&value).map_err(|m| {
            m.into_error(self.state.describe(self.key), |expected| match self.state.current_rows() {
                Some(rows) => format!(
                    "{expected} ({} sees rows {}..{} of a batch of {})",
                    self.state.current_body(),
                    rows.start,
                    rows.start + rows.len,
                    rows.total
                ),
                None => expected,
            })
        })?;
        if let Some(observer) = &self.state.observer {
            observer.wrote(&self.state.observed(self.key, L::ELEMENT), &value, self.at);
        }
        *slot = value;
        self.state.raise(WRITTEN);
        Ok(())
    }

    /// Where the body asked for the site.
    pub(crate) fn location(&self) -> &'static std::panic::Location<'static> {
        self.at
    }

    /// The visit this access is for (0 for the first).
    pub fn occurrence(&self) -> u32 {
        self.key.occurrence
    }

    /// The trace and visit this access is for.
    pub(crate) fn parts(&self) -> (&'t TraceState, Key) {
        (self.state, self.key)
    }

    /// Polls a write access (used by other write futures, e.g. gradient tracking).
    pub(crate) fn poll_write<R>(&self, op: impl FnOnce(&mut L::Target) -> Result<R>) -> Poll<Result<R>> {
        self.poll_with(true, op)
    }
}

/// Reading a site: resolves to a copy of its value ([`SiteValue::snapshot`]).
#[must_use = "a read does nothing unless awaited"]
#[derive(Debug)]
pub struct Read<'t, V, L = Whole> {
    site: Site<'t, V, L>,
}

impl<'t, V: SiteValue, L: Lens<V>> IntoFuture for Site<'t, V, L> {
    type Output = Result<L::Target>;
    type IntoFuture = Read<'t, V, L>;
    fn into_future(self) -> Read<'t, V, L> {
        Read { site: self }
    }
}

impl<V: SiteValue, L: Lens<V>> Future for Read<'_, V, L> {
    type Output = Result<L::Target>;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.site.poll_with(false, |value| Ok(value.snapshot()))
    }
}

/// Replacing a site's value: see [`Site::replace`].
#[must_use = "a replacement does nothing unless awaited"]
pub struct Replace<'t, V, L: Lens<V>> {
    site: Site<'t, V, L>,
    value: Option<L::Target>,
}

impl<V: SiteValue, L: Lens<V>> Future for Replace<'_, V, L> {
    type Output = Result<()>;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let value = &mut this.value;
        this.site.poll_with(true, |slot| match value.take() {
            Some(value) => this.site.assign(slot, value),
            None => Ok(()),
        })
    }
}

/// Editing a site's value in place: see [`Site::edit`].
#[must_use = "an edit does nothing unless awaited"]
pub struct Edit<'t, V, L, F> {
    site: Site<'t, V, L>,
    f: Option<F>,
}

impl<V: SiteValue, L: Lens<V>, F: FnOnce(L::Target) -> L::Target> Future for Edit<'_, V, L, F> {
    type Output = Result<()>;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let f = &mut this.f;
        this.site.poll_with(true, |slot| match f.take() {
            Some(f) => {
                let edited = f(slot.clone());
                this.site.assign(slot, edited)
            }
            None => Ok(()),
        })
    }
}

/// Waiting for a site: see [`Site::reached`].
#[must_use = "waiting does nothing unless awaited"]
#[derive(Debug)]
pub struct Reached<'s, 't, V, L> {
    site: &'s Site<'t, V, L>,
}

impl<V, L> Future for Reached<'_, '_, V, L> {
    type Output = Result<()>;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        match self.site.state.access(self.site.key) {
            Access::Wait => Poll::Pending,
            Access::Fail(error) => Poll::Ready(Err(error)),
            Access::Serve(..) => Poll::Ready(Ok(())),
        }
    }
}

/// Editing a site's value with a fallible function: see [`Site::try_edit`].
#[must_use = "an edit does nothing unless awaited"]
pub struct TryEdit<'t, V, L, F> {
    site: Site<'t, V, L>,
    f: Option<F>,
}

impl<V: SiteValue, L: Lens<V>, F: FnOnce(L::Target) -> Result<L::Target>> Future for TryEdit<'_, V, L, F> {
    type Output = Result<()>;
    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        let f = &mut this.f;
        this.site.poll_with(true, |slot| match f.take() {
            Some(f) => {
                let edited = f(slot.clone())?;
                this.site.assign(slot, edited)
            }
            None => Ok(()),
        })
    }
}

impl<V, L, F> Unpin for TryEdit<'_, V, L, F> {}

// Neither future is self-referential, and neither projects a pin onto its fields.
impl<V, L: Lens<V>> Unpin for Replace<'_, V, L> {}
impl<V, L, F> Unpin for Edit<'_, V, L, F> {}
