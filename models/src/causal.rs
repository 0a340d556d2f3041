//! What a causal language model derives from an attention mask: position ids and the mask of
//! key positions each query may not attend to. Shared by the decoder-only models.

use burn::prelude::*;
use burn::tensor::DType;

/// The score a masked key gets before the softmax: the most negative finite value of the scores'
/// element type (transformers' `torch.finfo(dtype).min`), so that a query with no key to attend
/// to (padding) stays finite in `f16` and `bf16` too (`f32::MIN` rounds to −∞ in both).
pub fn masked_score(dtype: DType) -> f32 {
    match dtype {
        DType::F16 => half::f16::MIN.to_f32(),
        DType::BF16 => half::bf16::MIN.to_f32(),
        _ => f32::MIN,
    }
}

/// Position ids and attention mask of one forward pass of a causal LM.
#[derive(Debug, Clone)]
pub struct CausalMask<B: Backend> {
    /// `[batch, query_len]`: each token's position counted over the real (unpadded) tokens, so a
    /// left-padded prompt gets the same positions as the prompt alone. Padding gets position 0.
    pub position_ids: Tensor<B, 2, Int>,
    /// `[batch, 1, query_len, key_len]`, `true` where the query may **not** attend to the key:
    /// later positions (causality) and padding.
    pub masked: Tensor<B, 4, Bool>,
}

impl<B: Backend> CausalMask<B> {
    /// Derives position ids and mask from `attention_mask` (`[batch, key_len]`, 1 for a token,
    /// 0 for padding), covering the cached past and the `query_len` new tokens at its end.
    ///
    /// # Panics
    /// If `query_len` exceeds the mask's length (a bug of the caller, not of the user's input).
    pub fn new(attention_mask: &Tensor<B, 2, Int>, query_len: usize) -> Self {
        let [batch, key_len] = attention_mask.dims();
        assert!(query_len <= key_len, "the attention mask must cover the query");
        let past = key_len - query_len;
        let device = attention_mask.device();
        let mask: Vec<i64> = attention_mask.to_data().iter::<i64>().collect();
        let mut positions = Vec::with_capacity(batch * query_len);
        let mut masked = Vec::with_capacity(batch * query_len * key_len);
        for row in mask.chunks_exact(key_len) {
            let mut seen = 0i64;
            let counts: Vec<i64> = row
                .iter()
                .map(|&m| {
                    seen += i64::from(m != 0);
                    (seen - 1).max(0)
                })
                .collect();
            positions.extend_from_slice(&counts[past..]);
            for i in 0..query_len {
                masked.extend((0..key_len).map(|j| j > past + i || row[j] == 0));
            }
        }
        CausalMask {
            position_ids: Tensor::from_data(TensorData::new(positions, [batch, query_len]), &device),
            masked: Tensor::from_data(TensorData::new(masked, [batch, 1, query_len, key_len]), &device),
        }
    }
}

/// `masked` (`[batch, 1, queries, keys]`, the queries being the last keys) with the keys outside
/// a sliding window of `window` masked too, as transformers' `sliding_window_overlay`: query `q`
/// sees key `k` only if `q - k < window`, counted over the columns of the batch (so each token
/// sees itself and the `window - 1` columns before it).
pub fn sliding_window<B: Backend>(masked: Tensor<B, 4, Bool>, window: usize) -> Tensor<B, 4, Bool> {
    let [batch, _, queries, keys] = masked.dims();
    if window >= keys {
        return masked;
    }
    let past = keys - queries;
    let outside: Vec<bool> =
        (0..queries).flat_map(|i| (0..keys).map(move |j| j + window <= past + i)).collect();
    let outside =
        Tensor::<B, 4, Bool>::from_data(TensorData::new(outside, [1, 1, queries, keys]), &masked.device());
    masked.bool_or(outside.expand([batch, 1, queries, keys]))
}
