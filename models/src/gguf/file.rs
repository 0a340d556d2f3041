//! A GGUF file, memory-mapped: its header, typed metadata and tensor infos, and its tensors read
//! as `f32`.
//!
//! Layout (GGUF v2 and v3, little-endian; llama.cpp's `docs/gguf.md`): magic `GGUF`, `u32`
//! version, `u64` tensor count, `u64` metadata count; the metadata, each a string key, a `u32`
//! value type and the value; the tensor infos, each a string name, a `u32` dimension count, the
//! `u64` dimensions innermost first, a `u32` ggml type and the `u64` offset of its data; then,
//! aligned to `general.alignment` (32 when absent), the data section the offsets count from.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use nnsight::{Error, Result};

use super::reader::Reader;
use super::value::{Value, ValueType};
use nnsight_kernels::quantized::GgmlType;
use nnsight_kernels::quantized::dequantize;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: usize = 32;
/// ggml tensors have at most 4 dimensions (`GGML_MAX_DIMS`).
const MAX_DIMS: usize = 4;

/// One tensor of a GGUF file: name, dimensions, element type and where its data is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    name: String,
    dims: Vec<usize>,
    ggml_type: GgmlType,
    offset: usize,
    n_elements: usize,
    /// Byte range in the file; `None` for a type whose block size is unknown.
    bytes: Option<std::ops::Range<usize>>,
}

impl TensorInfo {
    /// The tensor's name, as llama.cpp spells it (`blk.0.attn_q.weight`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The dimensions as GGUF stores them: innermost first (`dims()[0]` is the row length).
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// The shape in PyTorch / Hugging Face order (row-major, outermost first): `dims()` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().copied().collect()
    }

    /// The element type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ggml_type
    }

    /// Where the data starts, counted from the start of the data section.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The number of values.
    pub fn n_elements(&self) -> usize {
        self.n_elements
    }

    /// The size of the data in bytes; `None` for a type whose block size is unknown.
    pub fn n_bytes(&self) -> Option<usize> {
        self.bytes.as_ref().map(|r| r.len())
    }
}

/// A GGUF file (llama.cpp's format, version 2 or 3), memory-mapped.
///
/// [`open`](Self::open) parses and checks the header, metadata and tensor infos; tensor data is
/// read, and dequantized to `f32`, one tensor at a time by [`tensor_f32`](Self::tensor_f32).
///
/// # Examples
///
/// ```no_run
/// use nnsight_models::gguf::GgufFile;
///
/// let file = GgufFile::open("SmolLM2-135M-Instruct.Q4_1.gguf")?;
/// let layers = file.get_u32("llama.block_count")?;
/// let (shape, values) = file.tensor_f32("blk.0.attn_q.weight")?;
/// assert_eq!(shape.iter().product::<usize>(), values.len());
/// # Ok::<(), nnsight::Error>(())
/// ```
pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    version: u32,
    metadata: Vec<(String, Value)>,
    keys: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    alignment: usize,
    data_offset: usize,
    /// The tensors dequantized so far, on a terminal.
    progress: crate::progress::Progress,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Opens, maps and parses the GGUF file at `path`.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] naming the file and what is wrong when it cannot be read, is not GGUF
    /// (bad magic), has a version other than 2 or 3, or is truncated or corrupt: counts, string
    /// lengths or tensor data past the end of the file, unknown value types, duplicate keys or
    /// tensor names, a bad `general.alignment`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let load_error = |problem: String| Error::Load { source_name: path.display().to_string(), problem };
        let file = File::open(&path).map_err(|e| load_error(format!("cannot open it: {e}")))?;
        // SAFETY: the map is read-only; a file changed on disk while we read it is outside what
        // we can guard against, as for every memory-mapped loader.
        #[allow(unsafe_code)] // the crate's one exception besides the safetensors map
        let map = unsafe { Mmap::map(&file) }.map_err(|e| load_error(format!("cannot map it: {e}")))?;
        let parsed = parse(&map).map_err(load_error)?;
        Ok(GgufFile {
            path,
            map,
            version: parsed.version,
            keys: parsed.metadata.iter().enumerate().map(|(i, (k, _))| (k.clone(), i)).collect(),
            metadata: parsed.metadata,
            by_name: parsed.tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect(),
            progress: crate::progress::Progress::new(parsed.tensors.len() as u64, "reading tensors"),
            tensors: parsed.tensors,
            alignment: parsed.alignment,
            data_offset: parsed.data_offset,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF version: 2 or 3.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of tensor data: `general.alignment`, 32 when absent.
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Where the data section starts, in bytes from the start of the file.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// Every metadata key and value, in file order.
    pub fn metadata(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The metadata value under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.keys.get(key).and_then(|&i| self.metadata.get(i)).map(|(_, v)| v)
    }

    /// The integer under `key` (of any GGUF integer type) as `u32`; `None` when absent.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] when the value is not an integer or does not fit.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>> {
        self.integer(key, "u32")
    }

    /// The integer under `key` as `u64`; `None` when absent.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] when the value is not an integer or does not fit.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.integer(key, "u64")
    }

    /// The integer under `key` as `i32`; `None` when absent.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] when the value is not an integer or does not fit.
    pub fn get_i32(&self, key: &str) -> Result<Option<i32>> {
        self.integer(key, "i32")
    }

    /// The integer under `key` as `i64`; `None` when absent.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] when the value is not an integer or does not fit.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>> {
        self.integer(key, "i64")
    }

    /// The float (`f32` or `f64`) under `key` as `f32`; `None` when absent.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] when the value is not a float.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        // An f64 is rounded to the nearest f32, which is what asking for an f32 means.
        #[allow(clippy::cast_possible_truncation)]
        Ok(self.get_f64(key)?.map(|v| v as f32))
    }

    /// The float (`f32` or `f64`) under `key` as `f64`; `None` when absent.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] when the value is not a float.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>> {
        self.typed(key, "a float", Value::as_f64)
    }

    /// The boolean under `key`; `None` when absent.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] when the value is not a boolean.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.typed(key, "a BOOL", Value::as_bool)
    }

    /// The string under `key`; `None` when absent.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] when the value is not a string.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        self.typed(key, "a STRING", Value::as_str)
    }

    /// The array of strings under `key`; `None` when absent.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] when the value is not an array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(value) = self.get(key) else { return Ok(None) };
        match value {
            Value::Array(ValueType::String, items) => {
                Ok(Some(items.iter().filter_map(Value::as_str).collect()))
            }
            other => Err(self.bad_key(key, format!("is {}, not an ARRAY of STRING", other.describe()))),
        }
    }

    /// The array of integers (of any one GGUF integer type) under `key` as `i32`s; `None` when
    /// absent.
    ///
    /// # Errors
    ///
    /// [`Error::Load`] when the value is not an array of integers or one does not fit in `i32`.
    pub fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        let Some(value) = self.get(key) else { return Ok(None) };
        let not_integers = || self.bad_key(key, format!("is {}, not an ARRAY of integers", value.describe()));
        let items = value.as_array().ok_or_else(not_integers)?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let n = item.as_integer().ok_or_else(not_integers)?;
                i32::try_from(n).map_err(|_| {
                    self.bad_key(key, format!("has {n} at index {i}, which does not fit in i32"))
                })
            })
            .collect::<Result<Vec<i32>>>()
            .map(Some)
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name` (llama.cpp's spelling), if any.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// The raw bytes of tensor `name`, as stored (quantized blocks, or little-endian floats).
    ///
    /// # Errors
    ///
    /// [`Error::MissingWeight`] when there is no such tensor; [`Error::BadWeight`] when its type
    /// is unknown, so its size is too.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let info = self.info_or_missing(name)?;
        let bad = |problem: String| Error::BadWeight {
            name: name.to_owned(),
            file: self.path.display().to_string(),
            problem,
        };
        let range =
            info.bytes.clone().ok_or_else(|| bad(format!("its type, {}, is unknown", info.ggml_type)))?;
        self.progress.advance(1);
        // `open` checked the range against the file's length.
        self.map.get(range).ok_or_else(|| bad("its data lies past the end of the file".to_owned()))
    }

    /// Tensor `name` as `f32` values, with its shape in PyTorch / Hugging Face order (row-major,
    /// outermost dimension first; GGUF's dimensions reversed). Quantized types are dequantized,
    /// in parallel over blocks.
    ///
    /// # Errors
    ///
    /// [`Error::MissingWeight`] when there is no such tensor; [`Error::Load`] naming the tensor
    /// and its type when the type is not one [`GgmlType::can_dequantize`] accepts.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let info = self.info_or_missing(name)?;
        let ty = info.ggml_type;
        if !ty.can_dequantize() {
            return Err(self.load_error(format!(
                "tensor `{name}` has type {ty}, which cannot be dequantized (supported: {})",
                GgmlType::DEQUANTIZABLE
            )));
        }
        let bytes = self.tensor_bytes(name)?;
        let mut values = vec![0.0; info.n_elements];
        if !dequantize(ty, bytes, &mut values) {
            return Err(self.load_error(format!(
                "tensor `{name}` ({ty}, {} values) has {} bytes of data, which does not match",
                info.n_elements,
                bytes.len()
            )));
        }
        Ok((info.shape(), values))
    }

    fn info_or_missing(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor_info(name).ok_or_else(|| Error::MissingWeight {
            name: name.to_owned(),
            file: self.path.display().to_string(),
        })
    }

    pub(crate) fn load_error(&self, problem: String) -> Error {
        Error::Load { source_name: self.path.display().to_string(), problem }
    }

    fn bad_key(&self, key: &str, problem: String) -> Error {
        self.load_error(format!("metadata `{key}` {problem}"))
    }

    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &str,
        convert: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>> {
        let Some(value) = self.get(key) else { return Ok(None) };
        convert(value)
            .map(Some)
            .ok_or_else(|| self.bad_key(key, format!("is {}, not {expected}", value.describe())))
    }

    fn integer<T: TryFrom<i128>>(&self, key: &str, target: &str) -> Result<Option<T>> {
        let Some(n) = self.typed(key, "an integer", Value::as_integer)? else { return Ok(None) };
        T::try_from(n)
            .map(Some)
            .map_err(|_| self.bad_key(key, format!("is {n}, which does not fit in {target}")))
    }
}

/// What [`parse`] finds in a file.
#[derive(Debug)]
struct Parsed {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
    alignment: usize,
    data_offset: usize,
}

/// Parses and checks everything but the tensor data; the error says what is wrong and where.
fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    let mut r = Reader::new(bytes);
    let in_header = |e: String| format!("truncated header: {e}");
    let magic = r.take(4).map_err(in_header)?;
    if magic != MAGIC {
        return Err(format!("not a GGUF file: it starts with {magic:02x?}, not the magic `GGUF`"));
    }
    let version = r.u32().map_err(in_header)?;
    match version {
        2 | 3 => {}
        1 => return Err("GGUF version 1 is not supported (only 2 and 3 are)".to_owned()),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
            return Err("a big-endian GGUF file; only little-endian files are supported".to_owned());
        }
        v => return Err(format!("unknown GGUF version {v} (2 and 3 are supported)")),
    }
    let n_tensors = r.count().map_err(in_header)?;
    let n_metadata = r.count().map_err(in_header)?;
    // Smallest possible entries: a key (8-byte length) + type + 1 byte; a tensor info with an
    // empty name: 8 + 4 (dims count) + 4 (type) + 8 (offset).
    check_count(n_metadata, "metadata entries", 8 + 4 + 1, r.remaining())?;
    check_count(n_tensors, "tensors", 8 + 4 + 4 + 8, r.remaining())?;

    let mut metadata: Vec<(String, Value)> = Vec::with_capacity(n_metadata);
    let mut seen_keys = HashMap::with_capacity(n_metadata);
    for i in 0..n_metadata {
        let at = r.position();
        let key = r.string().map_err(|e| format!("metadata entry {i} (at byte {at}): its key: {e}"))?;
        let value = r
            .value_type()
            .and_then(|ty| r.value(ty))
            .map_err(|e| format!("metadata `{key}` (entry {i}, at byte {at}): {e}"))?;
        if seen_keys.insert(key.clone(), i).is_some() {
            return Err(format!("metadata `{key}` appears twice"));
        }
        metadata.push((key, value));
    }

    let alignment = match seen_keys.get("general.alignment").and_then(|&i| metadata.get(i)) {
        None => DEFAULT_ALIGNMENT,
        Some((_, value)) => value
            .as_integer()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| n.is_power_of_two())
            .ok_or_else(|| format!("`general.alignment` is {value:?}; it must be a power of two"))?,
    };

    let mut tensors = Vec::with_capacity(n_tensors);
    let mut seen_names = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let at = r.position();
        let info = tensor_info(&mut r).map_err(|e| format!("tensor info {i} (at byte {at}): {e}"))?;
        if seen_names.insert(info.name.clone(), i).is_some() {
            return Err(format!("tensor `{}` appears twice", info.name));
        }
        tensors.push(info);
    }

    let data_offset = r
        .position()
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| "the data section's offset overflows".to_owned())?;
    for info in &mut tensors {
        locate(info, data_offset, bytes.len())?;
    }
    Ok(Parsed { version, metadata, tensors, alignment, data_offset })
}

fn check_count(count: usize, what: &str, min_size: usize, remaining: usize) -> Result<(), String> {
    if count > remaining / min_size {
        return Err(format!("the header claims {count} {what}, but only {remaining} bytes follow it"));
    }
    Ok(())
}

/// Reads one tensor info; its byte range is set by [`locate`].
fn tensor_info(r: &mut Reader<'_>) -> Result<TensorInfo, String> {
    let name = r.string().map_err(|e| format!("its name: {e}"))?;
    let context = |e: String| format!("tensor `{name}`: {e}");
    let n_dims = r.u32().map_err(context)?;
    let n_dims = usize::try_from(n_dims)
        .ok()
        .filter(|&n| n <= MAX_DIMS)
        .ok_or_else(|| context(format!("it has {n_dims} dimensions; ggml allows at most {MAX_DIMS}")))?;
    let mut dims = Vec::with_capacity(n_dims);
    for _ in 0..n_dims {
        dims.push(r.count().map_err(context)?);
    }
    let ggml_type = GgmlType::from_id(r.u32().map_err(context)?);
    let offset = r.count().map_err(context)?;
    let n_elements = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| context(format!("its dimensions {dims:?} overflow")))?;
    Ok(TensorInfo { name, dims, ggml_type, offset, n_elements, bytes: None })
}

/// Sets `info.bytes`, checking that the data lies inside the file.
fn locate(info: &mut TensorInfo, data_offset: usize, file_len: usize) -> Result<(), String> {
    let name = &info.name;
    let ty = info.ggml_type;
    let start = data_offset
        .checked_add(info.offset)
        .ok_or_else(|| format!("tensor `{name}`: its offset {} overflows", info.offset))?;
    let (Some(block), Some(type_size)) = (ty.block_size(), ty.type_size()) else {
        // Unknown type: its size is unknown, and reading it is an error; check what we can.
        if start > file_len {
            return Err(format!(
                "tensor `{name}` starts at byte {start}, past the end of the file ({file_len} bytes)"
            ));
        }
        return Ok(());
    };
    let row = info.dims.first().copied().unwrap_or(1);
    if !row.is_multiple_of(block) {
        return Err(format!(
            "tensor `{name}` ({ty}) has rows of {row} values, not a multiple of the block size {block}"
        ));
    }
    let n_bytes = (info.n_elements / block)
        .checked_mul(type_size)
        .ok_or_else(|| format!("tensor `{name}`: its size overflows"))?;
    let end = start.checked_add(n_bytes).filter(|&end| end <= file_len).ok_or_else(|| {
        format!(
            "tensor `{name}` ({ty}, {n_bytes} bytes from byte {start}) runs past the end of the file \
             ({file_len} bytes)"
        )
    })?;
    info.bytes = Some(start..end);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal GGUF v3 file: one u32 metadata entry and one F32 tensor of `n` values.
    fn tiny(n: u64) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes()); // tensors
        b.extend_from_slice(&1u64.to_le_bytes()); // metadata
        b.extend_from_slice(&3u64.to_le_bytes());
        b.extend_from_slice(b"key");
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&7u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(b"t");
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // F32
        b.extend_from_slice(&0u64.to_le_bytes()); // offset
        b.resize(b.len().next_multiple_of(32), 0);
        for i in 0..n {
            b.extend_from_slice(&(i as f32).to_le_bytes());
        }
        b
    }

    #[test]
    fn parses_a_minimal_file() {
        let parsed = parse(&tiny(3)).unwrap();
        assert_eq!(parsed.version, 3);
        assert_eq!(parsed.metadata, vec![("key".to_owned(), Value::U32(7))]);
        assert_eq!(parsed.tensors[0].dims, vec![3]);
        assert_eq!(parsed.data_offset % 32, 0);
        assert_eq!(parsed.tensors[0].bytes, Some(parsed.data_offset..parsed.data_offset + 12));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = tiny(3);
        for cut in 0..bytes.len() {
            assert!(parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn bad_headers() {
        let mut bytes = tiny(1);
        bytes[0] = b'X';
        assert!(parse(&bytes).unwrap_err().contains("magic"));
        let mut bytes = tiny(1);
        bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
        assert!(parse(&bytes).unwrap_err().contains("big-endian"));
        let mut bytes = tiny(1);
        bytes[4..8].copy_from_slice(&4u32.to_le_bytes());
        assert!(parse(&bytes).unwrap_err().contains("version 4"));
        let mut bytes = tiny(1);
        bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(parse(&bytes).unwrap().version, 2);
        let mut bytes = tiny(1);
        bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = parse(&bytes).unwrap_err();
        assert!(e.contains("claims") || e.contains("does not fit"), "{e}");
    }
}
