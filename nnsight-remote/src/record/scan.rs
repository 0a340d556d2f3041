//! `scan`: every site a forward pass visits, in order, with its shape and element type —
//! nnsight's shapes-only run. The model runs on the [`Recorder`](super::Recorder), so nothing
//! is computed.

use std::cell::RefCell;
use std::rc::Rc;

use nnsight::observe::{ObservedKind, ObservedSite, Observer};
use nnsight::site::ErasedValue;

use super::{erased_tensor, lower::dtype, site};
use crate::ir::{DType, Site};

/// One tensor at one site visit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scanned {
    /// The site (an input site names the argument).
    pub site: Site,
    /// The tensor's shape.
    pub shape: Vec<usize>,
    /// Its element type.
    pub dtype: DType,
}

/// Runs `run` (traces of models built on the [`Recorder`](super::Recorder); their bodies may be empty) and
/// returns every tensor of every site visit, in the order the forward passes visited them.
/// Values that are not tensors (an `Option`, a cache) are left out.
///
/// # Errors
/// The first error of `run` (a trace's, as it would be locally).
pub fn scan<T>(run: impl FnOnce() -> nnsight::Result<T>) -> nnsight::Result<(Vec<Scanned>, T)> {
    let observer = Rc::new(Scan::default());
    let value = {
        let _observing = nnsight::observe::observe(observer.clone());
        run()?
    };
    Ok((observer.found.take(), value))
}

/// Collects the site visits of a [`scan`].
#[derive(Default)]
struct Scan {
    found: RefCell<Vec<Scanned>>,
}

impl Scan {
    fn push(&self, site: Site, value: &dyn ErasedValue) {
        if let Some((_, shape, element)) = erased_tensor(value)
            && let Ok(dtype) = dtype(element)
        {
            self.found.borrow_mut().push(Scanned { site, shape, dtype });
        }
    }
}

impl Observer for Scan {
    fn wants_visits(&self) -> bool {
        true
    }

    fn fired(&self, observed: &ObservedSite, value: &dyn ErasedValue) {
        if observed.kind != ObservedKind::Inputs {
            return self.push(site(observed, None), value);
        }
        // The arguments, one by one: `element_mut` is the only way into a tuple, on a copy.
        let mut args = value.clone_boxed();
        let mut i = 0;
        while let Some(element) = args.element_mut(i) {
            self.push(site(observed, Some(i)), element);
            i += 1;
        }
    }
}
