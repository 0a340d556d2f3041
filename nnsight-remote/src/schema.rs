//! The JSON Schema of the IR, generated from the types: what a client in another language
//! validates against. The committed copy, `schema/ir-v1.schema.json`, is checked against this by
//! the tests (`NNSIGHT_WRITE_SCHEMA=1 cargo test -p nnsight-remote` rewrites it).

use crate::ir::Program;

/// The JSON Schema (draft 2020-12) of [`Program`], pretty-printed.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Program);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema is JSON");
    text.push('\n');
    text
}
