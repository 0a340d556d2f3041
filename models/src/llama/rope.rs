//! Rotary position embeddings (RoFormer, Su et al. 2021) with the frequency scalings Llama
//! checkpoints use: none, `linear`, and Llama 3.1's `llama3`.

use burn::prelude::*;
use nnsight::prelude::*;

use super::config::{LlamaConfig, RopeScaling};
use nnsight_kernels::flex::{from_values, with_values};

/// The rotation of each position (`model.rotary_emb`, as Hugging Face's `LlamaRotaryEmbedding`):
/// its output is the `(cos, sin)` pair `[batch, tokens, head_dim]` every layer applies to its
/// queries and keys.
#[derive(Module, Debug, Inspectable)]
pub struct LlamaRotaryEmbedding<B: Backend> {
    /// Inverse frequencies `[head_dim / 2]`, already scaled (a constant, not a parameter).
    pub inv_freq: Tensor<B, 1>,
    /// Longest sequence the model is meant for (`max_position_embeddings`).
    pub max_position_embeddings: usize,
}

#[inspect]
impl<B: Backend> LlamaRotaryEmbedding<B> {
    /// `(cos, sin)`, each `[batch, tokens, head_dim]`, of the angles `position · inv_freq` at
    /// `position_ids` (`[batch, tokens]`); the two halves of the last dimension are equal.
    pub fn forward(&self, position_ids: Tensor<B, 2, Int>) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let half = self.inv_freq.dims()[0];
        let positions: Tensor<B, 3> = position_ids.float().unsqueeze_dim(2);
        let freqs = positions * self.inv_freq.clone().reshape([1, 1, half]);
        let angles = Tensor::cat(vec![freqs.clone(), freqs], 2);
        (angles.clone().cos(), angles.sin())
    }
}

impl<B: Backend> LlamaRotaryEmbedding<B> {
    /// The rotary embedding of `config` (its `rope_theta`, `head_dim` and scaling) on `device`.
    ///
    /// # Errors
    /// [`Error::Config`](nnsight::Error::Config) when the config's rotary scaling is not supported.
    pub fn new(config: &LlamaConfig, device: &B::Device) -> nnsight::Result<Self> {
        let inv_freq = config.inv_freq()?;
        let len = inv_freq.len();
        Ok(LlamaRotaryEmbedding {
            inv_freq: Tensor::from_data(TensorData::new(inv_freq, [len]), device),
            max_position_embeddings: config.max_position_embeddings,
        })
    }
}

impl LlamaConfig {
    /// The inverse frequencies `[head_dim / 2]` of the rotary embedding, scaled as the config asks,
    /// computed in `f32` step by step as transformers does (`_compute_default_rope_parameters`,
    /// `_compute_linear_scaling_rope_parameters`, `_compute_llama3_parameters`).
    ///
    /// # Errors
    /// [`Error::Config`](nnsight::Error::Config) when the rotary scaling is not supported (see
    /// [`LlamaConfig::rope_scaling`]).
    pub fn inv_freq(&self) -> nnsight::Result<Vec<f32>> {
        Ok(inv_freq(self.head_dim(), self.rope_theta(), self.rope_scaling()?))
    }
}

/// The inverse frequencies `[dim / 2]` of a rotary embedding of head width `dim` and base `base`,
/// scaled by `scaling`, computed in `f32` step by step as transformers does
/// (`_compute_default_rope_parameters`, `_compute_linear_scaling_rope_parameters`,
/// `_compute_llama3_parameters`).
pub(crate) fn inv_freq(dim: usize, base: f64, scaling: RopeScaling) -> Vec<f32> {
    // `1 / base ** (arange(0, dim, 2).float() / dim)`: the exponent in f32, the power rounded to f32.
    let plain = (0..dim).step_by(2).map(|i| {
        let exponent = i as f32 / dim as f32;
        1.0 / base.powf(f64::from(exponent)) as f32
    });
    match scaling {
        RopeScaling::Default => plain.collect(),
        RopeScaling::Linear { factor } => plain.map(|f| f / factor as f32).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => {
            let old_context = original_max_position_embeddings as f64;
            let low_freq_wavelen = (old_context / low_freq_factor) as f32;
            let high_freq_wavelen = (old_context / high_freq_factor) as f32;
            let factor = factor as f32;
            let (low, span) = (low_freq_factor as f32, (high_freq_factor - low_freq_factor) as f32);
            let two_pi = std::f64::consts::TAU as f32;
            plain
                .map(|f| {
                    let wavelen = two_pi / f;
                    if wavelen < high_freq_wavelen {
                        f
                    } else if wavelen > low_freq_wavelen {
                        f / factor
                    } else {
                        let smooth = (old_context as f32 / wavelen - low) / span;
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

/// Rotates `x` (`[batch, heads, tokens, head_dim]`) by the angles whose `cos` and `sin`
/// (`[batch, tokens, head_dim]`) [`LlamaRotaryEmbedding`] computed: `x·cos + rotate_half(x)·sin`,
/// as Hugging Face's `apply_rotary_pos_emb` (halves layout, not interleaved pairs).
pub fn apply_rotary_pos_emb<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 3>,
    sin: &Tensor<B, 3>,
) -> Tensor<B, 4> {
    let rotated = rotate_half(x.clone());
    x * cos.clone().unsqueeze_dim(1) + rotated * sin.clone().unsqueeze_dim(1)
}

/// `[x1, x2] → [-x2, x1]` over the last dimension's halves.
pub fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let half = x.dims()[3] / 2;
    let first = x.clone().narrow(3, 0, half);
    let second = x.narrow(3, half, half);
    Tensor::cat(vec![second.neg(), first], 3)
}

/// The rotation of `x` (`[1, rows, heads · head_dim]`, row `r` at position `positions[r]`) by
/// the angles of `cos` and `sin` (`[1, tokens, head_dim]`), on plain `f32` rows when the backend
/// is `Flex`: `x · cos + rotate_half(x) · sin` with the same operations in the same order as
/// [`apply_rotary_pos_emb`], so the same values. `None` on other backends.
pub(crate) fn rotate_rows<B: Backend>(
    x: &Tensor<B, 3>,
    (cos, sin): (&Tensor<B, 3>, &Tensor<B, 3>),
    positions: &[usize],
    head_dim: usize,
) -> Option<Tensor<B, 3>> {
    let [_, rows, width] = x.dims();
    let half = head_dim / 2;
    let rotated = with_values(x, |x| {
        with_values(cos, |cos| {
            with_values(sin, |sin| {
                let mut out = vec![0.0f32; x.len()];
                for ((row, out), &position) in
                    x.chunks_exact(width).zip(out.chunks_exact_mut(width)).zip(positions)
                {
                    let angles = position * head_dim..(position + 1) * head_dim;
                    let (cos, sin) = (&cos[angles.clone()], &sin[angles]);
                    for (head, out) in row.chunks_exact(head_dim).zip(out.chunks_exact_mut(head_dim)) {
                        for i in 0..half {
                            out[i] = head[i] * cos[i] + -head[i + half] * sin[i];
                            out[i + half] = head[i + half] * cos[i + half] + head[i] * sin[i + half];
                        }
                    }
                }
                out
            })
        })
    })
    .flatten()
    .flatten()?;
    from_values(rotated, [1, rows, width])
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;
    use crate::llama::config::RopeParameters;

    fn config(scaling: Option<RopeParameters>) -> LlamaConfig {
        LlamaConfig::from_json(
            r#"{"vocab_size": 8, "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1,
                "num_attention_heads": 4, "rope_theta": 500000.0, "max_position_embeddings": 2048}"#,
        )
        .map(|c| LlamaConfig { rope_scaling: scaling, ..c })
        .unwrap()
    }

    #[test]
    fn llama3_keeps_high_frequencies_divides_low_ones_and_smooths_between() {
        let plain = config(None).inv_freq().unwrap();
        let scaled = config(Some(RopeParameters {
            rope_type: Some("llama3".to_owned()),
            factor: Some(8.0),
            low_freq_factor: Some(1.0),
            high_freq_factor: Some(8.0),
            original_max_position_embeddings: Some(1024),
            ..Default::default()
        }))
        .inv_freq()
        .unwrap();
        assert_eq!(plain.len(), 8);
        assert_eq!(plain[0], 1.0);
        // Wavelengths 6.3 and 32 (< 1024 / 8) are kept; 4443 and more (> 1024) are divided by 8.
        assert_eq!(&scaled[..2], &plain[..2]);
        for i in 4..8 {
            assert_eq!(scaled[i], plain[i] / 8.0);
        }
        // 167 and 861 lie between: strictly between the kept and the divided value.
        for i in 2..4 {
            assert!(plain[i] / 8.0 < scaled[i] && scaled[i] < plain[i], "{i}: {} {}", plain[i], scaled[i]);
        }
    }

    #[test]
    fn rotating_by_zero_is_the_identity_and_rotation_keeps_the_norm() {
        let device = Default::default();
        let rope = LlamaRotaryEmbedding::<Flex>::new(&config(None), &device).unwrap();
        let positions = Tensor::<Flex, 2, Int>::from_data([[0, 1, 2, 3]], &device);
        let (cos, sin) = rope.forward(positions);
        assert_eq!(cos.dims(), [1, 4, 16]);
        let x = Tensor::<Flex, 4>::random([1, 2, 4, 16], burn::tensor::Distribution::Default, &device);
        let rotated = apply_rotary_pos_emb(x.clone(), &cos, &sin);
        let first = |t: Tensor<Flex, 4>| t.narrow(2, 0, 1).into_data();
        first(rotated.clone()).assert_approx_eq::<f32>(&first(x.clone()), Default::default());
        let norms = |t: Tensor<Flex, 4>| t.square().sum_dim(3).into_data();
        norms(rotated).assert_approx_eq::<f32>(&norms(x), Default::default());
    }

    #[test]
    fn rotating_rows_gives_the_values_of_apply_rotary_pos_emb() {
        let device = Default::default();
        let (heads, head_dim, tokens) = (3, 16, 5);
        let rotary = LlamaRotaryEmbedding::<Flex>::new(&config(None), &device).unwrap();
        let ids: Vec<i64> = (0..tokens as i64).collect();
        let (cos, sin) = rotary.forward(Tensor::from_data(TensorData::new(ids, [1, tokens]), &device));
        let values: Vec<f32> = (0..tokens * heads * head_dim).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = Tensor::<Flex, 3>::from_data(TensorData::new(values, [1, tokens, heads * head_dim]), &device);
        // Rows at positions 0..tokens in order: the same as the tensor version.
        let positions: Vec<usize> = (0..tokens).collect();
        let rows = rotate_rows(&x, (&cos, &sin), &positions, head_dim).expect("Flex");
        let heads4 = x.clone().reshape([1, tokens, heads, head_dim]).swap_dims(1, 2);
        let expected =
            apply_rotary_pos_emb(heads4, &cos, &sin).swap_dims(1, 2).reshape([1, tokens, heads * head_dim]);
        assert_eq!(rows.into_data(), expected.into_data());
        // A row at another position takes that position's angles (a fresh, contiguous row).
        let last = Tensor::<Flex, 3>::from_data(x.clone().slice([0..1, 0..1]).into_data(), &device);
        let moved = rotate_rows(&last, (&cos, &sin), &[tokens - 1], head_dim).unwrap();
        let at_end = rotate_rows(&x, (&cos, &sin), &[tokens - 1; 5], head_dim).unwrap();
        assert_eq!(moved.into_data(), at_end.slice([0..1, 0..1]).into_data());
    }
}
