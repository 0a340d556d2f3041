//! The recurrent cache of a Mamba model: what a decoding step continues from (the last inputs of
//! each mixer's convolution and its SSM state), of a fixed size however many tokens came before.

use std::ops::{Index, IndexMut};

use burn::prelude::*;

/// The state of every Mamba block after the tokens seen so far, one [`MambaLayerCache`] per block.
#[derive(Debug, Clone)]
pub struct MambaCache<B: Backend> {
    layers: Vec<MambaLayerCache<B>>,
}

impl<B: Backend> MambaCache<B> {
    /// An empty cache for `layers` blocks that keeps the state each forward pass ends in.
    pub fn new(layers: usize) -> Self {
        MambaCache { layers: (0..layers).map(|_| MambaLayerCache { store: true, state: None }).collect() }
    }

    /// A cache that keeps nothing: each forward pass starts from the zero state.
    pub fn disabled(layers: usize) -> Self {
        MambaCache { layers: (0..layers).map(|_| MambaLayerCache::disabled()).collect() }
    }

    /// Whether no block holds a state (nothing seen yet, or a disabled cache).
    pub fn is_empty(&self) -> bool {
        self.layers.iter().all(|layer| layer.state.is_none())
    }
}

/// The cache of one block: `&mut cache[i]` is what block `i`'s mixer takes.
impl<B: Backend> Index<usize> for MambaCache<B> {
    type Output = MambaLayerCache<B>;

    fn index(&self, layer: usize) -> &MambaLayerCache<B> {
        &self.layers[layer]
    }
}

impl<B: Backend> IndexMut<usize> for MambaCache<B> {
    fn index_mut(&mut self, layer: usize) -> &mut MambaLayerCache<B> {
        &mut self.layers[layer]
    }
}

/// What one mixer continues from.
#[derive(Debug, Clone)]
pub struct MambaLayerCache<B: Backend> {
    store: bool,
    state: Option<MixerState<B>>,
}

/// A mixer's state after some tokens.
#[derive(Debug, Clone)]
pub struct MixerState<B: Backend> {
    /// The convolution's last `conv_kernel - 1` inputs `[batch, intermediate, conv_kernel - 1]`
    /// (zeros before the first token), oldest first.
    pub conv: Tensor<B, 3>,
    /// The SSM state `[batch, intermediate, state_size]` after the last token.
    pub ssm: Tensor<B, 3>,
}

impl<B: Backend> MambaLayerCache<B> {
    /// A layer cache that keeps nothing.
    pub fn disabled() -> Self {
        MambaLayerCache { store: false, state: None }
    }

    /// A layer cache continuing from `state`, which keeps what follows.
    pub fn with_state(state: MixerState<B>) -> Self {
        MambaLayerCache { store: true, state: Some(state) }
    }

    /// The state the next tokens continue from, if any.
    pub fn get(&self) -> Option<&MixerState<B>> {
        self.state.as_ref()
    }

    /// Keeps `state` as the one the next tokens continue from, when this cache stores.
    pub fn set(&mut self, state: MixerState<B>) {
        if self.store {
            self.state = Some(state);
        }
    }

    /// Whether this cache keeps what a forward pass leaves.
    pub fn stores(&self) -> bool {
        self.store
    }
}
