//! The attention of a sweep's position groups on plain `f32` rows (the CPU backend): every patch's
//! queries against its own new keys and values and the corrupted run's for earlier positions,
//! read straight from the projections' outputs and written as the rows the output projection
//! takes — no per-group tensors, transposes or copies.

use burn::prelude::*;
use rayon::prelude::*;

use nnsight_kernels::flex::{from_values, with_values};

/// [`groups_attention`] on the projections' outputs `[1, rows, columns]` (queries, keys and
/// values each with their first column: the three may be one tensor) when the backend is `Flex`:
/// `[1, rows kept, heads · head_dim]`. `None` on other backends.
pub(crate) fn groups_attention_flex<B: Backend>(
    (q, q_offset): (&Tensor<B, 3>, usize),
    (k, k_offset): (&Tensor<B, 3>, usize),
    (v, v_offset): (&Tensor<B, 3>, usize),
    groups: &[(usize, usize)],
    tokens: usize,
    heads: Heads,
    last_only: bool,
) -> Option<Tensor<B, 3>> {
    let mixed = with_values(q, |qs| {
        with_values(k, |ks| {
            with_values(v, |vs| {
                groups_attention(
                    Rows { values: qs, stride: q.dims()[2], offset: q_offset },
                    Rows { values: ks, stride: k.dims()[2], offset: k_offset },
                    Rows { values: vs, stride: v.dims()[2], offset: v_offset },
                    groups,
                    tokens,
                    heads,
                    last_only,
                )
            })
        })
    })
    .flatten()
    .flatten()?;
    let width = heads.heads * heads.head_dim;
    let rows = mixed.len() / width;
    from_values(mixed, [1, rows, width])
}

/// A matrix of rows `stride` values apart, its columns starting at `offset` in each row: one of
/// the query, key or value parts of a projection's output.
#[derive(Clone, Copy)]
struct Rows<'a> {
    /// The values, row-major.
    values: &'a [f32],
    /// Values between rows.
    stride: usize,
    /// The first column.
    offset: usize,
}

impl Rows<'_> {
    /// `len` values of row `row`, from column `column`.
    fn at(&self, row: usize, column: usize, len: usize) -> &[f32] {
        let start = row * self.stride + self.offset + column;
        &self.values[start..start + len]
    }
}

/// The heads of an attention layer.
#[derive(Clone, Copy)]
pub(crate) struct Heads {
    /// Query heads.
    pub(crate) heads: usize,
    /// Key/value heads (divides `heads`: grouped-query attention).
    pub(crate) kv_heads: usize,
    /// Width of one head.
    pub(crate) head_dim: usize,
    /// Factor applied to the scores.
    pub(crate) scale: f32,
    /// A query sees only keys fewer than this many positions before it (Mistral).
    pub(crate) window: Option<usize>,
}

/// The mixed values `[rows, heads · head_dim]` of the `groups` (`(position, patches)` each, in row
/// order; their rows are `patches × (tokens − position)` positions), all rows or, with
/// `last_only`, each patch's last one.
///
/// The first group is the reference runs (position 0, the clean and the corrupted prompt): rows
/// `tokens..2·tokens` are the corrupted run, whose keys and values are the past of every later
/// group before its position.
fn groups_attention(
    q: Rows<'_>,
    k: Rows<'_>,
    v: Rows<'_>,
    groups: &[(usize, usize)],
    tokens: usize,
    heads: Heads,
    last_only: bool,
) -> Vec<f32> {
    // (first row, position) of every patch.
    let mut patches = Vec::new();
    let mut row = 0;
    for &(position, count) in groups {
        for _ in 0..count {
            patches.push((row, position));
            row += tokens - position;
        }
    }
    let parts: Vec<Vec<f32>> = patches
        .par_iter()
        .map(|&(first, position)| {
            let key_row = |j: usize| if j < position { tokens + j } else { first + j - position };
            let queries = if last_only { tokens - 1..tokens } else { position..tokens };
            let mut out = Vec::with_capacity(queries.len() * heads.heads * heads.head_dim);
            for query in queries {
                one_query(q, k, v, first + query - position, query, key_row, heads, &mut out);
            }
            out
        })
        .collect();
    parts.concat()
}

/// Appends the mixed values of every head for the query in row `row` at position `query`, whose
/// keys `j ≤ query` are in rows `key_row(j)`.
#[allow(clippy::too_many_arguments)] // the three projections' rows and the query's coordinates
fn one_query(
    q: Rows<'_>,
    k: Rows<'_>,
    v: Rows<'_>,
    row: usize,
    query: usize,
    key_row: impl Fn(usize) -> usize,
    heads: Heads,
    out: &mut Vec<f32>,
) {
    let d = heads.head_dim;
    let first_key = heads.window.map_or(0, |window| (query + 1).saturating_sub(window));
    let keys = first_key..query + 1;
    let mut weights = vec![0.0f32; keys.len()];
    for h in 0..heads.heads {
        let g = h / (heads.heads / heads.kv_heads);
        let q = q.at(row, h * d, d);
        for (weight, j) in weights.iter_mut().zip(keys.clone()) {
            *weight = heads.scale * dot(q, k.at(key_row(j), g * d, d));
        }
        let max = weights.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for weight in &mut weights {
            *weight = (*weight - max).exp();
            sum += *weight;
        }
        let start = out.len();
        out.resize(start + d, 0.0);
        let mixed = &mut out[start..];
        for (weight, j) in weights.iter().zip(keys.clone()) {
            let p = weight / sum;
            for (m, value) in mixed.iter_mut().zip(v.at(key_row(j), g * d, d)) {
                *m += p * value;
            }
        }
    }
}

/// `a · b`, in eight partial sums (so that it vectorizes).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f32>() + tail
}
