//! The runtime of nnsight-rs: module trees, envoys, sites and the engine that interleaves trace
//! bodies with forward passes. Use it through the `nnsight` facade crate.

// Generated code names `::nnsight::..`; inside this crate that is the crate itself.
extern crate self as nnsight;

mod batch;
mod cache;
mod control;
mod edit;
mod engine;
mod envoy;
mod error;
mod grad;
mod group;
mod hook_point;
mod inspectable;
mod invoke;
mod leaves;
mod shared;
mod site;
mod standing;
mod state;
mod trace;
mod tree;
mod value;

pub use batch::{Concat, layout};
pub use cache::{Cache, CacheOptions};
pub use control::Skip;
pub use edit::{EditBody, Edited};
pub use engine::Root;
pub use envoy::{DynEnvoy, ListEnvoy, ModuleEnvoy};
pub use error::{Error, Mismatch, Result};
pub use grad::{TrackGrad, Tracked};
pub use group::{Group, Groups, Many, One, Push};
pub use hook_point::HookPoint;
pub use inspectable::{Forward, Inspectable, IntoInputs, Signature};
pub use invoke::{Batcher, Invokes, no_input};
pub use shared::Shared;
pub use site::{Edit, First, Lens, Reached, Read, Replace, Site, TryEdit, Whole};
pub use state::{Kind, TraceState};
pub use trace::{TraceExt, Tracer};
pub use tree::{NodeId, Tree, TreeBuilder};
pub use value::{Args, Batching, Rows, SiteValue};

/// What generated code names; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::engine::{Body, BodyFuture, Child, Task, site};
    pub use crate::group::Drive;
}
