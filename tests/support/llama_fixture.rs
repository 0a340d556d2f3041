//! The tiny Llama fixture made by `tools/fixtures/make_llama_fixture.py` and its expected outputs.

use std::path::Path;

use nnsight::Error;
use nnsight_models::LanguageModel;
use nnsight_models::llama::LlamaForCausalLM;
use safetensors::{Dtype, SafeTensors};

use super::B;
use super::fixture::{Expected, fixture_dir};

/// The tiny Llama wrapped as users wrap a Llama.
pub type TinyLlama = LanguageModel<B, LlamaForCausalLM<B>>;

/// The model directory of the fixture.
pub const TINY_LLAMA: &str = "tiny-llama";

/// The tiny Llama, loaded through the loader users use.
pub fn tiny_llama() -> TinyLlama {
    load_llama(&fixture_dir(TINY_LLAMA)).expect("the fixture loads")
}

/// A Llama from a model directory, through `LanguageModel::from_pretrained`.
pub fn load_llama(dir: &Path) -> Result<TinyLlama, Error> {
    LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default())
}

/// `expected.safetensors` (tensors) and `expected.json` (prompts, ids) of the tiny Llama.
pub fn llama_expected() -> Expected {
    Expected::load_from(TINY_LLAMA)
}

/// A copy of the tiny Llama directory (config, weights, tokenizer) in a fresh temporary directory.
pub fn copy_of_tiny_llama() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture_dir(TINY_LLAMA).join(name), tmp.path().join(name)).unwrap();
    }
    tmp
}

/// Rewrites the f32 `model.safetensors` in `dir`, keeping the tensors `keep` accepts, with the
/// shapes `reshape` gives (truncating or zero-extending the data).
pub fn rewrite_llama_weights(
    dir: &Path,
    keep: impl Fn(&str) -> bool,
    reshape: impl Fn(&str, Vec<usize>) -> Vec<usize>,
) {
    rewrite_named(dir, keep, reshape, str::to_owned);
}

/// Renames the tensors of the f32 `model.safetensors` in `dir`.
pub fn rename_llama_weights(dir: &Path, rename: impl Fn(&str) -> String) {
    rewrite_named(dir, |_| true, |_, shape| shape, rename);
}

fn rewrite_named(
    dir: &Path,
    keep: impl Fn(&str) -> bool,
    reshape: impl Fn(&str, Vec<usize>) -> Vec<usize>,
    rename: impl Fn(&str) -> String,
) {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut kept = Vec::new();
    for (name, view) in tensors.tensors() {
        if keep(&name) {
            let shape = reshape(&name, view.shape().to_vec());
            let mut data = view.data().to_vec();
            data.resize(shape.iter().product::<usize>() * 4, 0);
            kept.push((rename(&name), shape, data));
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = kept
        .iter()
        .map(|(name, shape, data)| {
            (name.clone(), safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data).unwrap())
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}
