//! Watching a trace from outside: what a recorder (the IR's, in `nnsight-remote`) needs to turn
//! a body into data — which body runs, which site values it reads and writes, what it skips or
//! stops, and the inputs its invokes were given.
//!
//! An [`Observer`] is installed for a scope on one thread ([`observe`]); a trace started in that
//! scope keeps it for its whole run. With none installed (every trace but a recording's) the
//! engine pays one thread-local read when a trace starts and one branch per access.

use std::cell::RefCell;
use std::panic::Location;
use std::rc::Rc;

use crate::erased::ErasedValue;
use crate::state::{Key, Kind, TraceState};
use crate::tree::NodeId;

thread_local! {
    /// The observer of the traces started on this thread, if one is installed.
    static OBSERVER: RefCell<Option<Rc<dyn Observer>>> = const { RefCell::new(None) };
}

/// One visit of a site, as an observer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedSite {
    /// The module's path (`transformer.h.1`; empty for the root module).
    pub path: String,
    /// Which side of the call.
    pub kind: ObservedKind,
    /// Which call of the module (0 is the first).
    pub occurrence: u32,
}

/// Which side of a call an observed access touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObservedKind {
    /// The value the call returned.
    Output,
    /// Argument `i` of the call.
    Input(usize),
    /// All the arguments, as a tuple.
    Inputs,
}

/// The input an invoke was given, as a wrapper that batches its own inputs reports it.
#[derive(Debug)]
pub enum ObservedInput<'a> {
    /// A prompt as text.
    Text(&'a str),
    /// A prompt as token ids.
    Tokens(&'a [u32]),
    /// An input of another kind (several prompts in one invoke, the model's own arguments).
    Other(&'a str),
    /// No input: the invoke sees the whole batch.
    None,
}

/// Watches the traces run while it is installed. Every method has an empty default.
pub trait Observer {
    /// An invoke of the next trace was added with `input` (in invoke order).
    fn input(&self, _input: ObservedInput<'_>) {}
    /// A trace starts, with `edits` persistent edits' bodies and then `invokes` invokes' bodies.
    fn trace_started(&self, _edits: usize, _invokes: usize) {}
    /// The trace has finished running (successfully or not).
    fn trace_ended(&self) {}
    /// The forward pass visits `site` (after the bodies' edits), whose value is `value` (for an
    /// input, the call's arguments as a tuple).
    fn fired(&self, _site: &ObservedSite, _value: &dyn ErasedValue) {}
    /// The engine starts polling body `body` (edits first, then invokes; `None`: it stopped).
    fn polling(&self, _body: Option<usize>) {}
    /// The body being polled reads `site`, whose value it sees (its rows) is `value`.
    fn read(&self, _site: &ObservedSite, _value: &mut dyn ErasedValue, _at: &'static Location<'static>) {}
    /// The body being polled replaces `site`'s value by `value`.
    fn wrote(&self, _site: &ObservedSite, _value: &dyn ErasedValue, _at: &'static Location<'static>) {}
    /// The body being polled skips the call `site` names (its input), with `value` as output.
    fn skipped(&self, _site: &ObservedSite, _value: Option<&dyn ErasedValue>) {}
    /// The body being polled stops the forward pass.
    fn stopped(&self) {}
    /// The body being polled used a feature the observer may not be able to follow (standing
    /// edits, caches, gradients), named by `what`.
    fn uses(&self, _what: &'static str) {}
    /// The engine's own work on a served value starts (`true`: narrowing it to the body's rows,
    /// splicing the rows back) or ends; tensor operations meanwhile are not the body's.
    fn engine_work(&self, _busy: bool) {}
}

/// Installs `observer` for the traces started on this thread until the guard is dropped (which
/// restores the observer installed before, if any).
pub fn observe(observer: Rc<dyn Observer>) -> Observing {
    let previous = OBSERVER.with(|o| o.replace(Some(observer)));
    Observing { previous }
}

/// The scope of an [`observe`]: dropping it uninstalls the observer.
#[must_use = "the observer is uninstalled when this guard is dropped"]
pub struct Observing {
    previous: Option<Rc<dyn Observer>>,
}

impl std::fmt::Debug for Observing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observing").finish_non_exhaustive()
    }
}

impl Drop for Observing {
    fn drop(&mut self) {
        let previous = self.previous.take();
        OBSERVER.with(|o| *o.borrow_mut() = previous);
    }
}

/// The observer installed on this thread, if any.
pub(crate) fn current() -> Option<Rc<dyn Observer>> {
    OBSERVER.with(|o| o.borrow().clone())
}

/// Reports an invoke's input to the installed observer (for wrappers that batch their own
/// inputs, like a language model's prompts); nothing when none is installed.
pub fn input(input: ObservedInput<'_>) {
    if let Some(observer) = current() {
        observer.input(input);
    }
}

/// Reports to the installed observer that a feature it may not follow is used (`what` names
/// it, e.g. generation); nothing when none is installed.
pub fn uses(what: &'static str) {
    if let Some(observer) = current() {
        observer.uses(what);
    }
}

impl TraceState {
    /// Runs `work`, the engine's own tensor operations on a served value, telling the observer.
    pub(crate) fn engine_work<T>(&self, work: impl FnOnce() -> T) -> T {
        match &self.observer {
            None => work(),
            Some(observer) => {
                observer.engine_work(true);
                let result = work();
                observer.engine_work(false);
                result
            }
        }
    }

    /// The site `key` (argument `element` for an input), as observers see it.
    pub(crate) fn observed(&self, key: Key, element: Option<usize>) -> ObservedSite {
        let path = if key.node == NodeId::ROOT { String::new() } else { self.path(key.node) };
        let kind = match (key.kind, element) {
            (Kind::Output, _) => ObservedKind::Output,
            (Kind::Input, Some(i)) => ObservedKind::Input(i),
            (Kind::Input, None) => ObservedKind::Inputs,
        };
        ObservedSite { path, kind, occurrence: key.occurrence }
    }
}
