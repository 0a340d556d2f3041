//! The engine: runs the forward pass and the trace bodies in lock-step.
//!
//! While a trace runs, a thread-local points at its engine. Every instrumented call site asks for
//! it: with no trace active that is one load and one branch, and the call runs as written. With a
//! trace, the site finds its node, counts the visit, and — only when a body waits for this very
//! visit — lends the value to the waiting bodies, polling each (in invoke order) with a no-op
//! waker until it waits for a later site or finishes. Bodies are polled with the thread-local
//! cleared, so model code they call by hand is not mistaken for the traced forward pass; a call
//! site of a module that is not the one the trace's tree registered (another instance of the same
//! type, called by hand inside the forward) runs untraced too. Two guards, [`Activation`] and
//! [`Suspension`], are the only writers of the thread-local, and each restores what it found.

use std::any::type_name;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr;
use std::task::{Context, Poll, Waker};

use crate::erased::ErasedValue;
use crate::error::{Error, Result};
use crate::inspectable::Inspectable;
use crate::state::{
    CACHING, ENDED, HALTED, Key, Kind, OBSERVING, SKIPPING, STANDING, STOPPING, Serving, TraceState, WRITTEN,
};
use crate::tree::{NodeId, NodeKind, address_of};
use crate::value::{Batching, SiteValue};

thread_local! {
    /// The engine of the trace running on this thread, or null.
    static ACTIVE: Cell<*const ()> = const { Cell::new(ptr::null()) };
}

/// Which child of the current module a call site calls.
#[derive(Clone, Copy, Debug)]
pub struct Child {
    slot: u32,
    element: Option<Element>,
    /// How the call's values carry the batch, as the calling `impl` block declares.
    batching: Batching,
}

/// An element of a `Vec` of modules, as addresses (resolved only when tracing).
#[derive(Clone, Copy, Debug)]
struct Element {
    /// The `Vec` itself.
    list: usize,
    /// Its first element.
    base: usize,
    /// The size of an element (0 for zero-sized modules, which share one address).
    size: usize,
    /// The index, when the call site names it (`self.list[i]`).
    index: Option<usize>,
}

impl Child {
    /// The module field with slot `slot`.
    #[inline(always)]
    pub fn field(slot: u32) -> Child {
        Child { slot, element: None, batching: Batching::Inherited }
    }

    /// The same call, in an `impl` block that declares how its calls carry the batch.
    #[inline(always)]
    pub fn batched(self, batching: Batching) -> Child {
        Child { batching, ..self }
    }

    /// An element of the `Vec` field `list`, which has slot `slot`: the element `index` when the
    /// call site names it (`self.list[i]`), else the one the call's receiver points at (a loop
    /// variable).
    #[inline(always)]
    #[allow(clippy::ptr_arg)] // the `Vec`'s own address identifies the list
    pub fn element<M>(slot: u32, list: &Vec<M>, index: Option<usize>) -> Child {
        let element =
            Element { list: address_of(list), base: list.as_ptr() as usize, size: size_of::<M>(), index };
        Child { slot, element: Some(element), batching: Batching::Inherited }
    }
}

impl Element {
    /// The index of the element at `item`; `Err` for a zero-sized element whose index the call
    /// site does not name (all elements share one address).
    fn index(self, item: usize) -> Result<Option<u32>, ()> {
        if let Some(index) = self.index {
            return Ok(u32::try_from(index).ok());
        }
        if self.size == 0 {
            return Err(());
        }
        let offset = item.checked_sub(self.base);
        Ok(offset.and_then(|o| u32::try_from(o / self.size).ok()))
    }
}

/// Runs `call` on `args` as the call of `module`, a child of the current module: the entry point
/// of instrumented code.
#[inline(always)]
pub fn site<M: Inspectable + ?Sized, A: SiteValue, O: SiteValue>(
    child: Child,
    module: &M,
    args: A,
    call: impl FnOnce(A) -> O,
) -> O {
    let engine = ACTIVE.with(Cell::get);
    if engine.is_null() {
        return call(args);
    }
    // SAFETY: a non-null `ACTIVE` points at the `Engine` of the trace running on this thread; it
    // is set only by an `Activation`, which borrows that engine and restores the previous value
    // when dropped, so the engine outlives every call that sees it.
    let engine = unsafe { &*(engine as *const Engine<'_, '_>) };
    engine.site(child, module, args, call)
}

/// Whether nothing in the trace running on this thread can touch the next call of `module`, a
/// child of the current module, so that the caller may compute past it without making its value
/// (a fused kernel instead of the explicit steps whose result the module would see): no body
/// waits for one of its sites, no cache records it, no standing edit or skip applies to it, and
/// no observer scans every site. Then the call is counted as made (later calls keep their
/// occurrence numbers) and `true` is returned; with no trace active, `true`. Only for modules
/// without submodules (a [`HookPoint`](crate::HookPoint), a dropout): the calls inside a
/// module are not counted. The entry point of `nnsight::unwatched!`.
#[inline(always)]
pub fn unwatched<M: Inspectable + ?Sized>(child: Child, module: &M) -> bool {
    let engine = ACTIVE.with(Cell::get);
    if engine.is_null() {
        return true;
    }
    // SAFETY: as in `site`: a non-null `ACTIVE` points at the running trace's engine, which
    // outlives every call that sees it.
    let engine = unsafe { &*(engine as *const Engine<'_, '_>) };
    engine.unwatched(child, module)
}

/// A trace body, type-erased: polled by the engine, its result kept for the trace to collect.
pub trait Body {
    /// Polls the body: where it stands now.
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Step;
    /// The body's error, if it finished with one (taken: asked once).
    fn take_error(&mut self) -> Option<Error>;
}

/// Where a body stands after the engine polled it: the hand-off between a body and the engine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Step {
    /// It waits for a site (the one in its pending slot) or for a value another invoke shares.
    Waiting,
    /// It has returned its value.
    Finished,
    /// It has returned an error: the trace fails, and the rest of the pass runs bare.
    Failed,
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
    fn poll_body(&mut self, cx: &mut Context<'_>) -> Step {
        if self.result.is_none()
            && let Poll::Ready(result) = self.future.as_mut().poll(cx)
        {
            self.result = Some(result);
        }
        match self.result {
            None => Step::Waiting,
            Some(Ok(_)) => Step::Finished,
            Some(Err(_)) => Step::Failed,
        }
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
        (self.live.get() > 0 || self.state.has(CACHING | STANDING | OBSERVING)) && !self.halted()
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
    fn site<M: Inspectable + ?Sized, A: SiteValue, O: SiteValue>(
        &self,
        child: Child,
        module: &M,
        args: A,
        call: impl FnOnce(A) -> O,
    ) -> O {
        // Nothing left to serve (every body done, or the trace failed): the rest runs bare.
        if !self.attended() {
            return call(args);
        }
        let parent = self.cursor.get();
        let Some(node) = self.resolve(parent, child, address_of(module)) else {
            return call(args);
        };
        let batching = match child.batching {
            Batching::Inherited => self.state.tree.node(parent).batching.get(),
            declared => declared,
        };
        self.state.tree.node(node).batching.set(batching);
        self.cursor.set(node);
        let output = self.call(node, args, |args| module.check_inputs(args), call);
        self.cursor.set(parent);
        output
    }

    /// See [`unwatched`]: whether nothing can touch `module`'s next call; if so, it is counted.
    fn unwatched<M: Inspectable + ?Sized>(&self, child: Child, module: &M) -> bool {
        if !self.attended() {
            return true;
        }
        let Some(node) = self.resolve(self.cursor.get(), child, address_of(module)) else {
            return true;
        };
        let state = self.state;
        let entry = state.tree.node(node);
        let input = Key { node, kind: Kind::Input, occurrence: entry.inputs_seen.get() };
        let output = Key { node, kind: Kind::Output, occurrence: entry.outputs_seen.get() };
        if state.has(SKIPPING | OBSERVING)
            || state.awaited(input)
            || state.awaited(output)
            || (state.has(CACHING) && state.caches.borrow().iter().any(|cache| cache.records(node)))
            || (state.has(STANDING)
                && (crate::standing::edits(state, input) || crate::standing::edits(state, output)))
        {
            return false;
        }
        entry.inputs_seen.set(input.occurrence + 1);
        entry.outputs_seen.set(output.occurrence + 1);
        state.last.set(Some(output));
        true
    }

    /// The call of `node`: its input site, the check of its arguments after a body wrote to the
    /// trace (`check`: token ids in the vocabulary), the call itself (unless a body skips it), its
    /// output site.
    #[inline]
    fn call<A: SiteValue, O: SiteValue>(
        &self,
        node: NodeId,
        args: A,
        check: impl FnOnce(&A) -> Result<(), String>,
        call: impl FnOnce(A) -> O,
    ) -> O {
        let args = self.fire(node, Kind::Input, args);
        if self.state.has(WRITTEN)
            && !self.halted()
            && let Err(problem) = check(&args)
        {
            let site =
                self.state.describe(Key { node, kind: Kind::Input, occurrence: self.occurrence(node) });
            self.state.fail(Error::Input { problem: format!("`{site}`: {problem}") });
            // The module must not run on the bad value; the trace has failed, so nothing after
            // this site runs (the model is left as it was).
            if cfg!(panic = "unwind") {
                std::panic::resume_unwind(Box::new(Stopped));
            }
        }
        let output = match self.skipped::<O>(node) {
            Some(value) => self.checked_skip(node, value, args, call),
            None => call(args),
        };
        self.fire(node, Kind::Output, output)
    }

    /// The visit of `node`'s input being served (its last one).
    fn occurrence(&self, node: NodeId) -> u32 {
        self.state.tree.node(node).inputs_seen.get().saturating_sub(1)
    }

    /// The value a body gave to replace `node`'s call, if it skips it; a value of another type
    /// fails the trace (and the call runs).
    #[inline]
    fn skipped<O: SiteValue>(&self, node: NodeId) -> Option<O> {
        if !self.state.has(SKIPPING) {
            return None;
        }
        let mut slot = self.state.skip.borrow_mut();
        if slot.as_ref().is_none_or(|s| s.key.node != node) {
            return None;
        }
        let skipped = slot.take()?;
        drop(slot);
        self.state.lower(SKIPPING);
        match skipped.value.downcast::<O>() {
            Ok(value) => Some(*value),
            Err(_) => {
                self.state.fail(Error::TypeMismatch {
                    site: format!("{} (skip)", self.state.describe(skipped.key)),
                    expected: type_name::<O>(),
                    found: skipped.type_name,
                });
                None
            }
        }
    }

    /// A skip value of the right type, checked against what the module would have returned: the
    /// module runs once untraced (its submodules' sites do not fire), so that a value of another
    /// shape or element type is an error naming the module, never a panic further down.
    fn checked_skip<A: SiteValue, O: SiteValue>(
        &self,
        node: NodeId,
        value: O,
        args: A,
        call: impl FnOnce(A) -> O,
    ) -> O {
        let real = {
            let _untraced = Suspension::new();
            call(args)
        };
        match real.check_replacement(&value) {
            Ok(()) => value,
            Err(mismatch) => {
                let key = Key { node, kind: Kind::Input, occurrence: self.occurrence(node) };
                self.state.fail(mismatch.into_error(format!("{} (skip)", self.state.describe(key)), |e| e));
                real
            }
        }
    }

    /// The node a call site calls, if the tree has it: the child `child` of `parent`, when the
    /// called module (at `address`) is the one the tree registered — a model called by hand
    /// inside the traced forward has modules of the same types at other addresses.
    fn resolve(&self, parent: NodeId, child: Child, address: usize) -> Option<NodeId> {
        let tree = &self.state.tree;
        let node = tree.node(parent);
        if child.slot >= node.children {
            return None;
        }
        let field = NodeId(node.first_child + child.slot);
        let Some(element) = child.element else {
            return (tree.node(field).address == address).then_some(field);
        };
        let list = tree.node(field);
        if list.kind != NodeKind::List || list.address != element.list {
            return None;
        }
        let index = match element.index(address) {
            Ok(index) => index?,
            Err(()) => {
                self.state.fail(Error::Unsupported {
                    what: format!(
                        "called an element of `{}`, a list of zero-sized modules, through a loop \
                         variable: its elements share one address, so the element cannot be told; \
                         index the list (`self.{}[i].forward(..)`) in the model's forward",
                        tree.path(field),
                        tree.path(field).rsplit('.').next().unwrap_or_default(),
                    ),
                });
                return None;
            }
        };
        let element = NodeId(list.first_child + index);
        (index < list.children && tree.node(element).address == address).then_some(element)
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
        if self.state.has(CACHING | STOPPING | OBSERVING) {
            if let Some(observer) = self.state.observer.as_ref().filter(|_| self.state.has(OBSERVING)) {
                observer.fired(&self.state.observed(key, None), &value);
            }
            if self.state.has(CACHING | STOPPING) {
                self.record(key, &value);
            }
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
    fn serve(&self, key: Key, value: &mut dyn ErasedValue, type_name: &'static str) {
        let value: *mut dyn ErasedValue = value;
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
        let step = {
            let _outside = Suspension::new();
            match &self.state.observer {
                None => body.poll_body(&mut Context::from_waker(Waker::noop())),
                Some(observer) => {
                    observer.polling(Some(invoke));
                    let _watching = crate::observe::Watching::new();
                    let step = body.poll_body(&mut Context::from_waker(Waker::noop()));
                    observer.polling(None);
                    step
                }
            }
        };
        match step {
            Step::Waiting => {}
            Step::Finished => self.live.set(self.live.get().saturating_sub(1)),
            Step::Failed => {
                self.live.set(0);
                self.state.raise(HALTED);
                if self.failed.get().is_none() {
                    self.failed.set(Some(invoke));
                }
            }
        }
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
        self.engine.call(NodeId::ROOT, args, |_| Ok(()), call)
    }

    /// Whether the trace has failed (a body returned an error, or the engine refused a value):
    /// its result is that error whatever the loop computes next, so a loop driven by the caller
    /// (a generation) should end instead of running its remaining calls untraced.
    pub fn failed(&self) -> bool {
        self.engine.halted()
    }
}

/// Makes an engine the active one on this thread for as long as it lives; restores the previous
/// one (another trace's, when a model's forward runs a trace of its own) when dropped. With
/// [`Suspension`], the only writer of the thread-local.
struct Activation<'e, 's, 'b> {
    previous: *const (),
    _engine: PhantomData<&'e Engine<'s, 'b>>,
}

impl<'e, 's, 'b> Activation<'e, 's, 'b> {
    fn new(engine: &'e Engine<'s, 'b>) -> Self {
        let this = engine as *const Engine<'_, '_> as *const ();
        Activation { previous: ACTIVE.with(|a| a.replace(this)), _engine: PhantomData }
    }
}

impl Drop for Activation<'_, '_, '_> {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(self.previous));
    }
}

/// No trace is active on this thread for as long as it lives (a body being polled, a module run
/// untraced); restores what was active when dropped.
struct Suspension {
    previous: *const (),
}

impl Suspension {
    fn new() -> Self {
        Suspension { previous: ACTIVE.with(|a| a.replace(ptr::null())) }
    }
}

impl Drop for Suspension {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(self.previous));
    }
}
