//! The engine: runs the forward pass and the trace bodies in lock-step.
//!
//! While a trace runs, a thread-local points at its engine. Every instrumented call site asks for
//! it: with no trace active that is one load and one branch, and the call runs as written. With a
//! trace, the site finds its node, counts the visit, and — only when a body waits for this very
//! visit — lends the value to the waiting bodies, polling each (in invoke order) with a no-op
//! waker until it waits for a later site or finishes. Bodies are polled with the thread-local
//! cleared, so model code they call by hand is not mistaken for the traced forward pass.

use std::any::{Any, type_name};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::ptr;
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::state::{CACHING, ENDED, HALTED, Key, Kind, SKIPPING, STANDING, STOPPING, Serving, TraceState};
use crate::tree::{NodeId, NodeKind};
use crate::value::SiteValue;

thread_local! {
    /// The engine of the trace running on this thread, or null.
    static ACTIVE: Cell<*const ()> = const { Cell::new(ptr::null()) };
}

/// Which child of the current module a call site calls.
#[derive(Clone, Copy, Debug)]
pub struct Child {
    slot: u32,
    element: Option<Element>,
}

/// The position of an element in a `Vec` of modules, as addresses (resolved only when tracing).
#[derive(Clone, Copy, Debug)]
struct Element {
    base: usize,
    item: usize,
    size: usize,
}

impl Child {
    /// The module field with slot `slot`.
    #[inline(always)]
    pub fn field(slot: u32) -> Child {
        Child { slot, element: None }
    }

    /// The element `item` of the `Vec` field `list`, which has slot `slot`.
    #[inline(always)]
    pub fn element<M>(slot: u32, list: &[M], item: &M) -> Child {
        let element =
            Element { base: list.as_ptr() as usize, item: item as *const M as usize, size: size_of::<M>() };
        Child { slot, element: Some(element) }
    }
}

impl Element {
    fn index(self) -> Option<u32> {
        let offset = self.item.checked_sub(self.base)?;
        let index = offset.checked_div(self.size)?;
        u32::try_from(index).ok()
    }
}

/// Runs `call` on `args` as the call of a child module: the entry point of instrumented code.
#[inline(always)]
pub fn site<A: SiteValue, O: SiteValue>(child: Child, args: A, call: impl FnOnce(A) -> O) -> O {
    let engine = ACTIVE.with(Cell::get);
    if engine.is_null() {
        return call(args);
    }
    // SAFETY: a non-null `ACTIVE` points at the `Engine` of the trace running on this thread; the
    // trace clears it (through `Activation`'s drop) before that engine goes away.
    let engine = unsafe { &*(engine as *const Engine<'_, '_>) };
    engine.site(child, args, call)
}

/// A trace body, type-erased: polled by the engine, its result kept for the trace to collect.
pub trait Body {
    /// Polls the body; `true` once it has finished.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> bool;
    /// Whether the body has finished with an error.
    fn failed(&self) -> bool;
    /// The body's error, if it finished with one (taken: asked once).
    fn take_error(&mut self) -> Option<Error>;
}

/// The future of one body, boxed: bodies of one trace have different types.
pub type BodyFuture<'a, R> = Pin<Box<dyn Future<Output = Result<R>> + 'a>>;

/// One body and, once it finishes, its result (used by generated and glue code, not a public API).
pub struct Task<'a, R> {
    future: BodyFuture<'a, R>,
    result: Option<Result<R>>,
}

impl<'a, R> Task<'a, R> {
    pub(crate) fn new(future: BodyFuture<'a, R>) -> Self {
        Task { future, result: None }
    }

    /// The body's result; an unfinished body yields the error that explains why.
    pub(crate) fn into_result(self, state: &TraceState, body: usize) -> Result<R> {
        match self.result {
            Some(result) => result,
            None => Err(match state.pending[body].get() {
                Some(key) => Error::NotReached { site: state.describe(key) },
                None => Error::Unsupported { what: "awaited a future that is not an envoy access".into() },
            }),
        }
    }
}

impl<R> Body for Task<'_, R> {
    fn poll_body(&mut self, cx: &mut Context<'_>) -> bool {
        if self.result.is_none()
            && let Poll::Ready(result) = self.future.as_mut().poll(cx)
        {
            self.result = Some(result);
        }
        self.result.is_some()
    }

    fn failed(&self) -> bool {
        matches!(self.result, Some(Err(_)))
    }

    fn take_error(&mut self) -> Option<Error> {
        match self.result.take() {
            Some(Err(error)) => Some(error),
            other => {
                self.result = other;
                None
            }
        }
    }
}

/// The unwinding payload that ends a forward pass stopped by a body (`stop`).
struct Stopped;

/// The driver of one trace.
pub(crate) struct Engine<'s, 'b> {
    state: &'s TraceState,
    bodies: Vec<RefCell<&'b mut (dyn Body + 'b)>>,
    /// The module whose forward is running.
    cursor: Cell<NodeId>,
    /// Bodies still running; when none is left (or one failed) the rest of the pass runs bare.
    live: Cell<usize>,
    /// The first body that failed.
    failed: Cell<Option<usize>>,
}

impl<'s, 'b> Engine<'s, 'b> {
    pub(crate) fn new(state: &'s TraceState, bodies: Vec<&'b mut (dyn Body + 'b)>) -> Self {
        let live = bodies.len();
        Engine {
            state,
            bodies: bodies.into_iter().map(RefCell::new).collect(),
            cursor: Cell::new(NodeId::ROOT),
            live: Cell::new(live),
            failed: Cell::new(None),
        }
    }

    /// The first body that failed, if one did.
    pub(crate) fn failed(&self) -> Option<usize> {
        self.failed.get()
    }

    /// Whether the trace has failed (a body's error, or the engine's own).
    #[inline]
    pub(crate) fn halted(&self) -> bool {
        self.state.has(HALTED)
    }

    /// Whether anything is left for the forward pass to serve (a body, a cache, a standing edit).
    fn attended(&self) -> bool {
        (self.live.get() > 0 || self.state.has(CACHING | STANDING)) && !self.halted()
    }

    /// Polls every body up to its first access; `false` when none is left waiting.
    pub(crate) fn start(&self) -> bool {
        for invoke in 0..self.bodies.len() {
            self.poll(invoke);
        }
        self.attended() && !self.state.has(STOPPING | HALTED)
    }

    /// Runs the root module's call (`call`) as the root site, with this engine active; a body
    /// that stops the pass ends it here.
    pub(crate) fn run_root<A: SiteValue, O: SiteValue>(&self, args: A, call: impl FnOnce(A) -> O) {
        self.run_loop(|root| {
            root.call(args, call);
        });
    }

    /// Runs `run`, which calls the root module through [`Root::call`] as often as it needs (a
    /// generation loop: once per step), with this engine active when something attends to the
    /// pass. Returns `run`'s result, or `None` when a body stopped the pass.
    pub(crate) fn run_loop<T>(&self, run: impl FnOnce(&Root<'_, 's, 'b>) -> T) -> Option<T> {
        let _active = self.attended().then(|| Activation::new(self));
        let root = Root { engine: self };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&root))) {
            Ok(result) => Some(result),
            Err(payload) if payload.is::<Stopped>() => None,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }

    /// Ends the trace: bodies still waiting get their answer (the site was not reached), so the
    /// error surfaces at the line that waits and a body can react to it (e.g. end a loop over
    /// generation steps that stopped early).
    pub(crate) fn finish(&self) {
        self.state.raise(ENDED);
        if self.halted() {
            return;
        }
        for invoke in 0..self.bodies.len() {
            if self.state.pending[invoke].get().is_some() {
                self.poll(invoke);
            }
        }
    }

    #[inline]
    fn site<A: SiteValue, O: SiteValue>(&self, child: Child, args: A, call: impl FnOnce(A) -> O) -> O {
        let parent = self.cursor.get();
        let Some(node) = self.resolve(parent, child) else {
            return call(args);
        };
        self.cursor.set(node);
        let output = self.call(node, args, call);
        self.cursor.set(parent);
        output
    }

    /// The call of `node`: its input site, the call itself (unless a body skips it), its output
    /// site.
    #[inline]
    fn call<A: SiteValue, O: SiteValue>(&self, node: NodeId, args: A, call: impl FnOnce(A) -> O) -> O {
        let args = self.fire(node, Kind::Input, args);
        let output = match self.skipped::<O>(node) {
            Ok(Some(output)) => output,
            Ok(None) => call(args),
            // The trace has failed: the rest of the pass runs bare.
            Err(()) => return call(args),
        };
        self.fire(node, Kind::Output, output)
    }

    /// The value a body gave to replace `node`'s call, if it skips it.
    #[inline]
    fn skipped<O: SiteValue>(&self, node: NodeId) -> Result<Option<O>, ()> {
        if !self.state.has(SKIPPING) {
            return Ok(None);
        }
        let mut slot = self.state.skip.borrow_mut();
        if slot.as_ref().is_none_or(|s| s.key.node != node) {
            return Ok(None);
        }
        let Some(skipped) = slot.take() else { return Ok(None) };
        drop(slot);
        self.state.lower(SKIPPING);
        match skipped.value.downcast::<O>() {
            Ok(value) => Ok(Some(*value)),
            Err(_) => {
                self.state.fail(Error::TypeMismatch {
                    site: format!("{} (skip)", self.state.describe(skipped.key)),
                    expected: type_name::<O>(),
                    found: skipped.type_name,
                });
                self.live.set(0);
                ACTIVE.with(|a| a.set(ptr::null()));
                Err(())
            }
        }
    }

    /// The node a call site calls, if the tree has it.
    fn resolve(&self, parent: NodeId, child: Child) -> Option<NodeId> {
        let tree = &self.state.tree;
        let node = tree.node(parent);
        if child.slot >= node.children {
            return None;
        }
        let field = NodeId(node.first_child + child.slot);
        let Some(element) = child.element else {
            return Some(field);
        };
        let list = tree.node(field);
        let index = element.index()?;
        (list.kind == NodeKind::List && index < list.children).then(|| NodeId(list.first_child + index))
    }

    /// Counts a visit of a site and serves its value to the bodies that wait for it.
    #[inline]
    fn fire<T: SiteValue>(&self, node: NodeId, kind: Kind, mut value: T) -> T {
        // After a failure, the calls still on the stack finish bare.
        if self.halted() {
            return value;
        }
        let entry = self.state.tree.node(node);
        let counter = match kind {
            Kind::Input => &entry.inputs_seen,
            Kind::Output => &entry.outputs_seen,
        };
        let occurrence = counter.get();
        counter.set(occurrence + 1);
        let key = Key { node, kind, occurrence };
        self.state.last.set(Some(key));
        if self.state.has(STANDING) {
            crate::standing::apply(self.state, key, &mut value);
        }
        if self.state.awaited(key) {
            self.serve(key, &mut value, type_name::<T>());
        }
        if self.state.has(CACHING | STOPPING) {
            self.record(key, &value);
            if self.state.has(STOPPING) {
                std::panic::resume_unwind(Box::new(Stopped));
            }
        }
        value
    }

    /// Hands the (post-intervention) value of `key` to the caches that record it.
    #[inline]
    fn record<T: SiteValue>(&self, key: Key, value: &T) {
        let caches = self.state.caches.borrow();
        for cache in caches.iter() {
            cache.record(&self.state.tree, key, value);
        }
    }

    /// Lends `value` to each body waiting for `key`, in invoke order.
    fn serve(&self, key: Key, value: &mut dyn Any, type_name: &'static str) {
        let value: *mut dyn Any = value;
        for invoke in 0..self.bodies.len() {
            if self.state.pending[invoke].get() != Some(key) {
                continue;
            }
            self.state.pending[invoke].set(None);
            self.state.serving.set(Some(Serving { key, value, type_name }));
            self.poll(invoke);
            self.state.serving.set(None);
        }
    }

    /// Polls one body, outside the trace (model code it calls is not part of the pass).
    fn poll(&self, invoke: usize) {
        let Ok(mut body) = self.bodies[invoke].try_borrow_mut() else {
            return;
        };
        self.state.invoke.set(invoke);
        let previous = ACTIVE.with(|a| a.replace(ptr::null()));
        let finished = body.poll_body(&mut Context::from_waker(Waker::noop()));
        if finished {
            self.live.set(self.live.get().saturating_sub(1));
        }
        if body.failed() {
            self.live.set(0);
            self.state.raise(HALTED);
            if self.failed.get().is_none() {
                self.failed.set(Some(invoke));
            }
        }
        let bare = !self.attended() || self.failed.get().is_some();
        ACTIVE.with(|a| a.set(if bare { ptr::null() } else { previous }));
    }
}

/// The root module's calls in a loop driven by the caller (see `Invokes::run_loop`): each call is
/// one visit of the root's input and output sites, and of every site inside.
pub struct Root<'e, 's, 'b> {
    engine: &'e Engine<'s, 'b>,
}

impl std::fmt::Debug for Root<'_, '_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Root").finish_non_exhaustive()
    }
}

impl Root<'_, '_, '_> {
    /// Calls the root module: `call(args)`, with `args` the root's input site and the result its
    /// output site (a body can read or replace both, and skip the call).
    pub fn call<A: SiteValue, O: SiteValue>(&self, args: A, call: impl FnOnce(A) -> O) -> O {
        self.engine.call(NodeId::ROOT, args, call)
    }
}

/// Makes an engine the active one on this thread; restores the previous one when dropped.
struct Activation {
    previous: *const (),
}

impl Activation {
    fn new(engine: &Engine<'_, '_>) -> Activation {
        let this = engine as *const Engine<'_, '_> as *const ();
        Activation { previous: ACTIVE.with(|a| a.replace(this)) }
    }
}

impl Drop for Activation {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(self.previous));
    }
}
