//! One visit of one site: which side of a module call ([`Kind`]) and which call ([`Key`]).

use crate::tree::NodeId;

/// Which side of a module call a site is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// The arguments of the call.
    Input,
    /// The value the call returned.
    Output,
}

/// One visit of one site: a node, a side, and the occurrence (0 for the first call).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Key {
    pub(crate) node: NodeId,
    pub(crate) kind: Kind,
    pub(crate) occurrence: u32,
}
