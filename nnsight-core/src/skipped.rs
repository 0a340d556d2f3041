//! [`Skipped`]: the value a body gave to stand for a module's output (`skip`), waiting for the
//! module's call.

use std::any::Any;

use crate::visit::Key;

/// A replacement for a module's output, set by `skip`: the module is not run.
pub(crate) struct Skipped {
    /// The input visit at which the module is skipped.
    pub(crate) key: Key,
    pub(crate) value: Box<dyn Any>,
    pub(crate) type_name: &'static str,
}
