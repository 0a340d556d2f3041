//! The activation cache: the (post-intervention) outputs — optionally inputs — of every module or
//! of chosen ones, recorded in one trace (nnsight's `tracer.cache()`).
//!
//! A body starts recording with [`ModuleEnvoy::cache`](crate::ModuleEnvoy::cache); from then on
//! every chosen site is kept as it leaves the site, after the bodies' edits. Values are handles
//! (no copies). Look them up by path (`cache.output::<T>("transformer.h.3")`) or, inside the body,
//! by envoy (`m.transformer.h[3].cached_output(&cache)`). A cache made by one invoke of a batched
//! trace sees that invoke's rows.

use std::any::{Any, type_name};
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::state::{CACHING, Key, Kind, TraceState};
use crate::tree::{NodeId, Tree};
use crate::value::{Batching, Rows, SiteValue};

/// What a cache records: every module or chosen ones; outputs, and inputs if asked.
#[derive(Clone, Debug, Default)]
pub struct CacheOptions {
    modules: Option<Vec<String>>,
    inputs: bool,
}

impl CacheOptions {
    /// The outputs of every module (and of the model itself, path `model`).
    pub fn all() -> Self {
        CacheOptions::default()
    }

    /// The outputs of the modules at `paths` only (e.g. `m.transformer.h[3].path()`).
    pub fn only<S: Into<String>>(paths: impl IntoIterator<Item = S>) -> Self {
        CacheOptions { modules: Some(paths.into_iter().map(Into::into).collect()), inputs: false }
    }

    /// Records the inputs (argument tuples) of the same modules too.
    pub fn with_inputs(mut self) -> Self {
        self.inputs = true;
        self
    }
}

/// One recorded site visit.
struct Entry {
    path: String,
    kind: Kind,
    occurrence: u32,
    value: Box<dyn Any>,
    type_name: &'static str,
    /// How the value carries the batch, as it did at the site.
    batching: Batching,
    /// The part of the input the module belongs to (`None`: its values combine parts).
    part: Option<usize>,
}

/// The recording side of a cache, owned by the trace and the [`Cache`] handles.
pub(crate) struct CacheStore {
    /// The nodes recorded (`None`: all), sorted.
    nodes: Option<Vec<NodeId>>,
    inputs: bool,
    entries: RefCell<Vec<Entry>>,
}

impl CacheStore {
    /// Whether this cache records a site of `node`.
    pub(crate) fn records(&self, node: NodeId) -> bool {
        self.nodes.as_ref().is_none_or(|nodes| nodes.binary_search_by_key(&node.0, |n| n.0).is_ok())
    }

    /// Keeps `value` if this cache records `key`.
    pub(crate) fn record<T: SiteValue>(&self, tree: &Tree, key: Key, value: &T) {
        if key.kind == Kind::Input && !self.inputs {
            return;
        }
        if let Some(nodes) = &self.nodes
            && nodes.binary_search_by_key(&key.node.0, |n| n.0).is_err()
        {
            return;
        }
        self.entries.borrow_mut().push(Entry {
            path: tree.path(key.node),
            kind: key.kind,
            occurrence: key.occurrence,
            value: Box::new(value.snapshot()),
            type_name: type_name::<T>(),
            batching: tree.node(key.node).batching.get(),
            part: tree.node(key.node).part,
        });
    }
}

/// Starts a cache in the trace `state`, for the body being polled.
pub(crate) fn start(state: &TraceState, options: CacheOptions) -> Result<Cache> {
    let nodes = match options.modules {
        None => None,
        Some(paths) => {
            let mut nodes = Vec::with_capacity(paths.len());
            for path in paths {
                let node = state.tree.find(&path).ok_or_else(|| Error::NotCached {
                    site: path.clone(),
                    why: "no module has this path, so it cannot be recorded".to_owned(),
                })?;
                nodes.push(node);
            }
            nodes.sort_by_key(|n| n.0);
            Some(nodes)
        }
    };
    let store = Rc::new(CacheStore { nodes, inputs: options.inputs, entries: RefCell::new(Vec::new()) });
    state.caches.borrow_mut().push(store.clone());
    state.raise(CACHING);
    Ok(Cache { store, rows: state.current_rows() })
}

/// Recorded activations of one trace (nnsight's `tracer.cache()`): the post-intervention outputs
/// — optionally inputs — of the modules chosen by [`CacheOptions`], kept as handles (no copies).
/// Look them up by path (`cache.output::<T>("transformer.h.3")`) or, inside the body, by envoy
/// (`m.transformer.h[3].cached_output(&cache)`). A cache made by one invoke of a batched trace
/// sees that invoke's rows.
#[derive(Clone)]
pub struct Cache {
    store: Rc<CacheStore>,
    rows: Option<Rows>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache").field("entries", &self.len()).field("rows", &self.rows).finish()
    }
}

impl Cache {
    /// The number of recorded site visits.
    pub fn len(&self) -> usize {
        self.store.entries.borrow().len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The recorded sites, in forward order, as `path.output.iN` / `path.input.iN`.
    pub fn sites(&self) -> Vec<String> {
        let entries = self.store.entries.borrow();
        entries.iter().map(|e| describe(&e.path, e.kind, e.occurrence)).collect()
    }

    /// The output of the module at `path` on its first call.
    ///
    /// # Errors
    /// [`Error::NotCached`] when the cache has no such entry or it is of another type.
    pub fn output<T: SiteValue>(&self, path: &str) -> Result<T> {
        self.get(path, Kind::Output, 0)
    }

    /// The argument tuple of the module at `path` on its first call (needs
    /// [`CacheOptions::with_inputs`]).
    ///
    /// # Errors
    /// As [`output`](Self::output).
    pub fn inputs<T: SiteValue>(&self, path: &str) -> Result<T> {
        self.get(path, Kind::Input, 0)
    }

    /// The output of the module at `path` on call `occurrence` (0 is the first).
    ///
    /// # Errors
    /// As [`output`](Self::output).
    pub fn output_at<T: SiteValue>(&self, path: &str, occurrence: u32) -> Result<T> {
        self.get(path, Kind::Output, occurrence)
    }

    pub(crate) fn get<T: SiteValue>(&self, path: &str, kind: Kind, occurrence: u32) -> Result<T> {
        let entries = self.store.entries.borrow();
        let site = describe(path, kind, occurrence);
        let entry = entries
            .iter()
            .find(|e| e.kind == kind && e.occurrence == occurrence && e.path == path)
            .ok_or_else(|| Error::NotCached {
            site: site.clone(),
            why: "not recorded: not chosen, not reached, or reached before the cache started".to_owned(),
        })?;
        let value = entry.value.downcast_ref::<T>().ok_or_else(|| Error::NotCached {
            site: site.clone(),
            why: format!("it holds `{}`, not `{}`", entry.type_name, type_name::<T>()),
        })?;
        match (self.rows, entry.batching) {
            (Some(rows), Batching::Dim(dim)) if entry.part == Some(rows.part) => {
                value.narrow_rows(rows.along(dim)).map_err(|problem| Error::NotCached {
                    site,
                    why: format!("this cache sees rows {:?} of the batch, and {problem}", rows.range()),
                })
            }
            _ => Ok(value.clone()),
        }
    }
}

fn describe(path: &str, kind: Kind, occurrence: u32) -> String {
    let side = match kind {
        Kind::Input => "input",
        Kind::Output => "output",
    };
    format!("{path}.{side}.i{occurrence}")
}
