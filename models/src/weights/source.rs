//! A source of tensors by name (a checkpoint, or a random initialisation), and [`Scope`]: the
//! same source under a name prefix, so a loader reads a block's tensors as `vb.pp("ln_1")`
//! rather than formatting full names (candle's `VarBuilder::pp`).

use std::fmt::Display;

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

use nnsight::Result;

/// What a tensor is, for a random initialisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A weight matrix or embedding: normal with the initialisation's standard deviation.
    Weight,
    /// A norm's scale: ones.
    NormScale,
    /// A bias (or a norm's shift): zeros.
    Bias,
}

/// Where a model's tensors come from.
pub(crate) trait TensorSource<B: Backend> {
    /// Tensor `name` (the full Hugging Face name), of `shape` in the checkpoint's layout.
    fn get<const D: usize>(&self, name: &str, shape: [usize; D], kind: Kind) -> Result<Tensor<B, D>>;

    /// The `nn.Linear` weight `name`, stored `[d_out, d_in]`, in burn's layout `[d_in, d_out]`.
    fn linear_weight(&self, name: &str, d_in: usize, d_out: usize) -> Result<Tensor<B, 2>> {
        Ok(self.get(name, [d_out, d_in], Kind::Weight)?.transpose())
    }
}

/// A random initialisation: weights normal with standard deviation `std`, norm scales 1, biases
/// 0 (as transformers initialises GPT-2 and Llama).
pub(crate) struct Random<B: Backend> {
    pub(crate) std: f64,
    pub(crate) device: B::Device,
}

impl<B: Backend> TensorSource<B> for Random<B> {
    fn get<const D: usize>(&self, _: &str, shape: [usize; D], kind: Kind) -> Result<Tensor<B, D>> {
        Ok(match kind {
            Kind::Weight => Tensor::random(shape, Distribution::Normal(0.0, self.std), &self.device),
            Kind::NormScale => Tensor::ones(shape, &self.device),
            Kind::Bias => Tensor::zeros(shape, &self.device),
        })
    }

    fn linear_weight(&self, name: &str, d_in: usize, d_out: usize) -> Result<Tensor<B, 2>> {
        self.get(name, [d_in, d_out], Kind::Weight)
    }
}

/// A source seen under a name prefix: `scope.pp("h").pp(3).get("ln_1.weight", ..)` reads
/// `h.3.ln_1.weight`.
pub(crate) struct Scope<'s, S> {
    source: &'s S,
    prefix: String,
}

impl<'s, S> Scope<'s, S> {
    /// The whole source (no prefix).
    pub(crate) fn new(source: &'s S) -> Self {
        Scope { source, prefix: String::new() }
    }

    /// The same source under `self`'s prefix followed by `name`.
    pub(crate) fn pp(&self, name: impl Display) -> Self {
        let prefix =
            if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        Scope { source: self.source, prefix }
    }

    /// The full name of `leaf` in this scope.
    pub(crate) fn name(&self, leaf: &str) -> String {
        if self.prefix.is_empty() { leaf.to_owned() } else { format!("{}.{leaf}", self.prefix) }
    }

    /// Tensor `leaf` of this scope (see [`TensorSource::get`]).
    pub(crate) fn get<B: Backend, const D: usize>(
        &self,
        leaf: &str,
        shape: [usize; D],
        kind: Kind,
    ) -> Result<Tensor<B, D>>
    where
        S: TensorSource<B>,
    {
        self.source.get(&self.name(leaf), shape, kind)
    }

    /// The `nn.Linear` weight `leaf` of this scope (see [`TensorSource::linear_weight`]).
    pub(crate) fn linear_weight<B: Backend>(
        &self,
        leaf: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Tensor<B, 2>>
    where
        S: TensorSource<B>,
    {
        self.source.linear_weight(&self.name(leaf), d_in, d_out)
    }
}

/// An embedding module holding `weight` (`[entries, width]`).
pub(crate) fn embedding<B: Backend>(weight: Tensor<B, 2>) -> Embedding<B> {
    let [n, d] = weight.dims();
    let mut embedding = EmbeddingConfig::new(n, d).init(&weight.device());
    embedding.weight = Param::from_tensor(weight);
    embedding
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;

    /// A source that returns each tensor's name length as its one value, and records the names.
    struct Names(std::cell::RefCell<Vec<String>>);

    impl TensorSource<Flex> for Names {
        fn get<const D: usize>(&self, name: &str, shape: [usize; D], _: Kind) -> Result<Tensor<Flex, D>> {
            self.0.borrow_mut().push(name.to_owned());
            Ok(Tensor::zeros(shape, &Default::default()))
        }
    }

    #[test]
    fn scopes_prefix_the_names_they_read() {
        let source = Names(Default::default());
        let root = Scope::new(&source);
        let block = root.pp("transformer").pp("h").pp(3);
        let _: Tensor<Flex, 1> = root.get("wte.weight", [2], Kind::Weight).unwrap();
        let _: Tensor<Flex, 1> = block.pp("ln_1").get("weight", [2], Kind::NormScale).unwrap();
        let w: Tensor<Flex, 2> = block.linear_weight("attn.weight", 2, 3).unwrap();
        assert_eq!(w.dims(), [2, 3], "read [out, in], given as [in, out]");
        assert_eq!(
            *source.0.borrow(),
            ["wte.weight", "transformer.h.3.ln_1.weight", "transformer.h.3.attn.weight"]
        );
    }
}
