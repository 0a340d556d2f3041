//! Where a model's tensors come from, for every family's loader: safetensors checkpoints
//! ([`Weights`]), and the pieces loaders share (`source`: a source of tensors by name — a
//! checkpoint or a random initialisation — seen under a scoped name prefix, as candle's
//! `VarBuilder::pp`), so that a new family does not copy them again.

mod by_name;
mod safetensors;
mod source;

pub(crate) use by_name::{ByName, checkpoint, given};
pub use safetensors::Weights;
pub(crate) use source::{Kind, Random, Scope, TensorSource, embedding};
