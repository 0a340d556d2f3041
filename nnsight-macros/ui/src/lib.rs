//! The compile-fail (UI) cases of `nnsight-macros`: `tests/ui/fail/*.rs`, each with the message
//! and span its mistake gets (`*.stderr`), checked by `tests/ui.rs`. This library is empty; the
//! crate exists so that the cases' dependencies (nnsight, burn) are built once, for the target,
//! and not a second time as dev-dependencies of a proc-macro crate.
