//! Damaged copies of a fixture checkpoint, for the loaders' error tests.

use std::fs;
use std::path::Path;

use super::fixture::fixture_dir;

/// A temporary copy of the fixture directory `name`'s `config.json`, `model.safetensors` and
/// (where it has them) `tokenizer.json` and `preprocessor_config.json`.
pub fn copy_of(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"] {
        let from = fixture_dir(name).join(file);
        let required = matches!(file, "config.json" | "model.safetensors");
        if required || from.exists() {
            fs::copy(from, tmp.path().join(file)).unwrap();
        }
    }
    tmp
}

/// Rewrites `model.safetensors` in `dir` (F32 tensors) without the tensor `drop` and with
/// `reshape`'s shape for `name` (data truncated or zero-extended).
pub fn rewrite(dir: &Path, drop: &str, reshape: (&str, Vec<usize>)) {
    rewrite_file(&dir.join("model.safetensors"), drop, reshape);
}

/// [`rewrite`] of the safetensors file `path`.
pub fn rewrite_file(path: &Path, drop: &str, reshape: (&str, Vec<usize>)) {
    let bytes = fs::read(path).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut kept = Vec::new();
    for (name, view) in tensors.tensors() {
        if name == drop {
            continue;
        }
        let shape = if name == reshape.0 { reshape.1.clone() } else { view.shape().to_vec() };
        let mut data = view.data().to_vec();
        data.resize(shape.iter().product::<usize>() * 4, 0);
        kept.push((name, shape, data));
    }
    let views = kept.iter().map(|(name, shape, data)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data).unwrap();
        (name.clone(), view)
    });
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// Rewrites `config.json` in `dir` with `from` replaced by `to` (which must occur).
pub fn edit_config(dir: &Path, from: &str, to: &str) {
    let config = fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(config.contains(from), "config.json has no `{from}`");
    fs::write(dir.join("config.json"), config.replace(from, to)).unwrap();
}
