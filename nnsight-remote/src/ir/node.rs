//! Nodes: one operation, and where in the user's source it came from.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Op;

/// A node's value, named by the node's position: nodes are numbered in program order within an
/// invoke, counting the nodes of an edit's body where they stand (pre-order), from 0.
pub type Ref = u32;

/// One node of an invoke.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// What the node does.
    pub op: Op,
    /// The user's source line that made it, for diagnostics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Location>,
}

impl Node {
    /// A node without a source location.
    pub fn new(op: Op) -> Self {
        Node { op, at: None }
    }
}

impl From<Op> for Node {
    fn from(op: Op) -> Self {
        Node::new(op)
    }
}

/// A place in a source file.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// The file, as the compiler names it (`examples/steer.rs`).
    pub file: String,
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1.
    pub column: u32,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}
