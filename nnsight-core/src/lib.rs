//! The runtime of nnsight-rs: module trees, envoys, sites and the engine that interleaves trace
//! bodies with forward passes. Use it through the `nnsight` facade crate.

// Generated code names `::nnsight::..`; inside this crate that is the crate itself.
extern crate self as nnsight;

mod access;
mod batch;
mod cache;
mod control;
mod edit;
mod engine;
mod envoy;
mod erased;
mod error;
mod ghost;
mod grad;
mod group;
mod hook_point;
mod inspectable;
mod invokes;
mod leaves;
pub mod observe;
mod positions;
mod shared;
mod skipped;
mod standing;
mod state;
mod trace;
mod tree;
mod value;
mod visit;

// What users write.
pub use access::Site;
pub use cache::{Cache, CacheOptions};
pub use edit::Edited;
pub use envoy::{DynEnvoy, ListEnvoy, ModuleEnvoy};
pub use error::{Error, Result};
pub use hook_point::HookPoint;
pub use inspectable::Inspectable;
pub use invokes::Invokes;
pub use positions::Positions;
pub use shared::Shared;
pub use trace::{TraceExt, Tracer};
pub use value::SiteValue;

/// The futures of site accesses (what `output()`, `.replace(..)`, `.skip(..)`, `.track_grad()`
/// return, awaited in a body), and the side of a call a site is.
pub mod site {
    pub use crate::access::{Edit, First, Lens, Reached, Read, Replace, Site, TryEdit, Whole};
    pub use crate::control::{Erased, Skip, SkipValue};
    pub use crate::erased::{ErasedSite, ErasedValue, Visit, Writer};
    pub use crate::grad::{TrackGrad, Tracked};
    pub use crate::visit::Kind;
}

/// The glue of invokes, for wrappers that batch their own inputs (a language model pads its
/// prompts): the batcher, the groups of bodies, the rows each invoke owns, the root call of a
/// driven loop, and stored edits.
pub mod invoke {
    pub use crate::batch::{Concat, layout, layout_parts};
    pub use crate::edit::{EditBody, Edited};
    pub use crate::engine::Root;
    pub use crate::group::{Group, Groups, Many, ManyDyn, One, Push};
    pub use crate::invokes::{Batcher, Invokes, no_input};
    pub use crate::value::Rows;
}

/// What a hand-written [`Inspectable`] impl (or a [`SiteValue`] of a model's own type) needs:
/// the module tree and its builder, the trace state envoys are built on, the signature traits,
/// argument tuples, how values carry the batch, and replacement mismatches.
pub mod inspect {
    pub use crate::error::Mismatch;
    pub use crate::inspectable::{Forward, Inspectable, IntoInputs, Signature};
    pub use crate::leaves::check_token_ids;
    pub use crate::state::TraceState;
    pub use crate::tree::{NodeId, Tree, TreeBuilder};
    pub use crate::value::{Args, Batching, SiteValue};
}

/// What generated code names; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::engine::{Body, BodyFuture, Child, Step, Task, site, unwatched};
    pub use crate::group::Drive;
}

/// Whether nothing in the running trace can touch the next call of a submodule, so that a
/// forward may compute past it without making its value: in the forward of an `#[inspect]` impl
/// block, `nnsight::unwatched!(self.attn_probs)` is `true` when no body waits for one of the
/// module's sites, no cache records it, no standing edit or skip applies to it (or no trace
/// runs); the call is then counted as made, so later calls keep their occurrence numbers. A model
/// keeps the explicit steps as its sites and takes a fused kernel when nobody looks:
///
/// ```ignore
/// let mixed = if nnsight::unwatched!(self.attn_probs) {
///     burn::tensor::module::attention(q, k, v, mask, None, options)
/// } else {
///     self.attn_probs.forward(softmax(scores, 3)).matmul(v)
/// };
/// ```
///
/// For modules without submodules (a [`HookPoint`], a dropout). Outside an `#[inspect]` block
/// it does not compile: only the rewriting knows which submodule the argument is.
#[macro_export]
macro_rules! unwatched {
    ($($module:tt)*) => {
        ::core::compile_error!(
            "`nnsight::unwatched!` works only in the forward of an `#[inspect]` impl block, which rewrites it"
        )
    };
}
