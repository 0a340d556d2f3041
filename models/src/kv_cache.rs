//! The key/value cache of a decoder: what earlier tokens left behind, so that a later forward pass
//! only computes the new tokens.

use std::ops::{Index, IndexMut};

use burn::prelude::*;

/// Keys and values of the tokens seen so far, one [`LayerCache`] per attention layer.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerCache<B>>,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for `layers` layers that keeps what each forward pass computes.
    pub fn new(layers: usize) -> Self {
        KvCache { layers: (0..layers).map(|_| LayerCache { store: true, kv: None }).collect() }
    }

    /// A cache that keeps nothing: each forward pass sees only its own tokens.
    pub fn disabled(layers: usize) -> Self {
        KvCache { layers: (0..layers).map(|_| LayerCache { store: false, kv: None }).collect() }
    }

    /// Number of cached positions (0 for an empty or disabled cache).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::len)
    }

    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The cache of one layer: `&mut cache[i]` is what layer `i`'s forward takes.
impl<B: Backend> Index<usize> for KvCache<B> {
    type Output = LayerCache<B>;

    fn index(&self, layer: usize) -> &LayerCache<B> {
        &self.layers[layer]
    }
}

impl<B: Backend> IndexMut<usize> for KvCache<B> {
    fn index_mut(&mut self, layer: usize) -> &mut LayerCache<B> {
        &mut self.layers[layer]
    }
}

/// Keys and values `[batch, heads, positions, head_dim]` of one attention layer.
#[derive(Debug, Clone)]
pub struct LayerCache<B: Backend> {
    store: bool,
    kv: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
}

impl<B: Backend> LayerCache<B> {
    /// A layer cache that keeps nothing.
    pub fn disabled() -> Self {
        LayerCache { store: false, kv: None }
    }

    /// A layer cache holding `keys` and `values` of earlier positions, which keeps what is appended.
    pub fn with_past(keys: Tensor<B, 4>, values: Tensor<B, 4>) -> Self {
        LayerCache { store: true, kv: Some((keys, values)) }
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dims()[2])
    }

    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cached keys and values, if any.
    pub fn get(&self) -> Option<&(Tensor<B, 4>, Tensor<B, 4>)> {
        self.kv.as_ref()
    }

    /// Returns the keys and values of all positions (cached ones first, then `keys`/`values`
    /// of the new ones), and keeps them when this cache stores.
    pub fn append(&mut self, keys: Tensor<B, 4>, values: Tensor<B, 4>) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let all = match self.kv.take() {
            Some((past_k, past_v)) => {
                (Tensor::cat(vec![past_k, keys], 2), Tensor::cat(vec![past_v, values], 2))
            }
            None => (keys, values),
        };
        if self.store {
            self.kv = Some(all.clone());
        }
        all
    }
}
