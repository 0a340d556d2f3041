//! The table of kept blocks: which weight tensors have GGUF blocks, keyed by the tensor's
//! storage.
//!
//! Each entry holds a handle to the weight's storage: as long as the table holds it, burn cannot
//! change that storage in place (a write copies it first), so a weight changed after loading is a
//! different storage and falls back to the `f32` path. The [`KeptBlocks`] guard removes its
//! entries when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use burn_flex::FlexTensor;

use super::BlockMatrix;

/// Where a kept weight is used: a `Linear` weight is stored `[in, out]` (the blocks' transpose),
/// a language-model head `[out, in]` (as the blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// `[in, out]`: the product is `x · w`.
    InOut,
    /// `[out, in]`: the product is `x · wᵀ`.
    OutIn,
}

struct Entry {
    /// A handle to the weight's storage: keeps burn from writing to it in place.
    weight: FlexTensor,
    stored: Stored,
    blocks: Arc<BlockMatrix>,
}

fn table() -> &'static Mutex<HashMap<usize, Entry>> {
    static TABLE: OnceLock<Mutex<HashMap<usize, Entry>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

/// The table's key of `tensor`: the address of its storage.
fn key(tensor: &FlexTensor) -> usize {
    Arc::as_ptr(&tensor.data_arc()) as usize
}

/// Keeps `blocks` for `weight` (stored as `stored` says) until the returned key is released.
pub(crate) fn keep(weight: &FlexTensor, stored: Stored, blocks: BlockMatrix) -> Option<usize> {
    let shape = weight.layout().shape();
    let &[a, b] = shape.as_slice() else { return None };
    let (out, input) = if stored == Stored::InOut { (b, a) } else { (a, b) };
    if (blocks.rows, blocks.cols) != (out, input) {
        return None;
    }
    let entry = Entry { weight: weight.clone(), stored, blocks: Arc::new(blocks) };
    let key = key(weight);
    table().lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(key, entry);
    Some(key)
}

/// The blocks kept for `weight` used as `stored`, if `weight` is the kept tensor itself (same
/// storage, same layout).
pub(crate) fn kept(weight: &FlexTensor, stored: Stored) -> Option<Arc<BlockMatrix>> {
    let table = table().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let entry = table.get(&key(weight))?;
    (entry.stored == stored && entry.weight.layout() == weight.layout()).then(|| entry.blocks.clone())
}

/// The GGUF blocks kept for a model's weights: products with few rows read those weights from
/// their blocks (see [`crate::matmul`]), as long as the weight is the one
/// loaded (a weight changed since is read from its `f32` values). Dropping it releases them.
#[derive(Debug, Default)]
pub struct KeptBlocks {
    keys: Vec<usize>,
}

impl KeptBlocks {
    /// Adds a key returned by [`keep_for`](crate::matmul::keep_for).
    pub fn push(&mut self, key: usize) {
        self.keys.push(key);
    }

    /// Number of weights kept.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no weight is kept.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl Drop for KeptBlocks {
    fn drop(&mut self) {
        let mut table = table().lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for key in &self.keys {
            table.remove(key);
        }
    }
}
