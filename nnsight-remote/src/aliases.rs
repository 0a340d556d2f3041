//! Other names for the same sites in programs: TransformerLens' hook names
//! (`blocks.3.hook_resid_pre`, `blocks.3.attn.hook_pattern`, `hook_embed`, …) resolved through the
//! hosted family's common vocabulary ([`Vocabulary`]) to module paths, so that a program written
//! against the vocabulary runs on every family. The host resolves a program before it validates
//! and runs it, the client before it checks what it would send; both get the same program.

use nnsight_models::vocabulary::{Port, Vocabulary};

use crate::ir::Program;
use crate::{Code, Diagnostic};

/// `program` with every TransformerLens hook name replaced by the site it names in
/// `vocabulary` (module paths stay as they are).
///
/// # Errors
/// [`Code::UnknownSite`] naming the trace, the invoke and the name: a hook the family lacks
/// (Mamba's `hook_attn_out`), a layer past the last, a hook name nnsight-rs does not map, or a
/// hook name used as a module's input.
pub fn resolve(program: &mut Program, vocabulary: &Vocabulary) -> Result<(), Diagnostic> {
    program
        .resolve_aliases(|name| {
            let location = vocabulary.alias(name).map_err(|e| e.to_string())?;
            Ok((location.path, location.port == Port::Input))
        })
        .map_err(|(t, i, message)| {
            Diagnostic::program(Code::UnknownSite, format!("trace {t} invoke {i}: {message}"))
        })
}
