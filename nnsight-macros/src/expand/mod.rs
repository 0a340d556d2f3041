//! Code generation, one file per macro.

pub(crate) mod derive;
pub(crate) mod fallback;
pub(crate) mod inspect;
pub(crate) mod trace;
