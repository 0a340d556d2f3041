//! The models: ordinary burn code plus `Inspectable` and `#[inspect]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::nn::{Gelu, LayerNorm, LayerNormConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use nnsight::HookPoint;
use nnsight::prelude::*;

/// A stack of linear layers with a shared activation, called once per layer, and a counter of
/// forward passes.
#[derive(Module, Debug, Inspectable)]
pub struct Mlp<B: Backend> {
    pub layers: Vec<Linear<B>>,
    pub act: Relu,
    pub head: Linear<B>,
    pub width: usize,
    #[module(skip)]
    pub calls: Arc<AtomicUsize>,
}

#[inspect]
impl<B: Backend> Mlp<B> {
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut h = x;
        for layer in &self.layers {
            h = self.act.forward(layer.forward(h));
        }
        self.head.forward(h)
    }
}

impl<B: Backend> Mlp<B> {
    pub fn new(layers: usize, width: usize, device: &B::Device) -> Self {
        Mlp {
            layers: (0..layers).map(|_| LinearConfig::new(width, width).init(device)).collect(),
            act: Relu::new(),
            head: LinearConfig::new(width, 2).init(device),
            width,
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }
}

/// Single-head causal self-attention whose probabilities pass a hook point.
#[derive(Module, Debug, Inspectable)]
pub struct Attention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    pub pattern: HookPoint,
}

#[inspect]
impl<B: Backend> Attention<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [_, seq, d] = x.dims();
        let q = self.q_proj.forward(x.clone());
        let k = self.k_proj.forward(x.clone());
        let v = self.v_proj.forward(x);
        let scores = q.matmul(k.swap_dims(1, 2)) / (d as f64).sqrt();
        let mask = Tensor::<B, 2, Bool>::tril_mask([seq, seq], 0, &scores.device()).unsqueeze::<3>();
        let probs = self.pattern.forward(softmax(scores.mask_fill(mask, -1e9), 2));
        self.o_proj.forward(probs.matmul(v))
    }
}

/// The MLP of a block: `c_proj(act(c_fc(x)))`.
#[derive(Module, Debug, Inspectable)]
pub struct BlockMlp<B: Backend> {
    pub c_fc: Linear<B>,
    pub act: Gelu,
    pub c_proj: Linear<B>,
}

#[inspect]
impl<B: Backend> BlockMlp<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.c_proj.forward(self.act.forward(self.c_fc.forward(x)))
    }
}

/// A pre-norm transformer block; returns the residual stream.
#[derive(Module, Debug, Inspectable)]
pub struct Block<B: Backend> {
    pub ln_1: LayerNorm<B>,
    pub attn: Attention<B>,
    pub ln_2: LayerNorm<B>,
    pub mlp: BlockMlp<B>,
}

#[inspect]
impl<B: Backend> Block<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = x.clone() + self.attn.forward(self.ln_1.forward(x));
        h.clone() + self.mlp.forward(self.ln_2.forward(h))
    }
}

/// A transformer-like model: blocks over `Vec<Block>`, an optional final norm, a projection
/// applied twice (two occurrences of one module), and a head.
#[derive(Module, Debug, Inspectable)]
pub struct Transformer<B: Backend> {
    pub blocks: Vec<Block<B>>,
    pub ln_f: Option<LayerNorm<B>>,
    pub extra: Option<LayerNorm<B>>,
    pub proj: Linear<B>,
    pub head: Linear<B>,
}

#[inspect]
impl<B: Backend> Transformer<B> {
    // The `.iter().enumerate()` loop is the form under test: its element binding is a site.
    #[allow(clippy::unused_enumerate_index)]
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let mut h = x;
        for (_layer, block) in self.blocks.iter().enumerate() {
            h = block.forward(h);
        }
        if let Some(norm) = &self.ln_f {
            h = norm.forward(h);
        }
        let h = self.proj.forward(self.proj.forward(h));
        self.head.forward(h)
    }
}

impl<B: Backend> Transformer<B> {
    pub const D: usize = 8;

    pub fn new(blocks: usize, device: &B::Device) -> Self {
        let d = Self::D;
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        Transformer {
            blocks: (0..blocks)
                .map(|_| Block {
                    ln_1: LayerNormConfig::new(d).init(device),
                    attn: Attention {
                        q_proj: linear(d, d),
                        k_proj: linear(d, d),
                        v_proj: linear(d, d),
                        o_proj: linear(d, d),
                        pattern: HookPoint::new(),
                    },
                    ln_2: LayerNormConfig::new(d).init(device),
                    mlp: BlockMlp { c_fc: linear(d, 4 * d), act: Gelu::new(), c_proj: linear(4 * d, d) },
                })
                .collect(),
            ln_f: Some(LayerNormConfig::new(d).init(device)),
            extra: None,
            proj: linear(d, d),
            head: linear(d, 3),
        }
    }

    /// The layers after block `from`, run by hand on `h` (no trace involved).
    pub fn finish_from(&self, from: usize, mut h: Tensor<B, 3>) -> Tensor<B, 3> {
        for block in &self.blocks[from..] {
            h = block.forward(h);
        }
        self.tail(h)
    }

    /// `ln_f`, `proj` twice and `head`, by hand.
    pub fn tail(&self, h: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self.ln_f.as_ref().expect("ln_f is set").forward(h);
        self.head.forward(self.proj.forward(self.proj.forward(h)))
    }
}

/// A layer that asks the trace whether its hook point is watched (`nnsight::unwatched!`): only
/// then does the value pass the hook; otherwise it takes the "fused" branch (the same arithmetic
/// here) and counts it.
#[derive(Module, Debug, Inspectable)]
pub struct Fusing<B: Backend> {
    pub pre: Linear<B>,
    pub hook: HookPoint,
    #[module(skip)]
    pub fused: Arc<AtomicUsize>,
}

#[inspect]
impl<B: Backend> Fusing<B> {
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let h = self.pre.forward(x);
        if nnsight::unwatched!(self.hook) {
            self.fused.fetch_add(1, Ordering::Relaxed);
            h * 2.0
        } else {
            self.hook.forward(h) * 2.0
        }
    }
}

/// [`Fusing`] called twice (its hook has two occurrences per pass), then a head.
#[derive(Module, Debug, Inspectable)]
pub struct FusingTwice<B: Backend> {
    pub layer: Fusing<B>,
    pub head: Linear<B>,
}

#[inspect]
impl<B: Backend> FusingTwice<B> {
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.head.forward(self.layer.forward(self.layer.forward(x)))
    }
}

impl<B: Backend> FusingTwice<B> {
    pub fn new(width: usize, device: &B::Device) -> Self {
        FusingTwice {
            layer: Fusing {
                pre: LinearConfig::new(width, width).init(device),
                hook: HookPoint::new(),
                fused: Arc::new(AtomicUsize::new(0)),
            },
            head: LinearConfig::new(width, width).init(device),
        }
    }

    /// How many calls took the fused branch since the last call of this method.
    pub fn take_fused(&self) -> usize {
        self.layer.fused.swap(0, Ordering::Relaxed)
    }
}
