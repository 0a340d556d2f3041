//! # nnsight-rs
//!
//! Transparent access to the internals of [burn](https://burn.dev) models, in the spirit of the
//! Python library nnsight: read any module's inputs and outputs during a forward pass, replace
//! them, patch activations — with module paths checked by the compiler and intervention code
//! compiled, at no cost when no trace is active.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::nn::{Linear, LinearConfig, Relu};
//! use burn::prelude::*;
//! use nnsight::prelude::*;
//!
//! // 1. An ordinary burn model, plus `Inspectable` and `#[inspect]`.
//! #[derive(Module, Debug, Inspectable)]
//! struct Mlp<B: Backend> {
//!     layers: Vec<Linear<B>>,
//!     act: Relu,
//! }
//!
//! #[inspect]
//! impl<B: Backend> Mlp<B> {
//!     fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
//!         for layer in &self.layers {
//!             x = self.act.forward(layer.forward(x));
//!         }
//!         x
//!     }
//! }
//!
//! # fn main() -> nnsight::Result<()> {
//! let device = Default::default();
//! let mlp = Mlp::<Flex> {
//!     layers: (0..3).map(|_| LinearConfig::new(4, 4).init(&device)).collect(),
//!     act: Relu::new(),
//! };
//! let x = Tensor::<Flex, 2>::ones([1, 4], &device);
//!
//! // 2. A trace: read layer 0's output, zero layer 1's output, keep the final output.
//! let (first, out) = trace!(mlp, x, |m| {
//!     let first: Tensor<Flex, 2> = m.layers[0].output();
//!     m.layers[1].output() = first.zeros_like();
//!     (first, m.output())
//! })?;
//! assert_eq!(first.dims(), [1, 4]);
//! assert_eq!(out.dims(), [1, 4]);
//! # Ok(())
//! # }
//! ```
//!
//! ## Map
//! - [`Inspectable`] (derive) and [`inspect`](macro@inspect) (attribute) instrument a model;
//! - [`TraceExt::trace`] + [`Tracer::run`] is the explicit API, [`trace!`] its nnsight-shaped sugar;
//! - envoys ([`ModuleEnvoy`], [`DynEnvoy`], [`ListEnvoy`]) mirror the module tree and hand out
//!   [`Site`]s: await to read, [`Site::replace`] / [`Site::edit`] to change;
//! - [`TraceExt::tracer`] + [`Invokes`] run several inputs as one batch, each with its own body
//!   (values pass between invokes through [`Shared`]); `trace!(model, |m| { invoke x { .. } .. })`
//!   is the same in nnsight's shape;
//! - in a body: [`Site::track_grad`] (gradients, with an autodiff backend), [`ModuleEnvoy::skip`],
//!   [`ModuleEnvoy::stop`], [`ModuleEnvoy::cache`] ([`Cache`]);
//! - [`TraceExt::edit`] stores an intervention applied on every trace of the returned [`Edited`];
//! - [`HookPoint`] names an intermediate value; [`Error`] says what went wrong and where;
//! - [`Positions`] reads and writes one token position of a `[batch, tokens, hidden]` value
//!   (`h.at_pos(-1)`, `h.set_pos(p, v)`, `h.add_at_pos(p, steering)`), nnsight's `h[:, p, :]`;
//! - the rest sits in modules: [`site`] (the futures of accesses), [`invoke`] (glue for wrappers
//!   that batch their own inputs), [`inspect`](mod@inspect) (what a hand-written `Inspectable`
//!   impl needs).
//!
//! ## Features
//! | feature | what it adds |
//! |---|---|
//! | `cuda` | burn's CUDA backend (`burn::backend::Cuda`) with its fusion and autotune; builds without a CUDA toolkit |

pub use nnsight_core::*;

/// The README's code, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
pub use nnsight_macros::{Inspectable, inspect, trace};

/// The names a trace needs: `use nnsight::prelude::*;`.
pub mod prelude {
    pub use nnsight_core::{
        CacheOptions, Error, Inspectable, Positions, Result, Shared, SiteValue, TraceExt,
    };
    pub use nnsight_macros::{Inspectable, inspect, trace};
}
