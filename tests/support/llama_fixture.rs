//! The tiny Llama fixture made by `tools/fixtures/make_llama_fixture.py` and its expected outputs.

use std::collections::HashMap;
use std::path::Path;

use burn::prelude::*;
use nnsight::Error;
use nnsight_models::LanguageModel;
use nnsight_models::llama::LlamaForCausalLM;
use safetensors::{Dtype, SafeTensors};

use super::B;
use super::fixture::fixture_dir;

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
pub struct LlamaExpected {
    floats: HashMap<String, (Vec<usize>, Vec<f32>)>,
    ints: HashMap<String, (Vec<usize>, Vec<i64>)>,
    /// The parsed `expected.json`.
    pub json: serde_json::Value,
}

impl LlamaExpected {
    /// Reads the expected outputs of the tiny Llama.
    pub fn load() -> Self {
        let dir = fixture_dir(TINY_LLAMA);
        let bytes = std::fs::read(dir.join("expected.safetensors")).unwrap();
        let tensors = SafeTensors::deserialize(&bytes).unwrap();
        let (mut floats, mut ints) = (HashMap::new(), HashMap::new());
        for (name, view) in tensors.tensors() {
            let shape = view.shape().to_vec();
            match view.dtype() {
                Dtype::F32 => {
                    let values =
                        view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap()));
                    floats.insert(name, (shape, values.collect()));
                }
                Dtype::I64 => {
                    let values =
                        view.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()));
                    ints.insert(name, (shape, values.collect()));
                }
                other => panic!("unexpected dtype {other:?} for {name}"),
            }
        }
        let json =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        LlamaExpected { floats, ints, json }
    }

    /// Float tensor `name`.
    pub fn tensor<const D: usize>(&self, name: &str) -> Tensor<B, D> {
        let (shape, values) = self.floats.get(name).unwrap_or_else(|| panic!("no expected tensor {name}"));
        Tensor::from_data(TensorData::new(values.clone(), shape.clone()), &Default::default())
    }

    /// The values of float tensor `name`.
    pub fn values(&self, name: &str) -> &[f32] {
        &self.floats.get(name).unwrap_or_else(|| panic!("no expected tensor {name}")).1
    }

    /// Integer tensor `name` (ids, masks) as an `Int` tensor.
    pub fn ids(&self, name: &str) -> Tensor<B, 2, Int> {
        let (shape, values) = self.ints.get(name).unwrap_or_else(|| panic!("no expected tensor {name}"));
        Tensor::from_data(TensorData::new(values.clone(), shape.clone()), &Default::default())
    }

    /// Integer tensor `name` as rows of token ids.
    pub fn rows(&self, name: &str) -> Vec<Vec<u32>> {
        let (shape, values) = self.ints.get(name).unwrap_or_else(|| panic!("no expected tensor {name}"));
        let width = *shape.last().unwrap();
        values.chunks(width).map(|row| row.iter().map(|&v| v as u32).collect()).collect()
    }

    /// The prompts of the padded-batch case.
    pub fn batch_prompts(&self) -> Vec<String> {
        let prompts = self.json["batch"]["prompts"].as_array().unwrap();
        prompts.iter().map(|p| p.as_str().unwrap().to_owned()).collect()
    }

    /// A string field of `expected.json`, e.g. `("single", "prompt")`.
    pub fn text(&self, section: &str, field: &str) -> String {
        self.json[section][field].as_str().unwrap().to_owned()
    }
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
