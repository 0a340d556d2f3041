//! The intervention IR of nnsight-rs: a trace body as **data**, so that the same intervention can
//! run on a machine that hosts the model (nnsight's remote mode), be saved as a file and shared,
//! or be emitted by any language.
//!
//! nnsight ships pickled Python to its server, which couples client and server versions and
//! needs a sandbox for arbitrary code. This crate ships a closed, versioned vocabulary instead:
//!
//! - [`ir`]: the program's types. A [`Program`](ir::Program) is a session of traces; a trace holds
//!   invokes (one input each, batched together); an invoke is a list of [`Node`](ir::Node)s in
//!   program order (SSA: a node's value is referred to by its position, [`Ref`](ir::Ref)). Nodes
//!   read and write module sites, call hosted modules, apply tensor operations from a closed list,
//!   save values and log them.
//! - [`Version`]: `ir: {major, minor}`, stamped with the lowest minor that has every operation the
//!   program uses; a reader refuses a newer minor or another major with a message naming both.
//! - [`canonical`]: the wire encoding, canonical JSON (sorted keys, no whitespace), decoded with a
//!   size limit; tensors travel beside it in one safetensors file, named by the program.
//! - [`check`]: the structural rules a program must follow whatever model it runs on (references
//!   point back to a value in scope, saved names are unique, ...), reported as
//!   [`Diagnostic`]s with a stable code, the node and the user's source location.
//! - [`interpret`]: runs a program on a model with the engine that runs compiled bodies, bodies
//!   on the model's untyped root envoy; the saves come back.
//! - [`record`]: the unchanged trace body, run on the model's shape-only twin (the
//!   [`Recorder`](record::Recorder) backend computes nothing), becomes a program; [`scan`](record::scan)
//!   gives every site's shape.
//! - [`manifest`]: what a hosted model offers programs — modules, every site's symbolic shape,
//!   parameters, callable modules, digests — made from its shape-only twin.
//! - [`validate`](validate::validate): a program checked against a manifest before it is sent,
//!   each problem a [`Diagnostic`]; a valid program gets a plan with its cost.
//! - [`intervention`]: a program and its tensors as a shareable directory.
//! - [`tensors`]: the literals going with a program and the saves coming back, each one
//!   safetensors file.
//! - [`schema`]: the JSON Schema of the IR, generated from the types and committed
//!   (`schema/ir-v1.schema.json`), for clients written in other languages.
//!
//! - [`arch`]: the model families (GPT-2, Llama) as a host loads them and a client builds their
//!   twins.
//! - [`api`]: the HTTP API of `nnsight-server`, as types; `client` (feature `client`): a
//!   blocking client of it — record a body, validate it against the host's manifest, send it,
//!   follow its job and fetch the saves.
//!
//! Local traces never touch this crate: it is linked only by code that records, sends or runs
//! programs (the crate depends on the engine, never the reverse).

pub mod aliases;
pub mod api;
pub mod arch;
pub mod canonical;
pub mod check;
#[cfg(feature = "client")]
pub mod client;
mod diagnostic;
pub mod interpret;
pub mod intervention;
pub mod ir;
pub mod manifest;
pub mod record;
pub mod schema;
pub mod tensors;
pub mod validate;
mod version;

pub use diagnostic::{Code, Diagnostic, NodePath};
pub use version::Version;
