//! Where the examples write their pictures: `target/pictures/` of the workspace (or the folder
//! `NNSIGHT_PICTURES` names), created on first use.

use std::path::PathBuf;

/// The path of picture `name` (`quickstart_patching.png`) in the pictures folder, which is
/// created if it is missing.
///
/// # Errors
/// [`nnsight::Error::Write`] when the folder cannot be created.
pub fn picture(name: &str) -> nnsight::Result<PathBuf> {
    let dir = match std::env::var_os("NNSIGHT_PICTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("target").join("pictures"),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| nnsight::Error::Write { path: dir.display().to_string(), problem: e.to_string() })?;
    // A path without `..`, to print.
    Ok(dir.canonicalize().unwrap_or(dir).join(name))
}
