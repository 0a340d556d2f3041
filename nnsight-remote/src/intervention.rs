//! Intervention files: a program and its tensors in a directory — `program.json` (canonical
//! JSON) and `tensors.safetensors` — that anyone can share, and run against any model whose
//! paths and shapes fit (pyvene's idea, as data any language can write).

use std::path::Path;

use crate::canonical;
use crate::diagnostic::{Code, Diagnostic};
use crate::ir::Program;

/// The program file's name in an intervention directory.
pub const PROGRAM_FILE: &str = "program.json";
/// The tensors file's name in an intervention directory.
pub const TENSORS_FILE: &str = "tensors.safetensors";

/// A program and the safetensors bytes of the literals it names.
#[derive(Clone, Debug, PartialEq)]
pub struct Intervention {
    /// The program.
    pub program: Program,
    /// Its tensors, as a safetensors file (see [`tensors`](crate::tensors)); empty when it names
    /// none.
    pub tensors: Vec<u8>,
}

impl Intervention {
    /// Writes `program.json` and (when there are tensors) `tensors.safetensors` into `dir`,
    /// creating it.
    ///
    /// # Errors
    /// The file system's.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(PROGRAM_FILE), canonical::encode(&self.program) + "\n")?;
        if !self.tensors.is_empty() {
            std::fs::write(dir.join(TENSORS_FILE), &self.tensors)?;
        }
        Ok(())
    }

    /// Reads an intervention directory; each file may hold at most `max_bytes`.
    ///
    /// # Errors
    /// A diagnostic naming the file: missing or unreadable ([`Code::Malformed`]), too large
    /// ([`Code::TooLarge`]), or a program that does not decode.
    pub fn load(dir: &Path, max_bytes: u64) -> Result<Intervention, Diagnostic> {
        let read = |name: &str, required: bool| -> Result<Vec<u8>, Diagnostic> {
            let path = dir.join(name);
            let in_file =
                |d: Diagnostic| Diagnostic { message: format!("{}: {}", path.display(), d.message), ..d };
            match std::fs::metadata(&path) {
                Err(_) if !required => return Ok(Vec::new()),
                Err(e) => {
                    return Err(in_file(Diagnostic::program(
                        Code::Malformed,
                        format!("cannot read it: {e}"),
                    )));
                }
                Ok(meta) if meta.len() > max_bytes => {
                    let message = format!("it is {} bytes; at most {max_bytes} are accepted", meta.len());
                    return Err(in_file(Diagnostic::program(Code::TooLarge, message)));
                }
                Ok(_) => {}
            }
            std::fs::read(&path)
                .map_err(|e| in_file(Diagnostic::program(Code::Malformed, format!("cannot read it: {e}"))))
        };
        let text = read(PROGRAM_FILE, true)?;
        let program =
            canonical::decode(&text, usize::try_from(max_bytes).unwrap_or(usize::MAX)).map_err(|d| {
                Diagnostic { message: format!("{}: {}", dir.join(PROGRAM_FILE).display(), d.message), ..d }
            })?;
        Ok(Intervention { program, tensors: read(TENSORS_FILE, false)? })
    }
}
