//! Llama tensors of a GGUF file under Hugging Face names and layout: llama.cpp's tensor names
//! mapped to `LlamaForCausalLM`'s parameter names, and llama.cpp's permutation of the q/k
//! projection rows undone.
//!
//! llama.cpp's `convert_hf_to_gguf.py` (`LlamaModel.permute`) reorders the rows of `q_proj` and
//! `k_proj` within each head from Hugging Face's rotary layout (first half of the head dimension,
//! then second half) to interleaved pairs; Hugging Face's GGUF loader
//! (`transformers/modeling_gguf_pytorch_utils.py`, `LlamaTensorProcessor`) reverses it, using
//! `llama.attention.head_count` for q and `llama.attention.head_count_kv` for k. So do we.

use nnsight::{Error, Result};

use crate::gguf::{GgufFile, NameMap, TensorBlocks};

/// llama.cpp's names of a Llama's tensors and Hugging Face's.
const NAMES: NameMap = NameMap {
    layer: &[
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
        ("attn_norm", "input_layernorm"),
        ("ffn_norm", "post_attention_layernorm"),
    ],
    global: &[("token_embd", "model.embed_tokens"), ("output_norm", "model.norm"), ("output", "lm_head")],
};

/// The Hugging Face Llama name of llama.cpp tensor `gguf_name`: `blk.3.attn_q.weight` →
/// `model.layers.3.self_attn.q_proj.weight`, `token_embd.weight` → `model.embed_tokens.weight`,
/// `output.weight` → `lm_head.weight`, ...; `None` for a name outside the Llama set (such as
/// `rope_freqs.weight`).
///
/// # Examples
///
/// ```
/// use nnsight_models::llama::hf_name;
///
/// assert_eq!(hf_name("blk.0.ffn_norm.weight").as_deref(), Some("model.layers.0.post_attention_layernorm.weight"));
/// assert_eq!(hf_name("rope_freqs.weight"), None);
/// ```
pub fn hf_name(gguf_name: &str) -> Option<String> {
    NAMES.hf_name(gguf_name)
}

/// The llama.cpp name of Hugging Face Llama parameter `hf_name`: the inverse of [`hf_name`].
///
/// # Examples
///
/// ```
/// use nnsight_models::llama::gguf_name;
///
/// assert_eq!(gguf_name("model.layers.12.self_attn.o_proj.weight").as_deref(), Some("blk.12.attn_output.weight"));
/// assert_eq!(gguf_name("model.norm.weight").as_deref(), Some("output_norm.weight"));
/// ```
pub fn gguf_name(hf_name: &str) -> Option<String> {
    NAMES.gguf_name(hf_name)
}

/// Undoes llama.cpp's rotary permutation of the rows of a q or k projection (weight or bias).
///
/// `values` is row-major with `rows` rows (the first dimension of the Hugging Face shape, e.g.
/// `n_head * head_dim`) and `n_head` is the number of heads the rows are split into: the query
/// heads for `q_proj`, the key/value heads for `k_proj`. Within each head, llama.cpp stored row
/// `2 i + t` (`t` = 0, 1) what Hugging Face has at row `t * head_dim / 2 + i`.
///
/// Returns `None` when `rows` is not a multiple of `2 * n_head` or `values.len()` of `rows`.
///
/// # Examples
///
/// ```
/// use nnsight_models::llama::unpermute_qk;
///
/// // one head of dimension 4, one column: llama.cpp stores rows [0, 2, 1, 3]
/// assert_eq!(unpermute_qk(&[0.0, 2.0, 1.0, 3.0], 4, 1), Some(vec![0.0, 1.0, 2.0, 3.0]));
/// ```
pub fn unpermute_qk(values: &[f32], rows: usize, n_head: usize) -> Option<Vec<f32>> {
    let pairs_per_head = rows.checked_div(n_head.checked_mul(2)?)?; // head_dim / 2
    if pairs_per_head * 2 * n_head != rows || rows == 0 || !values.len().is_multiple_of(rows) {
        return None;
    }
    let cols = values.len() / rows;
    let head_rows = 2 * pairs_per_head;
    let mut out = Vec::with_capacity(values.len());
    for head in 0..n_head {
        for t in 0..2 {
            for i in 0..pairs_per_head {
                let from = (head * head_rows + 2 * i + t) * cols;
                out.extend_from_slice(values.get(from..from + cols)?);
            }
        }
    }
    Some(out)
}

impl GgufFile {
    /// Parameter `hf_name` of a Llama model (Hugging Face's name, e.g.
    /// `model.layers.0.self_attn.q_proj.weight`) as `f32` values, with its Hugging Face shape and
    /// layout: read from the llama.cpp tensor [`gguf_name`] gives, dequantized, and for `q_proj`
    /// and `k_proj` with llama.cpp's row permutation undone (see [`unpermute_qk`]) using
    /// `llama.attention.head_count` and `llama.attention.head_count_kv` (which defaults to the
    /// former).
    ///
    /// A file whose output projection is tied to the embedding has no `output.weight`: asking for
    /// `lm_head.weight` is then an [`Error::MissingWeight`], and the caller ties it.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] when `general.architecture` is not `llama`, or a head count is missing or
    /// malformed; [`Error::MissingWeight`] when the name is not a Llama parameter or the file
    /// lacks its tensor; [`Error::BadWeight`] when a q/k tensor's rows do not split into the
    /// heads; the errors of [`tensor_f32`](Self::tensor_f32).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use nnsight_models::gguf::GgufFile;
    ///
    /// let file = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
    /// let (shape, q) = file.hf_tensor_f32("model.layers.0.self_attn.q_proj.weight")?;
    /// assert_eq!(shape, [576, 576]);
    /// # Ok::<(), nnsight::Error>(())
    /// ```
    pub fn hf_tensor_f32(&self, hf_name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let architecture = self.get_str("general.architecture")?;
        if architecture != Some("llama") {
            return Err(self.load_error(format!(
                "reading Hugging Face Llama tensors needs `general.architecture` = llama; this file's is {}",
                architecture.map_or_else(|| "not set".to_owned(), |a| format!("`{a}`"))
            )));
        }
        let name = gguf_name(hf_name).ok_or_else(|| Error::MissingWeight {
            name: hf_name.to_owned(),
            file: format!("{} (not a Llama parameter name)", self.path().display()),
        })?;
        let (shape, values) = self.tensor_f32(&name)?;
        let Some(n_head) = self.qk_heads(&name, &shape)? else { return Ok((shape, values)) };
        let rows = shape.first().copied().unwrap_or(0);
        let values = unpermute_qk(&values, rows, n_head).expect("qk_heads checked the split");
        Ok((shape, values))
    }

    /// Hugging Face Llama parameter `hf_name` as the raw blocks of its GGUF tensor, rows in
    /// Hugging Face's order (q and k un-permuted); `None` when it is not a 2-D tensor of a
    /// 32-value block type (Q4_0, Q4_1, Q8_0).
    ///
    /// # Errors
    /// As [`hf_tensor_f32`](Self::hf_tensor_f32).
    pub(crate) fn hf_tensor_blocks(&self, hf_name: &str) -> Result<Option<TensorBlocks>> {
        let Some(name) = gguf_name(hf_name) else { return Ok(None) };
        let Some(blocks) = self.tensor_blocks(&name)? else { return Ok(None) };
        let Some(n_head) = self.qk_heads(&name, &[blocks.rows, blocks.cols])? else {
            return Ok(Some(blocks));
        };
        // llama.cpp permuted whole rows: put the block rows back in the order of the values'.
        let order: Vec<f32> = (0..blocks.rows).map(|r| r as f32).collect();
        let order = unpermute_qk(&order, blocks.rows, n_head).expect("qk_heads checked the split");
        let row_bytes = blocks.row_bytes();
        let rows =
            order.iter().flat_map(|&r| &blocks.bytes[r as usize * row_bytes..(r as usize + 1) * row_bytes]);
        Ok(Some(TensorBlocks { bytes: rows.copied().collect(), ..blocks }))
    }

    /// For llama.cpp's q and k tensors (`name`, of `shape`), the head count their rows were
    /// permuted with; `None` for other tensors.
    fn qk_heads(&self, name: &str, shape: &[usize]) -> Result<Option<usize>> {
        let is_q = name.contains(".attn_q.");
        if !is_q && !name.contains(".attn_k.") {
            return Ok(None);
        }
        let n_head = self.get_u32("llama.attention.head_count")?.ok_or_else(|| {
            self.load_error("it has no `llama.attention.head_count`, needed to un-permute q and k".to_owned())
        })?;
        let (n_head, heads_key) = if is_q {
            (n_head, "llama.attention.head_count")
        } else {
            let key = "llama.attention.head_count_kv";
            (self.get_u32(key)?.unwrap_or(n_head), key)
        };
        let rows = shape.first().copied().unwrap_or(0);
        let n_head = usize::try_from(n_head).unwrap_or(0);
        let splits = n_head > 0 && rows > 0 && rows.is_multiple_of(2 * n_head);
        if !splits {
            return Err(Error::BadWeight {
                name: name.to_owned(),
                file: self.path().display().to_string(),
                problem: format!(
                    "its {rows} rows (shape {shape:?}) do not split into {n_head} heads (`{heads_key}`)"
                ),
            });
        }
        Ok(Some(n_head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways() {
        for (gguf, hf) in [
            ("token_embd.weight", "model.embed_tokens.weight"),
            ("output_norm.weight", "model.norm.weight"),
            ("output.weight", "lm_head.weight"),
            ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),
            ("blk.7.attn_k.bias", "model.layers.7.self_attn.k_proj.bias"),
            ("blk.29.ffn_down.weight", "model.layers.29.mlp.down_proj.weight"),
        ] {
            assert_eq!(hf_name(gguf).as_deref(), Some(hf), "{gguf}");
            assert_eq!(gguf_name(hf).as_deref(), Some(gguf), "{hf}");
        }
        for bad in [
            "blk.01.attn_q.weight",
            "blk.x.attn_q.weight",
            "blk.0.attn_qq.weight",
            "output",
            "blk.0.attn_q.scale",
        ] {
            assert_eq!(hf_name(bad), None, "{bad}");
        }
        assert_eq!(gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"), None);
    }

    #[test]
    fn unpermute_rejects_bad_shapes() {
        assert_eq!(unpermute_qk(&[0.0; 6], 3, 1), None);
        assert_eq!(unpermute_qk(&[0.0; 8], 4, 0), None);
        assert_eq!(unpermute_qk(&[0.0; 7], 4, 1), None);
        assert_eq!(unpermute_qk(&[], 0, 1), None);
    }
}
