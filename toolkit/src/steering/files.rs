//! Steering vectors on disk: safetensors (one F32 tensor `direction.{layer}` `[hidden]` per
//! layer, the model hint in the header's metadata), and llama.cpp's control vectors (a GGUF whose
//! `general.architecture` is `controlvector`, the same tensor names, `controlvector.model_hint`),
//! read. In both, `direction.N` is added to the output of zero-based layer N, as llama.cpp does.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::prelude::*;
use nnsight::{Error, Result};
use nnsight_models::gguf::GgufFile;
use nnsight_models::weights::Weights;

use super::SteeringVector;

/// The metadata key of the model hint in a safetensors header (llama.cpp's GGUF key).
const HINT: &str = "controlvector.model_hint";

/// The layer of a tensor named `direction.{N}`.
fn layer_of(name: &str, file: &Path) -> Result<usize> {
    name.strip_prefix("direction.").and_then(|n| n.parse::<usize>().ok()).ok_or_else(|| Error::Load {
        source_name: file.display().to_string(),
        problem: format!("tensor `{name}` is not a steering direction (`direction.N`)"),
    })
}

impl<B: Backend> SteeringVector<B> {
    /// The vector with `hint` as its model hint.
    pub fn with_model_hint(mut self, hint: &str) -> Self {
        self.model_hint = Some(hint.to_owned());
        self
    }

    /// Writes the vector to `path` as safetensors: `direction.{layer}` `[hidden]` F32 tensors and
    /// the model hint (if any) in the header's metadata.
    ///
    /// # Errors
    /// [`Error::Write`] when the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let failed = |problem: String| Error::Write { path: path.display().to_string(), problem };
        let mut tensors = Vec::with_capacity(self.directions.len());
        for (layer, direction) in &self.directions {
            let values: Vec<f32> =
                direction.to_data().convert::<f32>().to_vec().map_err(|e| failed(format!("{e:?}")))?;
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            tensors.push((format!("direction.{layer}"), vec![values.len()], bytes));
        }
        let views = tensors
            .iter()
            .map(|(name, shape, bytes)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes)
                    .map(|view| (name.clone(), view))
                    .map_err(|e| failed(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let metadata = self.model_hint.as_ref().map(|hint| HashMap::from([(HINT.to_owned(), hint.clone())]));
        safetensors::serialize_to_file(views, metadata, path).map_err(|e| failed(e.to_string()))
    }

    /// Reads a steering vector from `path`: safetensors as [`save`](Self::save) writes them, or a
    /// llama.cpp control vector (`.gguf`).
    ///
    /// # Errors
    /// [`Error::Load`] naming the file for one that cannot be read, a GGUF that is not a control
    /// vector, a tensor that is not `direction.N`, `direction.0` (llama.cpp has no direction for
    /// layer 0), no direction; [`Error::BadWeight`] for a direction that is not one-dimensional.
    pub fn load(path: impl AsRef<Path>, device: &B::Device) -> Result<Self> {
        let path = path.as_ref();
        let load = |problem: String| Error::Load { source_name: path.display().to_string(), problem };
        let gguf = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        let mut directions = BTreeMap::new();
        let mut add = |name: &str, shape: Vec<usize>, values: Vec<f32>| -> Result<()> {
            let layer = layer_of(name, path)?;
            if gguf && layer == 0 {
                return Err(load(
                    "`direction.0`: llama.cpp control vectors have no direction for layer 0".to_owned(),
                ));
            }
            if shape.len() != 1 {
                return Err(Error::BadWeight {
                    name: name.to_owned(),
                    file: path.display().to_string(),
                    problem: format!("a direction is one-dimensional; this one is {shape:?}"),
                });
            }
            directions.insert(layer, Tensor::from_data(TensorData::new(values, shape), device));
            Ok(())
        };
        let hint = if gguf {
            let file = GgufFile::open(path)?;
            match file.get_str("general.architecture")? {
                Some("controlvector") => {}
                other => {
                    return Err(load(format!(
                        "a control vector's general.architecture is `controlvector`, not {other:?}"
                    )));
                }
            }
            let hint = file.get_str(HINT)?.map(str::to_owned);
            let names: Vec<String> = file.tensors().iter().map(|t| t.name().to_owned()).collect();
            for name in names {
                let (shape, values) = file.tensor_f32(&name)?;
                add(&name, shape, values)?;
            }
            hint
        } else {
            let weights = Weights::open(&[path.to_path_buf()])?;
            for name in weights.names() {
                let shape = weights.shape(name).expect("a listed tensor").to_vec();
                let values = weights
                    .read(name, &shape)?
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .map_err(|e| load(format!("{e:?}")))?;
                add(name, shape, values)?;
            }
            read_hint(path)
        };
        if directions.is_empty() {
            return Err(load("it holds no direction".to_owned()));
        }
        let vector = SteeringVector::new(directions).map_err(|e| load(e.to_string()))?;
        Ok(SteeringVector { model_hint: hint, ..vector })
    }
}

/// The model hint in a safetensors file's header metadata, if any.
fn read_hint(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
    metadata.metadata().as_ref()?.get(HINT).cloned()
}
