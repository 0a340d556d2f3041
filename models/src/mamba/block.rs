//! One Mamba block: `norm → mixer → +` (no MLP, no attention).

use burn::nn::RmsNorm;
use burn::prelude::*;
use nnsight::prelude::*;

use super::cache::MambaLayerCache;
use super::mixer::MambaMixer;

/// A Mamba block (`backbone.layers[i]`), as Hugging Face's `MambaBlock`. Its output is the
/// residual stream after the block.
#[derive(Module, Debug, Inspectable)]
pub struct MambaBlock<B: Backend> {
    /// RMSNorm before the mixer.
    pub norm: RmsNorm<B>,
    /// The selective-state-space mixer.
    pub mixer: MambaMixer<B>,
}

#[inspect]
impl<B: Backend> MambaBlock<B> {
    /// Runs the block on the residual stream `x` (`[batch, tokens, hidden]`); `mask` and `cache`
    /// as [`MambaMixer::forward`].
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        mask: &Tensor<B, 2>,
        cache: &mut MambaLayerCache<B>,
    ) -> Tensor<B, 3> {
        let mixed = self.mixer.forward(self.norm.forward(x.clone()), mask, cache);
        x + mixed
    }
}
