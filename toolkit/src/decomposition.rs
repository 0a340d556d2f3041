//! The residual stream as a sum of what each part wrote into it, and direct logit attribution:
//! how much each part's write, through the final norm (its scale fixed by the final residual)
//! and the unembedding, adds to a token's logit — as TransformerLens' `decompose_resid`,
//! `stack_head_results` and `logit_attrs` define them. Written once for every
//! [`Standardized`] model.
//!
//! ```no_run
//! # use burn::backend::Flex;
//! # use nnsight_models::{LanguageModel, gpt2::Gpt2LMHeadModel};
//! # use nnsight_toolkit::decomposition::ResidualStack;
//! # fn main() -> nnsight::Result<()> {
//! # let lm = LanguageModel::<Flex, Gpt2LMHeadModel<Flex>>::from_pretrained("openai-community/gpt2", &Default::default())?;
//! let (paris, rome) = (lm.encode(" Paris")?[0], lm.encode(" Rome")?[0]);
//! let stack = ResidualStack::heads(&lm, "The Eiffel Tower is in the city of")?;
//! let attrs = stack.logit_attrs(&lm, paris, Some(rome), -1)?;
//! for (label, attr) in stack.labels.iter().zip(attrs) {
//!     println!("{label:>12} {attr:+.3}");
//! }
//! # Ok(())
//! # }
//! ```

use burn::prelude::*;
use nnsight::{DynEnvoy, Error, Positions, Result};
use nnsight_models::vocabulary::{Location, Standardized};
use nnsight_models::{LanguageModel, Prompts};

/// The parts of one prompt's final residual stream (`[1, tokens, hidden]` each) with their
/// labels, in TransformerLens' names: `embed` (and `pos_embed` where positions are embedded
/// apart), then per layer `{i}_attn_out` and `{i}_mlp_out` — or, by head, `L{i}H{h}` and
/// `{i}_attn_bias` — or `{i}_layer` for a layer without attention and MLP (Mamba).
#[derive(Clone, Debug)]
pub struct ResidualStack<B: Backend> {
    /// Each component's label.
    pub labels: Vec<String>,
    /// Each component, `[1, tokens, hidden]`.
    pub components: Vec<Tensor<B, 3>>,
    /// The last layer's output (their sum, up to rounding), `[1, tokens, hidden]`.
    pub final_residual: Tensor<B, 3>,
}

/// What the decomposition reads, in forward order.
struct Reads {
    embed: Location,
    first_input: Location,
    layers: Vec<LayerReads>,
}

struct LayerReads {
    input: Location,
    heads: Option<Location>,
    attention: Option<Location>,
    mlp: Option<Location>,
    output: Location,
}

impl<B: Backend> ResidualStack<B> {
    /// The stack of one prompt by layer: embeddings, each layer's attention and MLP outputs.
    ///
    /// # Errors
    /// The errors of the prompt and of the trace.
    pub fn layers<M: Standardized<B>>(lm: &LanguageModel<B, M>, prompt: impl Into<Prompts>) -> Result<Self> {
        Self::read(lm, prompt.into(), false)
    }

    /// The stack of one prompt by attention head: embeddings, each head's output through the
    /// attention's output projection, the projection's bias, and each MLP's output.
    ///
    /// # Errors
    /// [`Error::Input`] for a family whose attention output is not linear in its heads (Gemma 3
    /// normalises it) or that has none (Mamba); as [`layers`](Self::layers).
    pub fn heads<M: Standardized<B>>(lm: &LanguageModel<B, M>, prompt: impl Into<Prompts>) -> Result<Self> {
        Self::read(lm, prompt.into(), true)
    }

    fn read<M: Standardized<B>>(lm: &LanguageModel<B, M>, prompt: Prompts, by_head: bool) -> Result<Self> {
        let words = lm.model().vocabulary();
        let mut projections = Vec::new();
        if by_head {
            for layer in 0..words.num_layers {
                projections.push(lm.model().output_projection(layer).ok_or_else(|| Error::Input {
                    problem: format!(
                        "a {} layer's attention output is not a sum over its heads (no linear output projection)",
                        words.family
                    ),
                })?);
            }
        }
        let mut layers = Vec::with_capacity(words.num_layers);
        for i in 0..words.num_layers {
            layers.push(LayerReads {
                input: words.layer_input(i)?,
                heads: if by_head { Some(words.head_values(i)?) } else { None },
                attention: words.attention(i).ok(),
                mlp: words.mlp(i).ok(),
                output: words.layer(i)?,
            });
        }
        let reads = Reads { embed: words.embed(), first_input: words.layer_input(0)?, layers };
        type Read<B> = (Tensor<B, 3>, Tensor<B, 3>, Vec<[Option<Tensor<B, 3>>; 5]>);
        let body = async |root: DynEnvoy<'_>| -> Result<Read<B>> {
            let embed = reads.embed.read::<Tensor<B, 3>>(&root).await?;
            let first = reads.first_input.read::<Tensor<B, 3>>(&root).await?;
            let mut values = Vec::with_capacity(reads.layers.len());
            for layer in &reads.layers {
                let input = layer.input.read::<Tensor<B, 3>>(&root).await?;
                let read = async |l: &Option<Location>| match l {
                    Some(l) => l.read::<Tensor<B, 3>>(&root).await.map(Some),
                    None => Ok(None),
                };
                let heads = read(&layer.heads).await?;
                let attention = read(&layer.attention).await?;
                let mlp = read(&layer.mlp).await?;
                let output = layer.output.read::<Tensor<B, 3>>(&root).await?;
                values.push([Some(input), heads, attention, mlp, Some(output)]);
            }
            Ok((embed, first, values))
        };
        let (mut results,) = lm.tracer().invoke_inputs_dyn([(Some(prompt), body)]).run()?;
        let (embed, first, values) = results.pop().expect("one invoke");

        let mut labels = vec!["embed".to_owned()];
        let mut components = vec![embed.clone()];
        // GPT-2 adds its position embeddings to the token embeddings before the first layer.
        let positions = first.clone() - embed;
        if positions.clone().abs().max().into_scalar().elem::<f32>() > 0.0 {
            labels.push("pos_embed".to_owned());
            components.push(positions);
        }
        let mut final_residual = first;
        for (i, [input, heads, attention, mlp, output]) in values.into_iter().enumerate() {
            let (input, output) = (input.expect("read"), output.expect("read"));
            match (attention, mlp) {
                (Some(attention), Some(mlp)) => {
                    match heads {
                        Some(z) => {
                            let w = &projections[i];
                            let [_, tokens, width] = z.dims();
                            let hidden = w.dims()[1];
                            let d = width / words.num_heads;
                            let mut sum: Option<Tensor<B, 3>> = None;
                            for h in 0..words.num_heads {
                                let head = z
                                    .clone()
                                    .narrow(2, h * d, d)
                                    .matmul(w.clone().narrow(0, h * d, d).unsqueeze::<3>());
                                labels.push(format!("L{i}H{h}"));
                                sum = Some(match sum {
                                    None => head.clone(),
                                    Some(s) => s + head.clone(),
                                });
                                components.push(head.reshape([1, tokens, hidden]));
                            }
                            labels.push(format!("{i}_attn_bias"));
                            components.push(attention - sum.expect("a head at least"));
                        }
                        None => {
                            labels.push(format!("{i}_attn_out"));
                            components.push(attention);
                        }
                    }
                    labels.push(format!("{i}_mlp_out"));
                    components.push(mlp);
                }
                _ => {
                    labels.push(format!("{i}_layer"));
                    components.push(output.clone() - input);
                }
            }
            final_residual = output;
        }
        Ok(ResidualStack { labels, components, final_residual })
    }

    /// The sum of the components, `[1, tokens, hidden]` (the final residual up to rounding).
    pub fn sum(&self) -> Tensor<B, 3> {
        let mut parts = self.components.iter().cloned();
        let first = parts.next().expect("a stack has the embeddings");
        parts.fold(first, |sum, c| sum + c)
    }

    /// Direct logit attribution at `position` (negative: from the end): each component through
    /// the final norm linearised at the final residual and the unembedding, dotted with `token`'s
    /// unembedding row — minus `incorrect`'s, for a logit difference. Their sum is the token's
    /// logit less the parts no component writes (the final norm's bias and the unembedding's).
    ///
    /// # Errors
    /// [`Error::Input`] for a token outside the vocabulary or a position past either end.
    pub fn logit_attrs<M: Standardized<B>>(
        &self,
        lm: &LanguageModel<B, M>,
        token: u32,
        incorrect: Option<u32>,
        position: isize,
    ) -> Result<Vec<f32>> {
        let unembedding = lm.model().unembedding();
        let [vocab, hidden] = unembedding.dims();
        for id in std::iter::once(token).chain(incorrect) {
            if id as usize >= vocab {
                return Err(Error::Input {
                    problem: format!("token {id} is outside the vocabulary (size {vocab})"),
                });
            }
        }
        let row = |id: u32| unembedding.clone().narrow(0, id as usize, 1).reshape([hidden]);
        let direction = match incorrect {
            Some(other) => row(token) - row(other),
            None => row(token),
        };
        let norm = lm.model().linearised_final_norm(self.final_residual.clone());
        self.components
            .iter()
            .map(|c| {
                let at = norm.apply(c.clone()).at_pos(position)?.reshape([hidden]);
                Ok((at * direction.clone()).sum().into_scalar().elem::<f32>())
            })
            .collect()
    }
}
