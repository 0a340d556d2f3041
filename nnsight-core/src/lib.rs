//! The runtime of nnsight-rs: module trees, envoys, sites and the engine that interleaves trace
//! bodies with forward passes. Use it through the `nnsight` facade crate.

// Generated code names `::nnsight::..`; inside this crate that is the crate itself.
extern crate self as nnsight;

mod engine;
mod envoy;
mod error;
mod hook_point;
mod inspectable;
mod leaves;
mod site;
mod state;
mod trace;
mod tree;
mod value;

pub use envoy::{DynEnvoy, ListEnvoy, ModuleEnvoy};
pub use error::{Error, Mismatch, Result};
pub use hook_point::HookPoint;
pub use inspectable::{Forward, Inspectable, IntoInputs, Signature};
pub use site::{Edit, First, Lens, Read, Replace, Site, Whole};
pub use state::{Kind, TraceState};
pub use trace::{TraceExt, Tracer};
pub use tree::{NodeId, Tree, TreeBuilder};
pub use value::{Args, SiteValue};

/// What generated code names; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::engine::{Child, site};
}
