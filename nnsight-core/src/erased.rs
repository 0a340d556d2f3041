//! Site values without their types, for code that learns a site's type only at run time — the
//! IR's interpreter (`nnsight-remote`) reads and writes sites named by a program this way. Every
//! [`SiteValue`] is an [`ErasedValue`]; [`ErasedSite`] is the untyped counterpart of
//! [`Site`](crate::Site): the same visit, row narrowing and checks, with the value behind
//! `&mut dyn ErasedValue`.

use std::any::{Any, type_name};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::{Error, Mismatch, Result};
use crate::state::{Access, Key, TraceState, View, WRITTEN};
use crate::value::{Rows, SiteValue};

/// A site value of a type known only at run time: downcast it (`as_any`) to the types you expect.
pub trait ErasedValue: Any {
    /// The value, to downcast.
    fn as_any(&self) -> &dyn Any;
    /// The value, to downcast mutably.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// The value's type, for messages.
    fn type_name(&self) -> &'static str;
    /// A copy (for tensors, a handle: no data is copied).
    fn clone_boxed(&self) -> Box<dyn ErasedValue>;
    /// [`SiteValue::narrow_rows`], boxed.
    ///
    /// # Errors
    /// As [`SiteValue::narrow_rows`].
    fn narrow_boxed(&self, rows: Rows) -> std::result::Result<Box<dyn ErasedValue>, String>;
    /// [`SiteValue::splice_rows`] of a part made by [`narrow_boxed`](Self::narrow_boxed).
    ///
    /// # Errors
    /// As [`SiteValue::splice_rows`], or a part of another type.
    fn splice_boxed(&mut self, rows: Rows, part: Box<dyn ErasedValue>) -> std::result::Result<(), String>;
    /// Replaces the value by `value` after [`SiteValue::check_replacement`].
    ///
    /// # Errors
    /// A [`Mismatch`] of types, shapes or element types; the value is left as it was.
    fn assign_boxed(&mut self, value: Box<dyn ErasedValue>) -> std::result::Result<(), Mismatch>;
    /// Element `index` of a tuple (a call's arguments); `None` for other values.
    fn element_mut(&mut self, index: usize) -> Option<&mut dyn ErasedValue>;
}

impl<T: SiteValue> ErasedValue for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn type_name(&self) -> &'static str {
        type_name::<T>()
    }

    fn clone_boxed(&self) -> Box<dyn ErasedValue> {
        Box::new(self.snapshot())
    }

    fn narrow_boxed(&self, rows: Rows) -> std::result::Result<Box<dyn ErasedValue>, String> {
        Ok(Box::new(self.narrow_rows(rows)?))
    }

    fn splice_boxed(&mut self, rows: Rows, part: Box<dyn ErasedValue>) -> std::result::Result<(), String> {
        let found = part.as_ref().type_name();
        let part: Box<dyn Any> = part;
        match part.downcast::<T>() {
            Ok(part) => self.splice_rows(rows, *part),
            Err(_) => {
                Err(format!("a part of type `{found}` cannot be written back into a `{}`", type_name::<T>()))
            }
        }
    }

    fn assign_boxed(&mut self, value: Box<dyn ErasedValue>) -> std::result::Result<(), Mismatch> {
        let found = value.as_ref().type_name();
        let value: Box<dyn Any> = value;
        let value = value.downcast::<T>().map_err(|_| Mismatch::element_type(type_name::<T>(), found))?;
        self.check_replacement(&value)?;
        *self = *value;
        Ok(())
    }

    fn element_mut(&mut self, index: usize) -> Option<&mut dyn ErasedValue> {
        SiteValue::element_mut(self, index)
    }
}

/// One site, untyped: see [`DynEnvoy::erased`](crate::DynEnvoy::erased).
#[derive(Clone, Copy)]
pub struct ErasedSite<'t> {
    state: &'t TraceState,
    key: Key,
}

impl std::fmt::Debug for ErasedSite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.state.describe(self.key))
    }
}

impl<'t> ErasedSite<'t> {
    pub(crate) fn new(state: &'t TraceState, key: Key) -> Self {
        ErasedSite { state, key }
    }

    /// Waits for the site, then runs `op` on the value the body sees (its rows of it), at most
    /// once; when `writes`, what `op` left in the value flows downstream (spliced back into the
    /// batch). `op` gets a writer that checks and assigns a replacement.
    ///
    /// # Errors
    /// The errors of reading the site ([`Error::NotReached`], [`Error::NotBatched`], ...), and
    /// those of `op`.
    pub fn visit<R, F>(self, writes: bool, op: F) -> Visit<'t, F>
    where
        F: FnOnce(&mut dyn ErasedValue, Writer<'t>) -> Result<R>,
    {
        Visit { site: self, writes, op: Some(op) }
    }

    /// A standing edit: at each visit of `visits` of this site (e.g. generation steps; the site's
    /// own occurrence is ignored), `f` edits the value this body sees, through the writer — as
    /// [`Site::steps`](crate::Site::steps), untyped. Visits that never happen are not an error.
    ///
    /// # Errors
    /// Nothing at the call; an error of `f` fails the trace when it happens.
    pub fn steps<F>(self, visits: std::ops::Range<u32>, f: F) -> Result<()>
    where
        F: FnMut(&mut dyn ErasedValue, Writer<'_>) -> Result<()> + 'static,
    {
        if let Some(observer) = &self.state.observer {
            observer.uses("an untyped standing edit (`ErasedSite::steps`)");
        }
        crate::standing::register_erased(self.state, self.key, visits, f);
        Ok(())
    }

    /// A description of the site (`transformer.h.3.output (call 0)`), for messages.
    pub fn describe(&self) -> String {
        self.state.describe(self.key)
    }
}

/// Assigns replacements to the value of an [`ErasedSite::visit`], with the site's checks.
#[derive(Clone, Copy)]
pub struct Writer<'t> {
    site: ErasedSite<'t>,
}

impl<'t> Writer<'t> {
    pub(crate) fn new(state: &'t TraceState, key: Key) -> Self {
        Writer { site: ErasedSite { state, key } }
    }
}

impl Writer<'_> {
    /// Replaces `slot` (the visited value or one of its elements) by `value`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] or [`Error::TypeMismatch`] naming the site and both values; `slot`
    /// is left as it was.
    pub fn assign(&self, slot: &mut dyn ErasedValue, value: Box<dyn ErasedValue>) -> Result<()> {
        slot.assign_boxed(value).map_err(|m| m.into_error(self.site.describe(), |expected| expected))?;
        self.site.state.raise(WRITTEN);
        Ok(())
    }
}

// The future never pins `op` (it is taken out and called by value), so it moves freely.
impl<F> Unpin for Visit<'_, F> {}

/// The future of [`ErasedSite::visit`].
#[must_use = "a visit does nothing unless awaited"]
pub struct Visit<'t, F> {
    site: ErasedSite<'t>,
    writes: bool,
    op: Option<F>,
}

impl<'t, R, F> Future for Visit<'t, F>
where
    F: FnOnce(&mut dyn ErasedValue, Writer<'t>) -> Result<R>,
{
    type Output = Result<R>;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<R>> {
        let ErasedSite { state, key } = self.site;
        let value = match state.access(key) {
            Access::Wait => return Poll::Pending,
            Access::Fail(error) => return Poll::Ready(Err(error)),
            Access::Serve(value, _) => value,
        };
        let Some(op) = self.op.take() else {
            return Poll::Ready(Err(Error::Unsupported {
                what: "polled an erased visit after it finished".into(),
            }));
        };
        // SAFETY: as in `Site::poll_with`: the engine points `value` at the live site value on its
        // stack right before it polls the waiting body and clears it right after; this access
        // runs inside that poll, and nothing else touches the value meanwhile.
        let value = unsafe { &mut *value };
        let writer = Writer { site: self.site };
        let refuse = |problem: String| state.not_batched(key, state.current_body(), problem);
        Poll::Ready(match state.view(state.current_rows(), key.node) {
            View::Whole => op(value, writer),
            View::Shared(refusal) if self.writes => {
                Err(state.refuse_write(key, state.current_body(), refusal))
            }
            View::Shared(_) => op(value, writer),
            View::Rows(rows) => match value.narrow_boxed(rows) {
                Err(problem) => Err(refuse(problem)),
                Ok(mut part) => match op(part.as_mut(), writer) {
                    Ok(result) if self.writes => {
                        value.splice_boxed(rows, part).map(|()| result).map_err(refuse)
                    }
                    result => result,
                },
            },
        })
    }
}
