//! Envoys: typed mirrors of the module tree, borrowed for one trace.
//!
//! A derived envoy (`BlockEnvoy`) has one public field per submodule and dereferences to a
//! [`ModuleEnvoy`], which offers the module's own sites. burn's rank-generic layers (`Linear`,
//! `LayerNorm`, activations, ...) get a [`DynEnvoy`], whose value type comes from the use site.
//! A `Vec<M>` field becomes a [`ListEnvoy`], indexed like the `Vec`.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::Index;

use crate::access::{First, Site};
use crate::cache::{self, Cache, CacheOptions};
use crate::control::{self, Skip};
use crate::error::Result;
use crate::inspectable::Signature;
use crate::state::{Kind, TraceState};
use crate::tree::NodeId;
use crate::value::{Args, SiteValue};

/// The sites of one module whose value types are fixed by its [`Signature`].
pub struct ModuleEnvoy<'t, M: ?Sized> {
    state: &'t TraceState,
    node: NodeId,
    _module: PhantomData<fn() -> *const M>,
}

impl<M: ?Sized> fmt::Debug for ModuleEnvoy<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Envoy({})", self.path())
    }
}

impl<'t, M: ?Sized> ModuleEnvoy<'t, M> {
    /// The envoy of `node` in the trace `state`.
    pub fn new(state: &'t TraceState, node: NodeId) -> Self {
        ModuleEnvoy { state, node, _module: PhantomData }
    }

    /// The same module's untyped envoy, which reaches the modules below it by path
    /// ([`DynEnvoy::module`]): for code that learns at run time what to touch.
    pub fn untyped(&self) -> DynEnvoy<'t> {
        DynEnvoy::new(self.state, self.node)
    }

    /// The module's path, e.g. `blocks.2.attn` (`model` for the root).
    pub fn path(&self) -> String {
        self.state.path(self.node)
    }

    /// The value the module returns. Await it to read; `replace` / `edit` to change it.
    #[track_caller]
    pub fn output(&self) -> Site<'t, M::Output>
    where
        M: Signature,
    {
        Site::new(self.state, self.node, Kind::Output)
    }

    /// All the (owned) arguments of the call, as a tuple.
    #[track_caller]
    pub fn inputs(&self) -> Site<'t, M::Inputs>
    where
        M: Signature,
    {
        Site::new(self.state, self.node, Kind::Input)
    }

    /// The first argument of the call.
    #[track_caller]
    pub fn input(&self) -> Site<'t, M::Inputs, First>
    where
        M: Signature,
        M::Inputs: Args,
    {
        Site::new(self.state, self.node, Kind::Input)
    }

    /// Skips the module: `value` flows on as its output and its submodules' sites never fire.
    /// The module still runs once, untraced, so that a `value` of another shape or element type
    /// is an error naming the module rather than a panic further down (skipping saves no
    /// compute). Awaiting waits for the module's call.
    ///
    /// # Errors
    /// [`Error::PartialSkip`](crate::Error::PartialSkip) from a body that sees only some rows of a
    /// batch (an invoke alone in its part of a several-part input may skip that part's modules);
    /// the errors of reading the module's input; the trace fails with
    /// [`Error::ShapeMismatch`](crate::Error::ShapeMismatch) or
    /// [`Error::TypeMismatch`](crate::Error::TypeMismatch) when `value` does not match the
    /// module's output.
    pub fn skip(&self, value: M::Output) -> Skip<'t, M::Output>
    where
        M: Signature,
    {
        Skip::new(self.state, self.node, value)
    }

    /// Stops the forward pass after the site being served (before the first site, if called
    /// before any access): later modules never run, and accesses still waiting fail with
    /// [`Error::NotReached`](crate::Error::NotReached). The bodies waiting at the current site
    /// still get it.
    ///
    /// # Errors
    /// [`Error::Unsupported`](crate::Error::Unsupported) in a build with `panic = "abort"`
    /// (stopping unwinds the forward pass).
    pub fn stop(&self) -> Result<()> {
        control::stop(self.state)
    }

    /// Starts recording activations (see [`Cache`]): from this point of the forward pass, the
    /// outputs (optionally inputs) of the modules chosen by `options`.
    ///
    /// # Errors
    /// [`Error::NotCached`](crate::Error::NotCached) when `options` names a path no module has.
    pub fn cache(&self, options: CacheOptions) -> Result<Cache> {
        if let Some(observer) = &self.state.observer {
            observer.uses("a cache (`cache`)");
        }
        cache::start(self.state, options)
    }

    /// This module's output (first call) as recorded by `cache`, typed by the module's signature.
    ///
    /// # Errors
    /// [`Error::NotCached`](crate::Error::NotCached) when `cache` did not record it.
    pub fn cached_output(&self, cache: &Cache) -> Result<M::Output>
    where
        M: Signature,
    {
        cache.get(&self.path(), Kind::Output, 0)
    }
}

/// The sites of a module whose value types are generic (e.g. `Linear::forward<const D>`): the type
/// is inferred where the value is used, and checked when the site is reached.
#[derive(Clone, Copy)]
pub struct DynEnvoy<'t> {
    state: &'t TraceState,
    node: NodeId,
}

impl fmt::Debug for DynEnvoy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Envoy({})", self.path())
    }
}

impl<'t> DynEnvoy<'t> {
    /// The envoy of `node` in the trace `state`.
    pub fn new(state: &'t TraceState, node: NodeId) -> Self {
        DynEnvoy { state, node }
    }

    /// The module's path, e.g. `blocks.2.attn.q_proj`.
    pub fn path(&self) -> String {
        self.state.path(self.node)
    }

    /// The module at `path` below this one (`h.3.attn`; the empty path is this module), named at
    /// run time: how code that is not written against the model's types reaches its modules.
    ///
    /// # Errors
    /// [`Error::UnknownModule`](crate::Error::UnknownModule) naming the first component that is
    /// not there and what is there instead.
    pub fn module(&self, path: &str) -> Result<DynEnvoy<'t>> {
        let full = match (self.node == NodeId::ROOT, path.is_empty()) {
            (true, _) => path.to_owned(),
            (false, true) => self.path(),
            (false, false) => format!("{}.{path}", self.path()),
        };
        match self.state.tree.lookup(&full) {
            Ok(node) => Ok(DynEnvoy { state: self.state, node }),
            Err((parent, component)) => Err(crate::Error::UnknownModule {
                path: full.clone(),
                parent: self.state.path(parent),
                component: if component.is_empty() {
                    "module there (it is a list)".to_owned()
                } else {
                    component.to_owned()
                },
                children: self.state.tree.child_names(parent).join(", "),
            }),
        }
    }

    /// Skips the module with an untyped `value` as its output; its type and shape are checked
    /// when the module is reached (see [`ModuleEnvoy::skip`]).
    pub fn skip_erased(&self, value: Box<dyn crate::erased::ErasedValue>) -> Skip<'t, control::Erased> {
        Skip::new(self.state, self.node, control::Erased(value))
    }

    /// Stops the forward pass after the current site (see [`ModuleEnvoy::stop`]).
    ///
    /// # Errors
    /// As [`ModuleEnvoy::stop`].
    pub fn stop(&self) -> Result<()> {
        control::stop(self.state)
    }

    /// This module's output (`Kind::Output`) or arguments (`Kind::Input`) at its `occurrence`-th
    /// call, untyped (see [`ErasedSite`](crate::site::ErasedSite)).
    pub fn erased(&self, kind: Kind, occurrence: u32) -> crate::erased::ErasedSite<'t> {
        crate::erased::ErasedSite::new(self.state, crate::visit::Key { node: self.node, kind, occurrence })
    }

    /// The value the module returns, of type `T` (e.g. `Tensor<B, 3>`).
    #[track_caller]
    pub fn output<T: SiteValue>(&self) -> Site<'t, T> {
        Site::new(self.state, self.node, Kind::Output)
    }

    /// The argument of a one-argument call, of type `T`.
    #[track_caller]
    pub fn input<T: SiteValue>(&self) -> Site<'t, (T,), First> {
        Site::new(self.state, self.node, Kind::Input)
    }

    /// All the arguments of the call, as the tuple `T`.
    #[track_caller]
    pub fn inputs<T: Args>(&self) -> Site<'t, T> {
        Site::new(self.state, self.node, Kind::Input)
    }

    /// Skips the module with `value` as its output (see [`ModuleEnvoy::skip`]); the type is
    /// checked when the module is reached.
    pub fn skip<T: SiteValue>(&self, value: T) -> Skip<'t, T> {
        Skip::new(self.state, self.node, value)
    }

    /// This module's output (first call) as recorded by `cache`, of type `T`.
    ///
    /// # Errors
    /// [`Error::NotCached`](crate::Error::NotCached) when `cache` did not record it as a `T`.
    pub fn cached_output<T: SiteValue>(&self, cache: &Cache) -> Result<T> {
        cache.get(&self.path(), Kind::Output, 0)
    }
}

/// The envoys of a `Vec<M>` of modules, indexed like the `Vec`.
///
/// Indexing past the end does not panic: it yields an envoy whose every access fails with
/// [`Error::IndexOutOfRange`](crate::Error::IndexOutOfRange) naming the list and its length.
pub struct ListEnvoy<'t, E> {
    state: &'t TraceState,
    node: NodeId,
    items: Vec<E>,
    build: fn(&'t TraceState, NodeId) -> E,
    /// Envoys handed out for indices past the end; boxed so they never move.
    ghosts: RefCell<Vec<Box<E>>>,
}

impl<E> fmt::Debug for ListEnvoy<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ListEnvoy({}, len {})", self.path(), self.len())
    }
}

impl<'t, E> ListEnvoy<'t, E> {
    /// The envoys of the list `node`, each built by `build`.
    pub fn new(state: &'t TraceState, node: NodeId, build: fn(&'t TraceState, NodeId) -> E) -> Self {
        let items = (0..state.children(node)).map(|i| build(state, state.child(node, i))).collect();
        ListEnvoy { state, node, items, build, ghosts: RefCell::new(Vec::new()) }
    }

    /// The list's path, e.g. `blocks`.
    pub fn path(&self) -> String {
        self.state.path(self.node)
    }

    /// The number of modules.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The envoy of module `index`, if it exists.
    pub fn get(&self, index: usize) -> Option<&E> {
        self.items.get(index)
    }

    /// The envoys in order.
    pub fn iter(&self) -> std::slice::Iter<'_, E> {
        self.items.iter()
    }
}

impl<'t, E> Index<usize> for ListEnvoy<'t, E> {
    type Output = E;

    fn index(&self, index: usize) -> &E {
        if let Some(item) = self.items.get(index) {
            return item;
        }
        let ghost = (self.build)(self.state, self.state.ghost(self.node, index, self.items.len()));
        let ghost = Box::new(ghost);
        let pointer: *const E = &*ghost;
        self.ghosts.borrow_mut().push(ghost);
        // SAFETY: the box is owned by `self.ghosts`, which only ever grows and is dropped with
        // `self`; a box's contents never move, so the reference stays valid for `&self`.
        unsafe { &*pointer }
    }
}

impl<'a, 't, E> IntoIterator for &'a ListEnvoy<'t, E> {
    type Item = &'a E;
    type IntoIter = std::slice::Iter<'a, E>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}
