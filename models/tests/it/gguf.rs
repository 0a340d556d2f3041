//! GGUF reading against references computed by other implementations: llama.cpp's gguf-py
//! (dequantization, metadata) and Hugging Face transformers' GGUF loader (q/k un-permutation,
//! tokenizer). Fixtures: `fixtures/gguf/`, written by `tools/fixtures/make_gguf_fixtures.py`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use nnsight::Error;
use nnsight_models::gguf::{GgmlType, GgufFile, Value};
use nnsight_models::llama::{gguf_name, hf_name, unpermute_qk};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value as Json;

fn fixture(name: &str) -> PathBuf {
    nnsight_support::fixture_dir("gguf").join(name)
}

fn json(name: &str) -> Json {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every f32 tensor of a safetensors fixture: name → (shape, values).
fn expected_tensors(name: &str) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), Dtype::F32, "{name}");
            let values =
                view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            (name, view.shape().to_vec(), values)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn assert_load_error(result: Result<GgufFile, Error>, path: &Path, what: &str) -> String {
    match result {
        Err(Error::Load { source_name, problem }) => {
            assert_eq!(source_name, path.display().to_string(), "{what}");
            problem
        }
        Err(other) => panic!("{what}: expected Error::Load, got {other}"),
        Ok(file) => panic!("{what}: expected Error::Load, opened {file:?}"),
    }
}

#[test]
fn every_type_dequantizes_like_gguf_py() {
    let file = GgufFile::open(fixture("types.gguf")).unwrap();
    let expected = expected_tensors("types.expected.safetensors");
    assert_eq!(expected.len(), file.tensors().len());
    let mut types_seen = HashSet::new();
    for (name, shape, want) in &expected {
        let ty = file.tensor_info(name).unwrap().ggml_type();
        types_seen.insert(ty);
        let (got_shape, got) = file.tensor_f32(name).unwrap();
        assert_eq!(&got_shape, shape, "{name}");
        assert_eq!(got.len(), want.len(), "{name}");
        let exact = matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            if exact {
                assert_eq!(g.to_bits(), w.to_bits(), "{name}[{i}] ({ty}): {g} vs {w}");
            } else {
                assert!(g == w || (g - w).abs() <= 1e-6 * w.abs(), "{name}[{i}] ({ty}): {g} vs {w}");
            }
        }
        assert!(want.iter().any(|&v| v != 0.0), "{name}: the reference is all zeros");
    }
    use GgmlType::*;
    for ty in [F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4K, Q5K, Q6K] {
        assert!(types_seen.contains(&ty), "the fixture has no {ty} tensor");
        assert!(ty.can_dequantize());
    }
}

/// Our value as the fixture's JSON: `(type names, outer to inner; value)`.
fn to_json(value: &Value) -> (Vec<String>, Json) {
    match value {
        Value::Array(element, items) => {
            let mut types = vec!["ARRAY".to_owned()];
            let converted: Vec<_> = items.iter().map(to_json).collect();
            match converted.first() {
                Some((inner, _)) => types.extend(inner.iter().cloned()),
                None => types.push(element.name().to_owned()),
            }
            (types, Json::Array(converted.into_iter().map(|(_, v)| v).collect()))
        }
        other => {
            let json = match *other {
                Value::U8(v) => v.into(),
                Value::I8(v) => v.into(),
                Value::U16(v) => v.into(),
                Value::I16(v) => v.into(),
                Value::U32(v) => v.into(),
                Value::I32(v) => v.into(),
                Value::U64(v) => v.into(),
                Value::I64(v) => v.into(),
                Value::F32(v) => f64::from(v).into(),
                Value::F64(v) => v.into(),
                Value::Bool(v) => v.into(),
                Value::String(ref v) => v.clone().into(),
                Value::Array(..) => unreachable!(),
            };
            (vec![other.value_type().name().to_owned()], json)
        }
    }
}

#[test]
fn metadata_reads_back() {
    let file = GgufFile::open(fixture("types.gguf")).unwrap();
    let expected = json("types.expected.json");
    assert_eq!(file.version(), 3);
    assert_eq!(file.alignment(), 64);
    assert_eq!(file.data_offset() % 64, 0);
    let want = expected["metadata"].as_object().unwrap();
    let keys: Vec<&str> = file.metadata().map(|(key, _)| key).collect();
    assert_eq!(Json::from(keys), expected["metadata_order"]);
    for (key, value) in file.metadata() {
        let want_value = &want[key];
        let (types, json) = to_json(value);
        assert_eq!(Json::from(types), want_value["types"], "{key}");
        assert_eq!(json, want_value["value"], "{key}");
    }

    // typed accessors
    assert_eq!(file.get_u32("test.u32").unwrap(), Some(4_000_000_000));
    assert_eq!(file.get_i32("test.i32").unwrap(), Some(-2_000_000_000));
    assert_eq!(file.get_u64("test.u8").unwrap(), Some(200));
    assert_eq!(file.get_i64("test.i64").unwrap(), Some(-9_000_000_000_000_000_000));
    assert_eq!(file.get_u64("test.u64").unwrap(), Some(18_000_000_000_000_000_000));
    assert_eq!(file.get_f32("test.f32").unwrap(), Some(0.1));
    assert_eq!(file.get_f64("test.f64").unwrap(), Some(-1e300));
    assert_eq!(file.get_bool("test.bool_true").unwrap(), Some(true));
    assert_eq!(file.get_bool("test.bool_false").unwrap(), Some(false));
    assert_eq!(file.get_str("test.string").unwrap(), Some("héllo, wörld ✓"));
    assert_eq!(file.get_str("general.architecture").unwrap(), Some("test"));
    assert_eq!(file.get_str_array("test.array_string").unwrap(), Some(vec!["a", "", "b c", "ünï"]));
    assert_eq!(file.get_i32_array("test.array_i32").unwrap(), Some(vec![-7, 0, 7, 2_000_000_000]));
    assert_eq!(file.get_i32_array("test.array_u8").unwrap(), Some(vec![1, 2, 255]));
    assert_eq!(file.get_u32("no.such.key").unwrap(), None);
    assert_eq!(file.get_str_array("no.such.key").unwrap(), None);
    assert!(file.get("test.array_nested").is_some());
    // wrong types and ranges are errors naming the key
    for result in [
        file.get_u32("test.i32").map(|_| ()),
        file.get_u32("test.u64").map(|_| ()),
        file.get_u32("test.string").map(|_| ()),
        file.get_str("test.u32").map(|_| ()),
        file.get_f32("test.u32").map(|_| ()),
        file.get_bool("test.u8").map(|_| ()),
        file.get_str_array("test.array_i32").map(|_| ()),
        file.get_i32_array("test.array_u64").map(|_| ()),
        file.get_i32_array("test.array_string").map(|_| ()),
    ] {
        match result {
            Err(Error::Load { problem, .. }) => assert!(problem.contains("metadata `test."), "{problem}"),
            other => panic!("expected Error::Load, got {other:?}"),
        }
    }
}

#[test]
fn shapes_are_in_hugging_face_order() {
    let file = GgufFile::open(fixture("types.gguf")).unwrap();
    let expected = json("types.expected.json");
    let order: Vec<&str> = file.tensors().iter().map(|t| t.name()).collect();
    assert_eq!(Json::from(order), expected["tensor_order"]);
    for (name, want) in expected["tensors"].as_object().unwrap() {
        let info = file.tensor_info(name).unwrap();
        assert_eq!(Json::from(info.dims().to_vec()), want["gguf_dims"], "{name}");
        assert_eq!(Json::from(info.shape()), want["shape"], "{name}");
        assert_eq!(Json::from(info.ggml_type().id()), want["ggml_type_id"], "{name}");
        assert_eq!(Json::from(info.ggml_type().name()), want["ggml_type"], "{name}");
        assert_eq!(info.n_elements(), info.shape().iter().product::<usize>());
        assert_eq!(info.offset() % 64, 0, "{name}");
    }
    let (shape, _) = file.tensor_f32("f32_3d").unwrap();
    assert_eq!(shape, [2, 3, 32]);
    assert!(matches!(file.tensor_f32("nope"), Err(Error::MissingWeight { .. })));
}

/// A copy of `bytes` in a fresh temporary directory.
fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The offset of the `u32` type id in tensor `name`'s info (name, n_dims, dims, **type**, offset).
fn type_field(bytes: &[u8], name: &str, n_dims: usize) -> usize {
    let mut pattern = (name.len() as u64).to_le_bytes().to_vec();
    pattern.extend_from_slice(name.as_bytes());
    pattern.extend_from_slice(&(n_dims as u32).to_le_bytes());
    let at = bytes.windows(pattern.len()).position(|w| w == pattern).unwrap();
    at + pattern.len() + 8 * n_dims
}

#[test]
fn unsupported_types_are_load_errors_naming_tensor_and_type() {
    let bytes = std::fs::read(fixture("types.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let at = type_field(&bytes, "f32_1d", 1);
    assert_eq!(bytes[at..at + 4], 0u32.to_le_bytes());
    for (id, type_name) in [(26u32, "I32"), (99, "type 99")] {
        let mut patched = bytes.clone();
        patched[at..at + 4].copy_from_slice(&id.to_le_bytes());
        let path = write_temp(&dir, &format!("type{id}.gguf"), &patched);
        let file = GgufFile::open(&path).unwrap();
        match file.tensor_f32("f32_1d") {
            Err(Error::Load { source_name, problem }) => {
                assert_eq!(source_name, path.display().to_string());
                assert!(problem.contains("`f32_1d`") && problem.contains(type_name), "{problem}");
            }
            other => panic!("expected Error::Load, got {other:?}"),
        }
        // the other tensors still read
        assert!(file.tensor_f32("q4_k").is_ok());
    }
}

#[test]
fn truncated_files_are_load_errors() {
    let bytes = std::fs::read(fixture("types.gguf")).unwrap();
    let file = GgufFile::open(fixture("types.gguf")).unwrap();
    let data = file.data_offset();
    let end = data + file.tensors().iter().map(|t| t.offset() + t.n_bytes().unwrap()).max().unwrap();
    assert!(end <= bytes.len() && bytes.len() - end < 64); // the rest is padding
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.gguf");
    let named = [
        (0, "empty"),
        (3, "inside the magic"),
        (6, "inside the version"),
        (20, "inside the counts"),
        (30, "inside the first key"),
        (data / 4, "inside the metadata"),
        (data / 2, "inside the metadata"),
        (data - 40, "inside the tensor infos"),
        (data - 1, "before the data section"),
        (data + 100, "inside tensor data"),
        (end - 1, "one byte short"),
    ];
    let every_13th = (0..end).step_by(13).map(|cut| (cut, "stride"));
    for (cut, what) in named.into_iter().chain(every_13th) {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let problem = assert_load_error(GgufFile::open(&path), &path, &format!("cut at {cut} ({what})"));
        assert!(!problem.is_empty());
    }
    std::fs::write(&path, &bytes[..end]).unwrap();
    assert!(GgufFile::open(&path).is_ok(), "without the final padding");
    std::fs::write(&path, &bytes[..data + 100]).unwrap();
    let problem = assert_load_error(GgufFile::open(&path), &path, "inside tensor data");
    assert!(problem.contains("runs past the end of the file"), "{problem}");
}

#[test]
fn corrupt_files_are_load_errors() {
    let bytes = std::fs::read(fixture("types.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let patch = |at: usize, new: &[u8]| {
        let mut patched = bytes.clone();
        patched[at..at + new.len()].copy_from_slice(new);
        patched
    };
    let cases = [
        (patch(0, b"GGUX"), "magic"),
        (patch(4, &1u32.to_le_bytes()), "version 1"),
        (patch(4, &7u32.to_le_bytes()), "version 7"),
        (patch(4, &3u32.to_be_bytes()), "big-endian"),
        (patch(8, &u64::MAX.to_le_bytes()), "claims"), // tensor count
        (patch(16, &(1u64 << 40).to_le_bytes()), "claims"), // metadata count
        (patch(24, &(1u64 << 40).to_le_bytes()), "claims"), // first key's length
        (patch(type_field(&bytes, "q6_k", 2), &0u32.to_le_bytes()), "runs past the end"), // Q6_K → F32: 4.9x bigger
        (patch(type_field(&bytes, "q6_k", 2) + 4, &(1u64 << 62).to_le_bytes()), "runs past the end"),
        (patch(type_field(&bytes, "q6_k", 2) + 4, &u64::MAX.to_le_bytes()), "overflows"),
        (patch(type_field(&bytes, "q4_k", 2) - 16, &500u64.to_le_bytes()), "block size"), // ne[0] 512 → 500
    ];
    for (i, (patched, expected)) in cases.into_iter().enumerate() {
        let path = write_temp(&dir, &format!("corrupt{i}.gguf"), &patched);
        let problem = assert_load_error(GgufFile::open(&path), &path, expected);
        assert!(problem.contains(expected), "case {i}: `{problem}` should mention `{expected}`");
    }

    // version 2 has the same layout: a v2 copy opens and reads the same
    let path = write_temp(&dir, "v2.gguf", &patch(4, &2u32.to_le_bytes()));
    let v2 = GgufFile::open(&path).unwrap();
    assert_eq!(v2.version(), 2);
    let v3 = GgufFile::open(fixture("types.gguf")).unwrap();
    assert_eq!(v2.tensor_f32("q5_k").unwrap(), v3.tensor_f32("q5_k").unwrap());
}

/// llama.cpp's `LlamaModel.permute`: `w.reshape(n_head, 2, rows / n_head / 2, cols).swapaxes(1, 2)`.
fn llama_cpp_permute(values: &[f32], rows: usize, n_head: usize) -> Vec<f32> {
    let cols = values.len() / rows;
    let half = rows / n_head / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..n_head {
        for t in 0..2 {
            for i in 0..half {
                let from = (h * 2 * half + t * half + i) * cols; // [h, t, i] before
                let to = (h * 2 * half + i * 2 + t) * cols; // [h, i, t] after
                out[to..to + cols].copy_from_slice(&values[from..from + cols]);
            }
        }
    }
    out
}

#[test]
fn unpermute_inverts_llama_cpps_permutation() {
    for (n_head, head_dim, cols) in [(3, 4, 2), (1, 8, 5), (4, 2, 1), (2, 6, 3)] {
        let rows = n_head * head_dim;
        let original: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let permuted = llama_cpp_permute(&original, rows, n_head);
        if head_dim > 2 {
            assert_ne!(permuted, original);
        }
        assert_eq!(unpermute_qk(&permuted, rows, n_head), Some(original), "{n_head} heads of {head_dim}");
    }
    assert_eq!(unpermute_qk(&[0.0; 12], 6, 2), None); // head_dim 3 is odd
}

#[test]
fn names_map_both_ways() {
    let pairs = [
        ("token_embd.weight", "model.embed_tokens.weight"),
        ("output_norm.weight", "model.norm.weight"),
        ("output.weight", "lm_head.weight"),
        ("blk.5.attn_q.weight", "model.layers.5.self_attn.q_proj.weight"),
        ("blk.5.attn_k.weight", "model.layers.5.self_attn.k_proj.weight"),
        ("blk.5.attn_v.weight", "model.layers.5.self_attn.v_proj.weight"),
        ("blk.5.attn_output.weight", "model.layers.5.self_attn.o_proj.weight"),
        ("blk.5.ffn_gate.weight", "model.layers.5.mlp.gate_proj.weight"),
        ("blk.5.ffn_up.weight", "model.layers.5.mlp.up_proj.weight"),
        ("blk.5.ffn_down.weight", "model.layers.5.mlp.down_proj.weight"),
        ("blk.5.attn_norm.weight", "model.layers.5.input_layernorm.weight"),
        ("blk.5.ffn_norm.weight", "model.layers.5.post_attention_layernorm.weight"),
        ("blk.10.attn_q.bias", "model.layers.10.self_attn.q_proj.bias"),
    ];
    for (gguf, hf) in pairs {
        assert_eq!(hf_name(gguf).as_deref(), Some(hf));
        assert_eq!(gguf_name(hf).as_deref(), Some(gguf));
    }
    assert_eq!(hf_name("rope_freqs.weight"), None);
    assert_eq!(gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"), None);
}

#[test]
fn tiny_llama_reads_like_transformers() {
    let file = GgufFile::open(fixture("tiny-llama.gguf")).unwrap();
    for info in file.tensors() {
        let hf = hf_name(info.name()).unwrap_or_else(|| panic!("{} has no HF name", info.name()));
        assert_eq!(gguf_name(&hf).as_deref(), Some(info.name()));
    }
    // transformers' state dict, q/k un-permuted by its LlamaTensorProcessor
    for (name, shape, want) in expected_tensors("tiny-llama.expected.safetensors") {
        let (got_shape, got) = file.hf_tensor_f32(&name).unwrap();
        assert_eq!(got_shape, shape, "{name}");
        assert_eq!(got, want, "{name}");
        if name.contains("q_proj") || name.contains("k_proj") {
            let (_, stored) = file.tensor_f32(&gguf_name(&name).unwrap()).unwrap();
            assert_ne!(stored, want, "{name} should be stored permuted");
        }
    }
    let (shape, _) = file.hf_tensor_f32("lm_head.weight").unwrap();
    assert_eq!(shape, [file.get_u32("llama.vocab_size").unwrap().unwrap() as usize, 32]);
    assert!(matches!(
        file.hf_tensor_f32("model.layers.1.mlp.up_proj.weight"),
        Err(Error::MissingWeight { .. })
    ));
    assert!(matches!(file.hf_tensor_f32("model.rotary.inv_freq"), Err(Error::MissingWeight { .. })));

    let types = GgufFile::open(fixture("types.gguf")).unwrap();
    assert!(matches!(types.hf_tensor_f32("model.norm.weight"), Err(Error::Load { .. })));
}

#[test]
fn tokenizers_match_transformers() {
    let expected = json("tokenizer.expected.json");
    let texts = expected["texts"].as_array().unwrap();
    for (file_name, want) in expected["files"].as_object().unwrap() {
        let tokenizer = GgufFile::open(fixture(file_name)).unwrap().tokenizer().unwrap();
        for (i, text) in texts.iter().enumerate() {
            let text = text.as_str().unwrap();
            let encoding = tokenizer.encode(text, true).unwrap();
            assert_eq!(
                Json::from(encoding.get_ids().to_vec()),
                want["ids"][i],
                "{file_name}: {text:?}\n tokens {:?}\n want   {}",
                encoding.get_tokens(),
                want["tokens"][i]
            );
            let decoded = tokenizer.decode(encoding.get_ids(), false).unwrap();
            assert_eq!(Json::from(decoded), want["decoded"][i], "{file_name}: decode {text:?}");
        }
    }
}

#[test]
fn files_without_a_gpt2_tokenizer_are_tokenizer_errors() {
    let types = GgufFile::open(fixture("types.gguf")).unwrap();
    match types.tokenizer() {
        Err(Error::Tokenizer { problem }) => assert!(problem.contains("no tokenizer"), "{problem}"),
        other => panic!("expected Error::Tokenizer, got {other:?}"),
    }
    // the same tokenizer file, claiming a sentencepiece ("llama") model
    let bytes = std::fs::read(fixture("tiny-gpt2-tok.gguf")).unwrap();
    let key = b"tokenizer.ggml.model";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    assert_eq!(bytes[at..at + 4], 8u32.to_le_bytes()); // STRING
    assert_eq!(bytes[at + 4..at + 12], 4u64.to_le_bytes());
    assert_eq!(&bytes[at + 12..at + 16], b"gpt2");
    let mut patched = bytes.clone();
    patched[at + 12..at + 16].copy_from_slice(b"t5xx");
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "t5.gguf", &patched);
    match GgufFile::open(&path).unwrap().tokenizer() {
        Err(Error::Tokenizer { problem }) => assert!(problem.contains("`t5xx`"), "{problem}"),
        other => panic!("expected Error::Tokenizer, got {other:?}"),
    }
}
