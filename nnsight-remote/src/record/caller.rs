//! The user's source line behind a refusal that happens inside burn (a body reading a tensor's
//! values on the host): the first frame of a backtrace, captured on that error path only, that is
//! neither the standard library's, a dependency's, nor nnsight-rs's own (told by the function's
//! name where the backtrace has it, else by the file). Needs debug information (test and dev
//! builds have it); without it the refusal names the body's last site access.

use crate::ir::Location;

/// Functions of these crates are not the user's.
const NOT_THE_USER: [&str; 14] = [
    "std::",
    "core::",
    "alloc::",
    "burn",
    "cubecl",
    "nnsight::",
    "nnsight_core::",
    "nnsight_remote::",
    "nnsight_models::",
    "nnsight_kernels::",
    "rayon",
    "hashbrown::",
    "spin::",
    "__rust",
];

/// Files in these places are not the user's.
const NOT_THEIR_FILES: [&str; 8] = [
    "/.cargo/registry/",
    "/.cargo/git/",
    "/rustc/",
    "/library/std/",
    "/nnsight-core/src/",
    "/nnsight-remote/src/",
    "/nnsight-macros/src/",
    "/models/src/",
];

/// Whether `file` (as a backtrace writes it) is a source file of nnsight-rs or a dependency.
fn library_file(file: &str) -> bool {
    let file = file.replace('\\', "/");
    if NOT_THEIR_FILES.iter().any(|p| file.contains(p)) {
        return true;
    }
    // A path relative to this crate (its own frames when built in its workspace).
    let relative = file.trim_start_matches("./");
    relative.starts_with("src/") && std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative).is_file()
}

/// The user's line that is running now, if a backtrace can tell.
pub(crate) fn user_line() -> Option<Location> {
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    let mut theirs = true;
    for line in trace.lines().map(str::trim_start) {
        if let Some(at) = line.strip_prefix("at ") {
            if let Some(location) = parse(at)
                && !theirs
                && !library_file(&location.file)
            {
                return Some(location);
            }
            continue;
        }
        // A frame: `12: <burn_tensor::Tensor<B> as ..>::into_scalar`.
        let Some((_, symbol)) = line.split_once(": ") else { continue };
        let symbol = symbol.trim_start_matches(['<', '&']).trim_start_matches("mut ");
        theirs = NOT_THE_USER.iter().any(|p| symbol.starts_with(p));
    }
    None
}

/// `file:line:column`.
fn parse(at: &str) -> Option<Location> {
    let mut parts = at.rsplitn(3, ':');
    let column = parts.next()?.parse().ok()?;
    let line = parts.next()?.parse().ok()?;
    Some(Location { file: parts.next()?.to_owned(), line, column })
}
