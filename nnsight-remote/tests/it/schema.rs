//! The committed JSON Schema is the one the types generate, and every golden file validates
//! against its structure (each node's operation is one of the schema's).

use std::path::PathBuf;

#[test]
fn the_committed_schema_is_the_generated_one() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema/ir-v1.schema.json");
    let generated = nnsight_remote::schema::json_schema();
    if std::env::var_os("NNSIGHT_WRITE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/ir-v1.schema.json is not what the types generate; if the change is intended (a new minor), \
         rewrite it with NNSIGHT_WRITE_SCHEMA=1 cargo test -p nnsight-remote"
    );
}

#[test]
fn the_schema_names_every_operation_of_the_corpus() {
    let schema = nnsight_remote::schema::json_schema();
    for (_, program) in crate::corpus::corpus() {
        for node in program.traces.iter().flat_map(|t| &t.invokes).flat_map(|i| &i.nodes) {
            let name = format!("\"{}\"", node.op.name());
            assert!(schema.contains(&name), "the schema lacks {name}");
        }
    }
}
