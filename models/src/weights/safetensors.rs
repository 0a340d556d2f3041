//! Reading tensors by name from safetensors checkpoints (one file or shards), memory-mapped.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use nnsight::{Error, Result};

/// The tensors of a checkpoint: one `model.safetensors` or the shards of a sharded one.
///
/// Tensors are converted to `f32` (from F32, F16 or BF16) when asked for, one at a time.
#[derive(Debug)]
pub struct Weights {
    files: Vec<(PathBuf, Mmap)>,
    /// Tensor name → (file index, dtype, shape, byte range in the file).
    index: HashMap<String, Entry>,
    /// The tensors read so far, on a terminal.
    progress: crate::progress::Progress,
}

#[derive(Debug)]
struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: std::ops::Range<usize>,
}

impl Weights {
    /// Opens the safetensors files `paths` and indexes their tensors.
    pub fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut index = HashMap::new();
        for (file_index, path) in paths.iter().enumerate() {
            let load_error =
                |problem: String| Error::Load { source_name: path.display().to_string(), problem };
            let file = File::open(path).map_err(|e| load_error(format!("cannot open it: {e}")))?;
            // SAFETY: the map is read-only; a checkpoint changed on disk while we read it is
            // outside what we can guard against, as for every memory-mapped loader.
            #[allow(unsafe_code)] // the crate's one exception besides the GGUF map
            let map = unsafe { Mmap::map(&file) }.map_err(|e| load_error(format!("cannot map it: {e}")))?;
            let (header_len, metadata) = SafeTensors::read_metadata(&map)
                .map_err(|e| load_error(format!("not a safetensors file: {e}")))?;
            let data_start = 8 + header_len;
            for (name, info) in metadata.tensors() {
                let (start, end) = info.data_offsets;
                index.insert(
                    name,
                    Entry {
                        file: file_index,
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        bytes: data_start + start..data_start + end,
                    },
                );
            }
            files.push((path.clone(), map));
        }
        let progress = crate::progress::Progress::new(index.len() as u64, "reading tensors");
        Ok(Weights { files, index, progress })
    }

    /// Whether the checkpoint has a tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The names of all tensors, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.index.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// A tensor of a layer at or past `count` in the list of layers named `list` (`h` matches
    /// `h.12.ln_1.weight` and `transformer.h.12.ln_1.weight`), if the checkpoint has one: a
    /// config naming fewer layers than the checkpoint holds would drop them without a word.
    pub fn past_layers(&self, list: &str, count: usize) -> Option<&str> {
        let mut names = self.names();
        names.retain(|name| {
            name.split('.')
                .collect::<Vec<_>>()
                .windows(2)
                .any(|pair| pair[0] == list && pair[1].parse::<usize>().is_ok_and(|i| i >= count))
        });
        names.first().copied()
    }

    /// The shape of tensor `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.index.get(name).map(|e| e.shape.as_slice())
    }

    /// The files, for error messages: one path, or "N shards in DIR".
    pub fn describe(&self) -> String {
        match self.files.as_slice() {
            [(path, _)] => path.display().to_string(),
            files => {
                let dir = files.first().and_then(|(p, _)| p.parent()).unwrap_or(Path::new("."));
                format!("the {} shards in {}", files.len(), dir.display())
            }
        }
    }

    /// Tensor `name` as `f32` values, checked to have `shape`.
    pub fn read(&self, name: &str, shape: &[usize]) -> Result<TensorData> {
        let entry = self
            .index
            .get(name)
            .ok_or_else(|| Error::MissingWeight { name: name.to_owned(), file: self.describe() })?;
        let (path, map) = &self.files[entry.file];
        let bad = |problem: String| Error::BadWeight {
            name: name.to_owned(),
            file: path.display().to_string(),
            problem,
        };
        if entry.shape != shape {
            return Err(bad(format!("shape is {:?}, the config implies {:?}", entry.shape, shape)));
        }
        self.progress.advance(1);
        let bytes = &map[entry.bytes.clone()];
        let values: Vec<f32> = match entry.dtype {
            Dtype::F32 => {
                bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            }
            Dtype::F16 => {
                bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            Dtype::BF16 => {
                bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            other => return Err(bad(format!("dtype {other:?} is not supported (F32, F16, BF16 are)"))),
        };
        Ok(TensorData::new(values, shape.to_vec()))
    }

    /// Tensor `name` on `device`, checked to have `shape`.
    pub fn tensor<B: Backend, const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
        device: &B::Device,
    ) -> Result<Tensor<B, D>> {
        Ok(Tensor::from_data(self.read(name, &shape)?, device))
    }
}
