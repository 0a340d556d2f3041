//! Standing edits: an edit applied at every visit of a site, or at a range of visits — the way to
//! intervene at every generation step (nnsight's `tracer.all()` / `tracer.iter[..]`) without a
//! body waiting for each step.

use std::any::type_name;
use std::ops::Range;

use crate::access::{Lens, Site};
use crate::erased::ErasedValue;
use crate::error::{Error, Result};
use crate::state::{Key, Kind, STANDING, TraceState, View, WRITTEN};
use crate::tree::NodeId;
use crate::value::SiteValue;

/// What a standing edit does to the value of one visit.
type Apply = Box<dyn FnMut(&mut dyn ErasedValue, &TraceState, Key) -> Result<()>>;

/// One standing edit: where, at which visits, and what it does to the value.
pub(crate) struct Standing {
    node: NodeId,
    kind: Kind,
    visits: Range<u32>,
    apply: Apply,
}

/// Whether a standing edit of the trace edits the visit `key`.
pub(crate) fn edits(state: &TraceState, key: Key) -> bool {
    state.standing.try_borrow().map_or(true, |standing| {
        standing.iter().any(|edit| {
            edit.node == key.node && edit.kind == key.kind && edit.visits.contains(&key.occurrence)
        })
    })
}

/// Applies the standing edits of `key` to `value`, in the order they were made; the first error
/// fails the trace.
pub(crate) fn apply(state: &TraceState, key: Key, value: &mut dyn ErasedValue) {
    let Ok(mut standing) = state.standing.try_borrow_mut() else { return };
    for edit in standing.iter_mut() {
        if edit.node == key.node
            && edit.kind == key.kind
            && edit.visits.contains(&key.occurrence)
            && let Err(error) = (edit.apply)(value, state, key)
        {
            state.fail(error);
            return;
        }
    }
}

impl<V: SiteValue, L: Lens<V> + 'static> Site<'_, V, L> {
    /// Edits the value with `f` at **every** visit of this site from this one on (e.g. every
    /// generation step), without the body waiting for each. `f` owns what it uses (`move`).
    ///
    /// # Errors
    /// Nothing at the call; a replacement of another shape fails the trace with
    /// [`Error::ShapeMismatch`] when it happens.
    pub fn every<F>(self, f: F) -> Result<()>
    where
        F: FnMut(L::Target) -> L::Target + 'static,
    {
        let from = self.occurrence();
        self.steps(from..u32::MAX, f)
    }

    /// Edits the value with `f` at the visits `visits` of this site (e.g. generation steps
    /// `2..5`), without the body waiting for each. Visits that never happen are not an error.
    ///
    /// # Errors
    /// As [`every`](Self::every).
    pub fn steps<F>(self, visits: Range<u32>, mut f: F) -> Result<()>
    where
        F: FnMut(L::Target) -> L::Target + 'static,
    {
        let (state, key) = self.parts();
        let rows = state.current_rows();
        let body = state.current_body();
        let index = state.standing.borrow().len();
        if let Some(observer) = &state.observer {
            observer.standing(index, &state.observed(key, L::ELEMENT), visits.clone(), self.location());
        }
        let apply = move |value: &mut dyn ErasedValue, state: &TraceState, key: Key| -> Result<()> {
            let Some(value) = value.as_any_mut().downcast_mut::<V>() else {
                return Err(Error::TypeMismatch {
                    site: state.describe(key),
                    expected: type_name::<V>(),
                    found: "another type",
                });
            };
            let target = L::focus(value);
            let refuse = |problem: String| state.not_batched(key, body.clone(), problem);
            let view = state.view(rows, key.node);
            let part = match view {
                View::Whole => target.clone(),
                View::Shared(refusal) => return Err(state.refuse_write(key, body.clone(), refusal)),
                View::Rows(rows) => target.narrow_rows(rows).map_err(refuse)?,
            };
            let edited = match &state.observer {
                None => f(part.clone()),
                Some(observer) => {
                    let mut arg = part.clone();
                    observer.standing_applying(index, &mut arg);
                    let edited = f(arg);
                    observer.standing_applied(index, &edited);
                    edited
                }
            };
            part.check_replacement(&edited).map_err(|m| {
                m.into_error(format!("{} (standing edit of {body})", state.describe(key)), |e| e)
            })?;
            state.raise(WRITTEN);
            match view {
                View::Rows(rows) => target.splice_rows(rows, edited).map_err(refuse)?,
                _ => *target = edited,
            }
            Ok(())
        };
        register(state, key, visits, Box::new(apply));
        Ok(())
    }
}

/// Registers a standing edit of `key`'s site at `visits`.
pub(crate) fn register(state: &TraceState, key: Key, visits: Range<u32>, apply: Apply) {
    state.standing.borrow_mut().push(Standing { node: key.node, kind: key.kind, visits, apply });
    state.raise(STANDING);
}

/// The untyped standing edit of [`ErasedSite::steps`](crate::site::ErasedSite::steps): `f` edits
/// the body's rows of the value at each visit, through the writer.
pub(crate) fn register_erased<F>(state: &TraceState, key: Key, visits: Range<u32>, mut f: F)
where
    F: FnMut(&mut dyn ErasedValue, crate::erased::Writer<'_>) -> Result<()> + 'static,
{
    let rows = state.current_rows();
    let body = state.current_body();
    let apply = move |value: &mut dyn ErasedValue, state: &TraceState, key: Key| -> Result<()> {
        let refuse = |problem: String| state.not_batched(key, body.clone(), problem);
        let writer = crate::erased::Writer::new(state, key);
        match state.view(rows, key.node) {
            View::Whole => f(value, writer),
            View::Shared(refusal) => Err(state.refuse_write(key, body.clone(), refusal)),
            View::Rows(rows) => {
                let mut part = value.narrow_boxed(rows).map_err(refuse)?;
                f(part.as_mut(), writer)?;
                value.splice_boxed(rows, part).map_err(refuse)
            }
        }
    };
    register(state, key, visits, Box::new(apply));
}
