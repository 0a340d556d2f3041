//! [`Inspectable`] for burn's built-in layers (leaves of the module tree).
//!
//! Layers whose forward is generic over the tensor rank get a [`DynEnvoy`]; layers with a fixed
//! signature get a [`ModuleEnvoy`] typed by their [`Signature`].

use burn::nn::conv::{Conv1d, Conv2d};
use burn::nn::{
    Dropout, Embedding, Gelu, GroupNorm, LayerNorm, LeakyRelu, Linear, PRelu, Relu, RmsNorm, Sigmoid, SwiGlu,
    Tanh,
};
use std::any::Any;

use burn::tensor::{Int, Tensor, backend::Backend};

use crate::envoy::{DynEnvoy, ModuleEnvoy};
use crate::hook_point::HookPoint;
use crate::inspectable::{Inspectable, Signature};
use crate::state::TraceState;
use crate::tree::NodeId;

macro_rules! dyn_leaves {
    ($($ty:ty $(where $b:ident)?),* $(,)?) => {$(
        impl$(<$b: Backend>)? Inspectable for $ty {
            type Envoy<'t> = DynEnvoy<'t>;
            fn envoy(state: &TraceState, node: NodeId) -> DynEnvoy<'_> {
                DynEnvoy::new(state, node)
            }
        }
    )*};
}

dyn_leaves!(
    Linear<B> where B,
    LayerNorm<B> where B,
    RmsNorm<B> where B,
    GroupNorm<B> where B,
    PRelu<B> where B,
    SwiGlu<B> where B,
    Dropout,
    Gelu,
    Relu,
    LeakyRelu,
    Sigmoid,
    Tanh,
    HookPoint,
);

macro_rules! typed_leaves {
    ($($ty:ident: ($($input:ty),+) -> $output:ty),* $(,)?) => {$(
        impl<B: Backend> Inspectable for $ty<B> {
            type Envoy<'t> = ModuleEnvoy<'t, $ty<B>>;
            fn envoy(state: &TraceState, node: NodeId) -> Self::Envoy<'_> {
                ModuleEnvoy::new(state, node)
            }
        }
        impl<B: Backend> Signature for $ty<B> {
            type Inputs = ($($input,)+);
            type Output = $output;
        }
    )*};
}

typed_leaves!(
    Conv1d: (Tensor<B, 3>) -> Tensor<B, 3>,
    Conv2d: (Tensor<B, 4>) -> Tensor<B, 4>,
);

impl<B: Backend> Inspectable for Embedding<B> {
    type Envoy<'t> = ModuleEnvoy<'t, Embedding<B>>;

    fn envoy(state: &TraceState, node: NodeId) -> Self::Envoy<'_> {
        ModuleEnvoy::new(state, node)
    }

    /// Token ids outside `0..num_embeddings` (written by a body) would panic in the lookup.
    fn check_inputs(&self, inputs: &dyn Any) -> Result<(), String> {
        let Some((ids,)) = inputs.downcast_ref::<<Self as Signature>::Inputs>() else { return Ok(()) };
        check_token_ids(ids, self.weight.dims()[0])
    }
}

/// Checks that every id of `ids` lies in `0..vocabulary`: what an embedding's
/// [`Inspectable::check_inputs`] asks of the token ids a body may have written, since an id
/// outside would panic in the lookup.
///
/// # Errors
/// The first id outside, and the range.
pub fn check_token_ids<B: Backend, const D: usize>(
    ids: &Tensor<B, D, Int>,
    vocabulary: usize,
) -> Result<(), String> {
    let data = ids.to_data();
    let outside = data.iter::<i64>().find(|&id| id < 0 || id as u64 >= vocabulary as u64);
    match outside {
        Some(id) => Err(format!("token id {id} is outside the vocabulary 0..{vocabulary}")),
        None => Ok(()),
    }
}

impl<B: Backend> Signature for Embedding<B> {
    type Inputs = (Tensor<B, 2, Int>,);
    type Output = Tensor<B, 3>;
}
