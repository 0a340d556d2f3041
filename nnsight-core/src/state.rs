//! The state a trace shares between its envoys (the body's side) and its engine (the model's side).
//!
//! Everything here is thread-confined (`Cell`/`RefCell`): a trace lives on one thread, and two
//! traces on two threads share nothing but the model, which they only read.

use crate::erased::ErasedValue;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use crate::cache::CacheStore;
use crate::error::Error;
use crate::ghost::Ghost;
use crate::skipped::Skipped;
use crate::tree::{NodeId, NodeKind, Tree};
use crate::value::{Batching, Rows};
pub(crate) use crate::visit::{Key, Kind};

/// The value of the site being served right now, lent to the bodies waiting for it.
#[derive(Clone, Copy)]
pub(crate) struct Serving {
    pub(crate) key: Key,
    pub(crate) value: *mut dyn ErasedValue,
    pub(crate) type_name: &'static str,
}

/// The trace has failed: the calls still on the stack finish bare.
pub(crate) const HALTED: u8 = 1;
/// A cache records sites.
pub(crate) const CACHING: u8 = 2;
/// A skip value waits for its module's call.
pub(crate) const SKIPPING: u8 = 4;
/// A body asked to stop the forward pass after the current site.
pub(crate) const STOPPING: u8 = 8;

/// Standing edits apply at every visit of their sites.
pub(crate) const STANDING: u8 = 16;
/// The forward pass is over: accesses still waiting will never be served.
pub(crate) const ENDED: u8 = 32;
/// A body has written a site in this trace: values that only the model made so far (token ids)
/// may now come from a body, and the checks of module inputs run.
pub(crate) const WRITTEN: u8 = 64;
/// An observer wants every site visit reported (a scan).
pub(crate) const OBSERVING: u8 = 128;

/// What an access finds when its future is polled.
pub(crate) enum Access {
    /// The site is being served: here is its value.
    Serve(*mut dyn ErasedValue, &'static str),
    /// The site has not fired yet; the request is registered.
    Wait,
    /// The access can never succeed.
    Fail(Error),
}

/// How a body sees a site's value.
pub(crate) enum View {
    /// All of it (the body sees the whole batch).
    Whole,
    /// Its rows of it.
    Rows(Rows),
    /// All of it, read-only: the value has no batch dimension, or belongs to another part of the
    /// input, and the body sees some rows only; why it cannot be written.
    Shared(Refusal),
}

/// Why a body sees a value whole and cannot write it ([`View::Shared`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Refusal {
    /// The value has no batch dimension (`#[inspect(unbatched)]`).
    Unbatched,
    /// The module is not of the body's part of the input.
    OtherPart,
}

/// The text of the refusal to write a value without batch dimension.
const SHARED_WRITE: &str = "its value has no batch dimension (the calling impl block is \
    `#[inspect(unbatched)]`), so a write from one invoke would change every invoke's value";

/// The per-trace state: the module tree with its visit counters, the requests of the bodies, and
/// the value being served.
pub struct TraceState {
    pub(crate) tree: Tree,
    pub(crate) serving: Cell<Option<Serving>>,
    /// The invoke whose body is being polled.
    pub(crate) invoke: Cell<usize>,
    /// The site each invoke's body waits for.
    pub(crate) pending: Box<[Cell<Option<Key>>]>,
    /// The last site the forward pass went through.
    pub(crate) last: Cell<Option<Key>>,
    pub(crate) ghosts: RefCell<Vec<Ghost>>,
    /// The rows each body sees, when the batch is split between invokes.
    pub(crate) rows: Box<[Option<Rows>]>,
    /// How many of the bodies are persistent edits (they come first); the rest are invokes.
    pub(crate) edits: usize,
    /// What the engine must watch for at every site: [`HALTED`], [`CACHING`], [`SKIPPING`],
    /// [`STOPPING`] (one load on the hot path instead of several).
    pub(crate) flags: Cell<u8>,
    /// A module output replacement waiting for the module's call.
    pub(crate) skip: RefCell<Option<Skipped>>,
    /// An error found by the engine itself (e.g. a skip value of the wrong type).
    pub(crate) failure: RefCell<Option<Error>>,
    /// The caches recording this trace's sites.
    pub(crate) caches: RefCell<Vec<Rc<CacheStore>>>,
    /// Edits applied at every visit of a site (or a range of visits).
    pub(crate) standing: RefCell<Vec<crate::standing::Standing>>,
    /// The observer installed when the trace started (a recorder), if any.
    pub(crate) observer: Option<Rc<dyn crate::observe::Observer>>,
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceState").field("nodes", &self.tree.len()).finish_non_exhaustive()
    }
}

impl TraceState {
    /// Raises [`OBSERVING`] when an observer wants every site visit.
    fn observed_flag(self) -> Self {
        if self.observer.as_ref().is_some_and(|o| o.wants_visits()) {
            self.raise(OBSERVING);
        }
        self
    }

    /// The state of a trace whose bodies see `rows` (one entry per body, edits first).
    pub(crate) fn new(tree: Tree, rows: Vec<Option<Rows>>, edits: usize) -> TraceState {
        TraceState {
            tree,
            serving: Cell::new(None),
            invoke: Cell::new(0),
            pending: rows.iter().map(|_| Cell::new(None)).collect(),
            last: Cell::new(None),
            ghosts: RefCell::new(Vec::new()),
            rows: rows.into_boxed_slice(),
            edits,
            flags: Cell::new(0),
            skip: RefCell::new(None),
            failure: RefCell::new(None),
            caches: RefCell::new(Vec::new()),
            standing: RefCell::new(Vec::new()),
            observer: crate::observe::current(),
        }
        .observed_flag()
    }

    /// The rows the body being polled sees (`None`: the whole batch).
    pub(crate) fn current_rows(&self) -> Option<Rows> {
        self.rows[self.invoke.get()]
    }

    /// How a body that sees `rows` (`None`: the whole batch) sees the value of `node`.
    pub(crate) fn view(&self, rows: Option<Rows>, node: NodeId) -> View {
        let Some(rows) = rows else { return View::Whole };
        let entry = self.tree.node(node);
        if entry.part != Some(rows.part) {
            return View::Shared(Refusal::OtherPart);
        }
        match entry.batching.get() {
            Batching::Dim(dim) => View::Rows(rows.along(dim)),
            Batching::Unbatched => View::Shared(Refusal::Unbatched),
            // Resolved when the call is made; a node never called has no value to see.
            Batching::Inherited => View::Rows(rows),
        }
    }

    /// The error of a body (`body`) that writes `key`'s value, which it sees whole for `refusal`.
    pub(crate) fn refuse_write(&self, key: Key, body: String, refusal: Refusal) -> Error {
        match refusal {
            Refusal::Unbatched => self.not_batched(key, body, SHARED_WRITE.to_owned()),
            Refusal::OtherPart => Error::OtherPart { site: self.describe(key), invoke: body },
        }
    }

    /// Whether a body that sees `rows` owns the whole of `node`'s values: it is the only invoke
    /// of its part, and `node` belongs to that part (so it may skip the module).
    pub(crate) fn owns_whole(&self, rows: Rows, node: NodeId) -> bool {
        rows.len == rows.total && self.tree.node(node).part == Some(rows.part)
    }

    /// The error of a body (`body`, as [`current_body`](Self::current_body) names it) that cannot
    /// see only its rows of `key`'s value.
    pub(crate) fn not_batched(&self, key: Key, body: String, problem: String) -> Error {
        Error::NotBatched { site: self.describe(key), invoke: body, problem }
    }

    /// How the body being polled is named in errors (`invoke 1`, `edit 0`).
    pub(crate) fn current_body(&self) -> String {
        let body = self.invoke.get();
        match body.checked_sub(self.edits) {
            Some(invoke) => format!("invoke {invoke}"),
            None => format!("edit {body}"),
        }
    }

    /// Raises `flag` (one of [`HALTED`], [`CACHING`], [`SKIPPING`], [`STOPPING`]).
    pub(crate) fn raise(&self, flag: u8) {
        self.flags.set(self.flags.get() | flag);
    }

    /// Lowers `flag`.
    pub(crate) fn lower(&self, flag: u8) {
        self.flags.set(self.flags.get() & !flag);
    }

    /// Whether `flag` is raised.
    #[inline]
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags.get() & flag != 0
    }

    /// Records an error of the engine's own; the first one wins.
    pub(crate) fn fail(&self, error: Error) {
        self.raise(HALTED);
        let mut failure = self.failure.borrow_mut();
        if failure.is_none() {
            *failure = Some(error);
        }
    }

    /// The child `slot` of `node`, for building envoys (a ghost or absent node is its own child).
    pub fn child(&self, node: NodeId, slot: u32) -> NodeId {
        self.tree.child(node, slot)
    }

    /// The number of children of a list node (0 for a ghost or absent node).
    pub(crate) fn children(&self, node: NodeId) -> u32 {
        match node.ghost_index() {
            Some(_) => 0,
            None => self.tree.node(node).children,
        }
    }

    /// A ghost standing for element `index` of the list `list`, which has `len` elements.
    pub(crate) fn ghost(&self, list: NodeId, index: usize, len: usize) -> NodeId {
        let mut ghosts = self.ghosts.borrow_mut();
        ghosts.push(Ghost { list, index, len });
        NodeId::ghost(ghosts.len() - 1)
    }

    /// The path of a node (`blocks.2.attn`), also for ghosts.
    pub fn path(&self, node: NodeId) -> String {
        match node.ghost_index() {
            Some(g) => {
                let ghosts = self.ghosts.borrow();
                let ghost = &ghosts[g];
                format!("{}.{}", self.tree.path(ghost.list), ghost.index)
            }
            None => self.tree.path(node),
        }
    }

    /// `blocks.2.output.i0`, the way nnsight names a site visit.
    pub(crate) fn describe(&self, key: Key) -> String {
        let side = match key.kind {
            Kind::Input => "input",
            Kind::Output => "output",
        };
        format!("{}.{side}.i{}", self.path(key.node), key.occurrence)
    }

    /// Why accesses through `node` can never succeed, if they cannot.
    fn invalid(&self, node: NodeId) -> Option<Error> {
        if let Some(g) = node.ghost_index() {
            let ghosts = self.ghosts.borrow();
            let ghost = &ghosts[g];
            let path = self.tree.path(ghost.list);
            return Some(match self.tree.node(ghost.list).kind {
                NodeKind::Absent => Error::NotPresent { path },
                _ => Error::IndexOutOfRange { path, index: ghost.index, len: ghost.len },
            });
        }
        match self.tree.node(node).kind {
            NodeKind::Absent => Some(Error::NotPresent { path: self.tree.path(node) }),
            NodeKind::Module | NodeKind::List => None,
        }
    }

    /// Resolves an access of the current invoke's body to `key`.
    pub(crate) fn access(&self, key: Key) -> Access {
        if let Some(error) = self.invalid(key.node) {
            return Access::Fail(error);
        }
        if let Some(serving) = self.serving.get()
            && serving.key == key
        {
            return Access::Serve(serving.value, serving.type_name);
        }
        if self.has(ENDED) {
            return Access::Fail(Error::NotReached { site: self.describe(key) });
        }
        let node = self.tree.node(key.node);
        let seen = match key.kind {
            Kind::Input => node.inputs_seen.get(),
            Kind::Output => node.outputs_seen.get(),
        };
        if seen > key.occurrence {
            let passed = self.last.get().map_or_else(|| "the start".to_owned(), |k| self.describe(k));
            return Access::Fail(Error::OutOfOrder { requested: self.describe(key), passed });
        }
        let pending = &self.pending[self.invoke.get()];
        match pending.get() {
            Some(other) if other != key => Access::Fail(Error::Unsupported {
                what: format!(
                    "awaited `{}` while already waiting for `{}`",
                    self.describe(key),
                    self.describe(other)
                ),
            }),
            _ => {
                pending.set(Some(key));
                Access::Wait
            }
        }
    }

    /// Whether some body waits for `key`.
    #[inline]
    pub(crate) fn awaited(&self, key: Key) -> bool {
        self.pending.iter().any(|p| p.get() == Some(key))
    }
}
