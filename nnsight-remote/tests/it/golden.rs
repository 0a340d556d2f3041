//! The golden files of IR 1.0 (`tests/golden/v1/`): each decodes to its corpus program, passes the
//! structural check, and is that program's canonical encoding, byte for byte. They are never
//! rewritten once IR 1.0 is released: a change that breaks one breaks every saved intervention.
//! (`NNSIGHT_WRITE_GOLDEN=1` writes missing ones.)

use std::path::PathBuf;

use nnsight_remote::{canonical, check};

use crate::corpus::corpus;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1")
}

#[test]
fn golden_files_decode_to_the_corpus_and_are_canonical() {
    for (name, program) in corpus() {
        let path = golden_dir().join(format!("{name}.json"));
        let encoded = canonical::encode(&program);
        if std::env::var_os("NNSIGHT_WRITE_GOLDEN").is_some() && !path.exists() {
            std::fs::write(&path, format!("{encoded}\n")).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let decoded = canonical::decode(text.as_bytes(), 1 << 20).unwrap_or_else(|d| panic!("{name}: {d}"));
        assert_eq!(decoded, program, "{name}: the golden file decodes to another program");
        assert_eq!(text.trim_end(), encoded, "{name}: the golden file is not the canonical encoding");
        assert_eq!(check::check(&decoded), [], "{name}");
    }
}

#[test]
fn any_spelling_of_a_program_reencodes_canonically() {
    for (name, program) in corpus() {
        let pretty = serde_json::to_string_pretty(&program).unwrap();
        let decoded = canonical::decode(pretty.as_bytes(), 1 << 20).unwrap();
        assert_eq!(canonical::encode(&decoded), canonical::encode(&program), "{name}");
    }
}

#[test]
fn the_version_is_the_lowest_that_has_every_operation() {
    for (name, program) in corpus() {
        assert_eq!(program.ir, nnsight_remote::Version { major: 1, minor: 0 }, "{name}");
    }
}
