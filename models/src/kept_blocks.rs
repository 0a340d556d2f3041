//! Giving a decoder's projections and head the GGUF blocks of their weights (Q4_0, Q4_1, Q8_0
//! tensors), so that products with few rows — decoding steps, short prompts — stream the
//! quantized blocks instead of the `f32` weights ([`nnsight_kernels::matmul`]). Shared by the
//! families that load from GGUF files (Llama, Gemma 3), whose layers have the same seven
//! projections.

use burn::prelude::*;
use nnsight::Result;
use nnsight_kernels::matmul::{BlockMatrix, Stored, WeightBlocks};

use crate::gguf::TensorBlocks;
use crate::lm_head::LmHead;
use crate::projection::Projection;

/// The seven projections of a gated-MLP decoder layer `i`, under Hugging Face's names.
pub(crate) fn layer_projections<'a, B: Backend>(
    i: usize,
    attention: [&'a mut Projection<B>; 4],
    mlp: [&'a mut Projection<B>; 3],
) -> impl Iterator<Item = (String, &'a mut Projection<B>)> {
    let names = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
        .into_iter()
        .chain(["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]);
    names
        .zip(attention.into_iter().chain(mlp))
        .map(move |(name, p)| (format!("model.layers.{i}.{name}.weight"), p))
}

/// Gives each of `projections` (Hugging Face weight name, projection) and `head` (the name of
/// the tensor it reads: `lm_head.weight`, or the token embedding's when tied) the blocks
/// `blocks(name)` finds for it, where its block type has a few-rows kernel.
///
/// # Errors
/// The errors of `blocks` (reading the file).
pub(crate) fn keep_blocks<'a, B: Backend + 'a>(
    projections: impl IntoIterator<Item = (String, &'a mut Projection<B>)>,
    head: (&str, &mut LmHead<B>),
    blocks: impl Fn(&str) -> Result<Option<TensorBlocks>>,
) -> Result<()> {
    let weight_blocks = |name: &str, weight: Tensor<B, 2>, stored: Stored| -> Result<Option<WeightBlocks>> {
        Ok(blocks(name)?.and_then(|t| {
            BlockMatrix::new(t.ty, t.rows, t.cols, t.bytes)
                .and_then(|b| WeightBlocks::new(&weight, stored, b))
        }))
    };
    for (name, projection) in projections {
        if let Some(b) = weight_blocks(&name, projection.weight.val(), Stored::InOut)? {
            projection.keep_blocks(b);
        }
    }
    let (name, head) = head;
    if let Some(b) = weight_blocks(name, head.weight.val(), Stored::OutIn)? {
        head.keep_blocks(b);
    }
    Ok(())
}
