//! Engine overhead: idle cost of instrumentation, and per-trace / per-access cost of traces.
//!
//! The model is deliberately small (12 linear layers of width 16, batch 1) so that the engine's
//! own cost is visible next to the tensor work. Figures are recorded in BENCHMARKS.md.
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use std::hint::black_box;

use burn::backend::Flex;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};
use nnsight::prelude::*;

type B = Flex;
const LAYERS: usize = 12;
const WIDTH: usize = 16;

/// The same model twice: once instrumented with `#[inspect]`, once plain burn code.
macro_rules! mlp {
    ($name:ident $(, #[$attr:meta])?) => {
        #[derive(Module, Debug, Inspectable)]
        struct $name<B: Backend> {
            layers: Vec<Linear<B>>,
            act: Relu,
        }

        $(#[$attr])?
        impl<B: Backend> $name<B> {
            fn forward(&self, mut x: Tensor<B, 2>) -> Tensor<B, 2> {
                for layer in &self.layers {
                    x = self.act.forward(layer.forward(x));
                }
                x
            }
        }

        impl<B: Backend> $name<B> {
            fn new(device: &B::Device) -> Self {
                let layers = (0..LAYERS).map(|_| LinearConfig::new(WIDTH, WIDTH).init(device)).collect();
                $name { layers, act: Relu::new() }
            }
        }
    };
}

mlp!(Instrumented, #[inspect]);
mlp!(Plain);

fn idle(c: &mut Criterion) {
    let device = Default::default();
    let (plain, instrumented) = (Plain::<B>::new(&device), Instrumented::<B>::new(&device));
    let x = Tensor::<B, 2>::ones([1, WIDTH], &device);
    let mut group = c.benchmark_group("idle");
    group.bench_function("plain", |b| b.iter(|| black_box(plain.forward(x.clone()))));
    group.bench_function("instrumented", |b| b.iter(|| black_box(instrumented.forward(x.clone()))));
    group.finish();
}

fn traces(c: &mut Criterion) {
    let device = Default::default();
    let model = Instrumented::<B>::new(&device);
    let x = Tensor::<B, 2>::ones([1, WIDTH], &device);
    let mut group = c.benchmark_group("trace");
    group.bench_function("reads_0_no_forward", |b| {
        b.iter(|| model.trace(x.clone()).run(async |m| Ok(m.layers.len())).unwrap())
    });
    group.bench_function("reads_1_final_output", |b| {
        b.iter(|| model.trace(x.clone()).run(async |m| m.output().await).unwrap())
    });
    group.bench_function("reads_12", |b| {
        b.iter(|| {
            model
                .trace(x.clone())
                .run(async |m| {
                    let mut last = None;
                    for layer in &m.layers {
                        last = Some(layer.output::<Tensor<B, 2>>().await?);
                    }
                    Ok(last)
                })
                .unwrap()
        })
    });
    group.bench_function("replaces_12", |b| {
        b.iter(|| {
            model
                .trace(x.clone())
                .run(async |m| {
                    for layer in &m.layers {
                        layer.output::<Tensor<B, 2>>().edit(|h| h).await?;
                    }
                    Ok(())
                })
                .unwrap()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(60).measurement_time(std::time::Duration::from_secs(4));
    targets = idle, traces
}
criterion_main!(benches);
