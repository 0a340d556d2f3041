//! [`Ghost`]: what an envoy of a module that does not exist stands for (an index past the end of a
//! list, an absent optional module), so that indexing never panics and every access through it
//! fails with an error naming the list.

use crate::tree::NodeId;

/// An envoy that stands for a module that does not exist: every access through it fails.
#[derive(Debug)]
pub(crate) struct Ghost {
    pub(crate) list: NodeId,
    pub(crate) index: usize,
    pub(crate) len: usize,
}
