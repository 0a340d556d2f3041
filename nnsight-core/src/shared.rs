//! [`Shared`]: a value handed from one invoke's body to a later one (cross-prompt patching).

use std::cell::RefCell;
use std::fmt;

use crate::error::{Error, Result};

/// A slot that one invoke's body fills and a later invoke's body reads, within one trace.
///
/// Bodies run in invoke order at every site, so a value set by invoke 0 at a site is there when
/// invoke 1 reaches the same site (or a later one). Reading it before it is set — e.g. invoke 1
/// wants it at an earlier site than the one where invoke 0 reads it — is an
/// [`Error::NotShared`], never a stale value.
pub struct Shared<T> {
    name: &'static str,
    value: RefCell<Option<T>>,
}

impl<T> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("name", &self.name)
            .field("set", &self.value.borrow().is_some())
            .finish()
    }
}

impl<T> Shared<T> {
    /// An empty slot; `name` says what it holds, for errors (e.g. `"layer 6 output of prompt A"`).
    pub fn new(name: &'static str) -> Self {
        Shared { name, value: RefCell::new(None) }
    }

    /// Stores `value` (replacing an earlier one). Returns `Ok(())` so a body can end with it.
    pub fn set(&self, value: T) -> Result<()> {
        *self.value.borrow_mut() = Some(value);
        Ok(())
    }

    /// Whether a value has been stored.
    pub fn is_set(&self) -> bool {
        self.value.borrow().is_some()
    }

    /// The stored value, taken out of the slot.
    ///
    /// # Errors
    /// [`Error::NotShared`] when no value has been stored yet.
    pub fn take(&self) -> Result<T> {
        self.value.borrow_mut().take().ok_or(Error::NotShared { name: self.name })
    }
}

impl<T: Clone> Shared<T> {
    /// A clone of the stored value (for tensors: a handle).
    ///
    /// # Errors
    /// [`Error::NotShared`] when no value has been stored yet: the body that should store it has
    /// not reached that point (it runs later in the forward pass, or in a later invoke).
    pub fn get(&self) -> Result<T> {
        self.value.borrow().clone().ok_or(Error::NotShared { name: self.name })
    }
}
