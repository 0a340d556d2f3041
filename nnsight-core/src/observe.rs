//! Watching a trace from outside: what a recorder (the IR's, in `nnsight-remote`) needs to turn
//! a body into data — which body runs, which site values it reads and writes, what it skips or
//! stops, and the inputs its invokes were given.
//!
//! An [`Observer`] is installed for a scope on one thread ([`observe`]); a trace started in that
//! scope keeps it for its whole run. With none installed (every trace but a recording's) the
//! engine pays one thread-local read when a trace starts and one branch per access.

use std::cell::{Cell, RefCell};
use std::panic::Location;
use std::rc::Rc;

use crate::erased::ErasedValue;
use crate::state::{Key, Kind, TraceState};
use crate::tree::NodeId;
use crate::value::SiteValue;

thread_local! {
    /// The observer of the traces started on this thread, if one is installed.
    static OBSERVER: RefCell<Option<Rc<dyn Observer>>> = const { RefCell::new(None) };
    /// Whether an observed body is being polled: its calls of instrumented modules are reported.
    static WATCHED: Cell<bool> = const { Cell::new(false) };
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
    /// Whether it wants every site visit ([`fired`](Self::fired)): the engine then serves every
    /// site, bodies or not (a scan); asked once per trace.
    fn wants_visits(&self) -> bool {
        false
    }
    /// The forward pass visits `site` (after the bodies' edits), whose value is `value` (for an
    /// input, the call's arguments as a tuple). Only for an observer that
    /// [wants visits](Self::wants_visits).
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
    /// The body being polled makes standing edit number `index` of the trace: `site`'s value is
    /// edited at its visits `visits` (made at `at`).
    fn standing(
        &self,
        _index: usize,
        _site: &ObservedSite,
        _visits: std::ops::Range<u32>,
        _at: &'static Location<'static>,
    ) {
    }
    /// Standing edit `index` is applied to `value` (the body's rows of the visit's value); its
    /// operations until [`standing_applied`](Self::standing_applied) are the edit's.
    fn standing_applying(&self, _index: usize, _value: &mut dyn ErasedValue) {}
    /// Standing edit `index` gave `edited`.
    fn standing_applied(&self, _index: usize, _edited: &dyn ErasedValue) {}
    /// The next trace generates, with `options` (a language model's generation options).
    fn generation(&self, _options: &dyn std::any::Any) {}
    /// The body being polled used a feature the observer may not be able to follow (standing
    /// edits, caches, gradients), named by `what`.
    fn uses(&self, _what: &'static str) {}
    /// The body being polled calls the instrumented module at address `module`, of type
    /// `type_name` (see [`Tree::modules`](crate::inspect::Tree::modules)), on `args` (a tuple); its own work until
    /// [`call_ended`](Self::call_ended) is the module's, not the body's. Calls nest.
    fn call_started(&self, _module: usize, _type_name: &'static str, _args: &mut dyn ErasedValue) {}
    /// The call reported last by [`call_started`](Self::call_started) returned `output`.
    fn call_ended(&self, _output: &mut dyn ErasedValue) {}
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

/// Runs `call(args)`, the `forward` of `module` (an `#[inspect]` impl wraps its `forward` in
/// it): when an observed body is being polled, the call is reported to the observer (a recorder
/// keeps it as one call of a hosted module); otherwise one thread-local load and a branch.
#[inline(always)]
pub fn module_call<M: ?Sized, A: SiteValue, O: SiteValue>(
    module: &M,
    mut args: A,
    call: impl FnOnce(A) -> O,
) -> O {
    if !WATCHED.with(Cell::get) {
        return call(args);
    }
    let Some(observer) = current() else { return call(args) };
    observer.call_started(crate::tree::address_of(module), std::any::type_name::<M>(), &mut args);
    let mut output = call(args);
    observer.call_ended(&mut output);
    output
}

/// Marks the thread as polling an observed body for as long as it lives (restores what it found).
pub(crate) struct Watching {
    previous: bool,
}

impl Watching {
    pub(crate) fn new() -> Self {
        Watching { previous: WATCHED.with(|w| w.replace(true)) }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        WATCHED.with(|w| w.set(self.previous));
    }
}

/// Reports the options of the generation about to run (the next trace) to the installed
/// observer; nothing when none is installed.
pub fn generation(options: &dyn std::any::Any) {
    if let Some(observer) = current() {
        observer.generation(options);
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
