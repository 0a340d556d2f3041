//! A 2-D GGUF tensor of a 32-value block type as its raw blocks, for the products that read the
//! quantized weights directly ([`nnsight_kernels::matmul`]).

use nnsight::Result;
use nnsight_kernels::quantized::GgmlType;

use super::GgufFile;

/// A 2-D GGUF tensor of a 32-value block type, as its blocks ([`GgufFile::tensor_blocks`]).
#[derive(Debug)]
pub(crate) struct TensorBlocks {
    /// The block type.
    pub ty: GgmlType,
    /// Rows (PyTorch's first dimension).
    pub rows: usize,
    /// Values per row.
    pub cols: usize,
    /// The blocks, row after row.
    pub bytes: Vec<u8>,
}

impl TensorBlocks {
    /// Bytes per row.
    pub(crate) fn row_bytes(&self) -> usize {
        self.bytes.len() / self.rows.max(1)
    }
}

impl GgufFile {
    /// Tensor `name` (llama.cpp's name) as its blocks, rows as stored; `None` when the file has no
    /// such tensor or it is not a 2-D tensor of a 32-value block type (Q4_0, Q4_1, Q8_0).
    ///
    /// # Errors
    /// As [`tensor_bytes`](Self::tensor_bytes).
    pub(crate) fn tensor_blocks(&self, name: &str) -> Result<Option<TensorBlocks>> {
        let Some(info) = self.tensor_info(name) else { return Ok(None) };
        let ty = info.ggml_type();
        let [rows, cols] = match (info.shape().as_slice(), ty) {
            (&[rows, cols], GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0) => [rows, cols],
            _ => return Ok(None),
        };
        Ok(Some(TensorBlocks { ty, rows, cols, bytes: self.tensor_bytes(name)?.to_vec() }))
    }
}
