//! Reading a family's `config.json`: the file's text, parsed with serde and checked by the
//! family's own `validate`, errors naming the file and the field.

use std::path::Path;

use serde::de::DeserializeOwned;

use nnsight::{Error, Result};

/// The config in the file at `path`, parsed by `parse` (a family's `from_json`).
///
/// # Errors
/// [`Error::Load`] naming the file when it cannot be read, or with `parse`'s error.
pub(crate) fn read<T>(path: &Path, parse: impl FnOnce(&str) -> Result<T>) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Load {
        source_name: path.display().to_string(),
        problem: format!("cannot read it: {e}"),
    })?;
    parse(&text).map_err(|e| e.in_source(path.display()))
}

/// `text` parsed as a `family` config and checked by `validate`.
///
/// # Errors
/// [`Error::Config`] when the text is not such a config or fails `validate`.
pub(crate) fn parse<T: DeserializeOwned>(
    text: &str,
    family: &str,
    validate: impl FnOnce(&T) -> Result<()>,
) -> Result<T> {
    let config: T = serde_json::from_str(text)
        .map_err(|e| Error::Config { problem: format!("not a {family} config.json: {e}") })?;
    validate(&config)?;
    Ok(config)
}
