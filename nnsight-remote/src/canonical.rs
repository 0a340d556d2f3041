//! The wire encoding of a program: canonical JSON — object keys sorted, no whitespace, numbers as
//! `serde_json` prints them (the shortest text that reads back to the same value) — so that one
//! program has one encoding, which can be hashed, compared and cached.
//!
//! Decoding is bounded: the text's size is checked first (a limit the caller gives), nesting is
//! bounded by `serde_json`'s recursion limit, and every allocation is proportional to the text.
//! The version is read before the rest, so a newer program is refused as such, not as a list of
//! unknown fields.

use serde_json::Value;

use crate::diagnostic::{Code, Diagnostic};
use crate::ir::Program;
use crate::version::Version;

/// `program` as canonical JSON.
pub fn encode(program: &Program) -> String {
    let value =
        serde_json::to_value(program).expect("a program is plain data: numbers, strings, lists, maps");
    let mut out = String::new();
    write(&value, &mut out);
    out
}

/// Reads a program from JSON text of at most `max_bytes` bytes (any JSON spelling of it; the
/// result re-encodes canonically). A failure is one diagnostic: [`Code::TooLarge`],
/// [`Code::UnsupportedVersion`] or [`Code::Malformed`] (with the line and column).
pub fn decode(text: &[u8], max_bytes: usize) -> Result<Program, Diagnostic> {
    if text.len() > max_bytes {
        return Err(Diagnostic::program(
            Code::TooLarge,
            format!("the program is {} bytes; at most {max_bytes} are accepted", text.len()),
        ));
    }
    let value: Value = serde_json::from_slice(text)
        .map_err(|e| Diagnostic::program(Code::Malformed, format!("not JSON: {e}")))?;
    let version = value
        .get("ir")
        .cloned()
        .ok_or_else(|| Diagnostic::program(Code::Malformed, "not an IR program: no `ir` version field"))
        .and_then(|ir| {
            serde_json::from_value::<Version>(ir).map_err(|e| {
                Diagnostic::program(
                    Code::Malformed,
                    format!("the `ir` field is not a version {{major, minor}}: {e}"),
                )
            })
        })?;
    if !Version::CURRENT.reads(version) {
        return Err(Diagnostic::program(
            Code::UnsupportedVersion,
            format!(
                "the program is IR {version}; this build reads IR {}.0 up to {} (a newer nnsight-rs reads it)",
                Version::CURRENT.major,
                Version::CURRENT
            ),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| Diagnostic::program(Code::Malformed, format!("not an IR {version} program: {e}")))
}

/// Canonical JSON of `value`.
fn write(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}
