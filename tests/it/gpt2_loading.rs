//! Loading errors name the problem — the directory, the file, the tensor — and bad input to a
//! loaded model is an error, never a panic.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};

use nnsight::Error;
use nnsight_models::LanguageModel;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use safetensors::SafeTensors;
use support::B;
use support::fixture::{TinyGpt2, fixture_dir, tiny_gpt2};

/// A copy of the tiny GPT-2 directory in a fresh temporary directory.
fn copy_of_fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        fs::copy(fixture_dir("tiny-gpt2").join(name), tmp.path().join(name)).unwrap();
    }
    tmp
}

fn load(dir: &Path) -> Result<TinyGpt2, Error> {
    LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default())
}

/// Rewrites `model.safetensors` in `dir` keeping the tensors `keep` accepts, changed by `edit`.
fn rewrite_weights(dir: &Path, keep: impl Fn(&str) -> bool, edit: impl Fn(&str, Vec<usize>) -> Vec<usize>) {
    rewrite_named(dir, keep, edit, str::to_owned);
}

/// [`rewrite_weights`], also renaming the tensors.
fn rewrite_named(
    dir: &Path,
    keep: impl Fn(&str) -> bool,
    edit: impl Fn(&str, Vec<usize>) -> Vec<usize>,
    rename: impl Fn(&str) -> String,
) {
    let bytes = fs::read(dir.join("model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut kept = Vec::new();
    for (name, view) in tensors.tensors() {
        if keep(&name) {
            let shape = edit(&name, view.shape().to_vec());
            let count: usize = shape.iter().product();
            kept.push((rename(&name), shape, view.data()[..count * 4].to_vec()));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = kept
        .iter()
        .map(|(name, shape, data)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

#[track_caller]
fn assert_message(result: Result<TinyGpt2, Error>, parts: &[&str]) -> Error {
    let error = result.expect_err("loading must fail");
    let message = error.to_string();
    for part in parts {
        assert!(message.contains(part), "`{message}` does not mention `{part}`");
    }
    error
}

#[test]
fn a_missing_directory_is_named() {
    let missing = PathBuf::from("/nonexistent/tiny-gpt2");
    let error = assert_message(load(&missing), &["/nonexistent/tiny-gpt2", "no such directory"]);
    assert!(matches!(error, Error::Load { .. }));
}

#[test]
fn a_directory_without_config_or_weights_says_which_file_is_missing() {
    let dir = copy_of_fixture();
    fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    assert_message(load(dir.path()), &["model.safetensors", "model.safetensors.index.json"]);
    fs::remove_file(dir.path().join("config.json")).unwrap();
    assert_message(load(dir.path()), &["config.json"]);
}

#[test]
fn a_broken_config_is_reported_with_its_path() {
    let dir = copy_of_fixture();
    fs::write(dir.path().join("config.json"), "{ \"n_embd\": 64 ").unwrap();
    assert_message(load(dir.path()), &["config.json", "not a GPT-2 config.json"]);
    fs::write(
        dir.path().join("config.json"),
        fs::read_to_string(fixture_dir("tiny-gpt2/config.json"))
            .unwrap()
            .replace("\"n_head\": 4", "\"n_head\": 5"),
    )
    .unwrap();
    assert_message(load(dir.path()), &["n_embd 64 is not a multiple of n_head 5"]);
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = copy_of_fixture();
    rewrite_weights(dir.path(), |name| name != "transformer.h.1.mlp.c_fc.weight", |_, shape| shape);
    let error = assert_message(
        load(dir.path()),
        &["`transformer.h.1.mlp.c_fc.weight`", "missing", "model.safetensors"],
    );
    assert!(matches!(error, Error::MissingWeight { .. }));
}

#[test]
fn a_misshapen_tensor_is_named_with_both_shapes() {
    let dir = copy_of_fixture();
    rewrite_weights(
        dir.path(),
        |_| true,
        |name, shape| if name == "transformer.h.0.attn.c_proj.bias" { vec![32] } else { shape },
    );
    let error = assert_message(load(dir.path()), &["`transformer.h.0.attn.c_proj.bias`", "[32]", "[64]"]);
    assert!(matches!(error, Error::BadWeight { .. }));
}

#[test]
fn a_missing_shard_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let source = fixture_dir("tiny-gpt2-sharded");
    for entry in fs::read_dir(&source).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    fs::remove_file(dir.path().join("model-00002-of-00003.safetensors")).unwrap();
    assert_message(load(dir.path()), &["model-00002-of-00003.safetensors", "missing"]);
}

#[test]
fn a_missing_or_broken_tokenizer_is_a_tokenizer_error() {
    let dir = copy_of_fixture();
    fs::write(dir.path().join("tokenizer.json"), "not json").unwrap();
    assert!(matches!(load(dir.path()), Err(Error::Tokenizer { .. })));
    fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    assert_message(load(dir.path()), &["no tokenizer.json"]);
    // The bare model still loads without one.
    let (model, config) =
        Gpt2LMHeadModel::<B>::from_pretrained(dir.path().to_str().unwrap(), &Default::default()).unwrap();
    assert_eq!((model.transformer.h.len(), config.n_embd), (2, 64));
}

#[test]
fn bad_input_is_an_error_and_the_model_stays_usable() {
    let lm = tiny_gpt2();
    let before = lm.forward("The city of").unwrap();
    let cases: Vec<(nnsight_models::Prompts, &str)> = vec![
        ("".into(), "prompt 0 is empty"),
        (Vec::<String>::new().into(), "no prompt"),
        (vec![1u32, 512].into(), "token id 512 in prompt 0 is outside the vocabulary (size 512)"),
        (vec![7u32; 65].into(), "prompt 0 has 65 tokens, the model's context is 64"),
    ];
    for (input, message) in cases {
        let error = lm.forward(input.clone()).expect_err("bad input");
        assert!(matches!(error, Error::Input { .. }), "{error}");
        assert!(error.to_string().contains(message), "`{error}` does not say `{message}`");
        let traced = lm.trace(input).run(async |m| m.output().await);
        assert!(matches!(traced, Err(Error::Input { .. })));
    }
    support::assert_identical(&before, &lm.forward("The city of").unwrap());
}

#[test]
fn names_without_the_transformer_prefix_load_too() {
    // The original OpenAI conversions on the Hub (openai-community/gpt2) name `h.0.attn.c_attn.weight`.
    let dir = copy_of_fixture();
    rewrite_named(
        dir.path(),
        |_| true,
        |_, shape| shape,
        |name| name.trim_start_matches("transformer.").to_owned(),
    );
    let prompt = "The Eiffel Tower is in the city of";
    let renamed = load(dir.path()).unwrap();
    support::assert_identical(&renamed.forward(prompt).unwrap(), &tiny_gpt2().forward(prompt).unwrap());
}
