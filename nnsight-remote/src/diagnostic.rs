//! Diagnostics: what is wrong with a program, where, in words and as a stable code.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ir::{Location, Ref};

/// The stable code of a diagnostic: clients match on it (the message may be reworded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The program is larger than the reader accepts.
    TooLarge,
    /// Not JSON, or JSON that is not a program (a missing, unknown or mistyped field).
    Malformed,
    /// Written in an IR version this build does not read.
    UnsupportedVersion,
    /// Stamped with a minor version lower than one of its operations needs.
    VersionTooLow,
    /// A reference to a node that is not before it in scope.
    DanglingRef,
    /// A reference to a node that has no value (a write, save, ...).
    NoValue,
    /// An edit's body that does not start with `arg`, ends without a value, or holds an operation
    /// a body cannot (site operations, saves, logs, nested edits).
    BadEditBody,
    /// `arg` outside the first node of an edit's body.
    ArgOutsideEdit,
    /// A `shared` value of an invoke that is not earlier in the trace, or of a node it does not
    /// have.
    BadShared,
    /// A `saved` name no earlier trace saves.
    UnknownSaved,
    /// A save name used twice.
    DuplicateSave,
    /// A tensors file that is not a safetensors file, or holds a tensor the IR cannot (its element
    /// type or rank).
    BadTensors,
    /// An operation's own arguments are inconsistent (an empty list, unordered steps, an index
    /// reduction without a dimension, ...).
    BadArgument,
    /// A site the model does not have (no such module, or no such argument).
    UnknownSite,
    /// A parameter the model does not offer.
    UnknownParam,
    /// A `call` of a module the host does not let programs call.
    NotCallable,
    /// A site accessed after a later one, in the invoke's order (the forward pass has passed it).
    OutOfOrder,
    /// An occurrence the forward pass never reaches (a module called once has occurrence 0 only;
    /// a generation of `n` tokens runs `n` passes).
    OccurrenceOutOfRange,
    /// A value of another shape than the site (or operand) it is given to.
    ShapeMismatch,
    /// A value of another element type than the site (or operand) it is given to.
    TypeMismatch,
    /// An operation's operands break its shape rule (ranks, a dimension out of range, ...).
    BadShape,
    /// A slice or an index outside its dimension.
    OutOfBounds,
    /// More nodes, invokes, traces, tokens or result bytes than the host accepts.
    LimitExceeded,
    /// An invoke's input the model cannot take (a tensor input for a language model, a prompt
    /// longer than its context).
    BadInput,
}

impl Code {
    /// The code as the wire writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::TooLarge => "too_large",
            Code::Malformed => "malformed",
            Code::UnsupportedVersion => "unsupported_version",
            Code::VersionTooLow => "version_too_low",
            Code::DanglingRef => "dangling_ref",
            Code::NoValue => "no_value",
            Code::BadEditBody => "bad_edit_body",
            Code::ArgOutsideEdit => "arg_outside_edit",
            Code::BadShared => "bad_shared",
            Code::UnknownSaved => "unknown_saved",
            Code::DuplicateSave => "duplicate_save",
            Code::BadArgument => "bad_argument",
            Code::BadTensors => "bad_tensors",
            Code::UnknownSite => "unknown_site",
            Code::UnknownParam => "unknown_param",
            Code::NotCallable => "not_callable",
            Code::OutOfOrder => "out_of_order",
            Code::OccurrenceOutOfRange => "occurrence_out_of_range",
            Code::ShapeMismatch => "shape_mismatch",
            Code::TypeMismatch => "type_mismatch",
            Code::BadShape => "bad_shape",
            Code::OutOfBounds => "out_of_bounds",
            Code::LimitExceeded => "limit_exceeded",
            Code::BadInput => "bad_input",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which node: trace, invoke and node position (as [`Ref`] numbers them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodePath {
    /// The trace, from 0.
    pub trace: u32,
    /// The invoke in the trace, from 0.
    pub invoke: u32,
    /// The node in the invoke.
    pub node: Ref,
}

impl fmt::Display for NodePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "trace {} invoke {} node {}", self.trace, self.invoke, self.node)
    }
}

/// One thing wrong with a program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// What kind of problem.
    pub code: Code,
    /// The node it is about, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodePath>,
    /// The user's source line that made the node, when recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Location>,
    /// What is wrong and what to do, in words.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic about the whole program.
    pub fn program(code: Code, message: impl Into<String>) -> Self {
        Diagnostic { code, node: None, at: None, message: message.into() }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.code)?;
        if let Some(node) = &self.node {
            write!(f, " {node}")?;
        }
        if let Some(at) = &self.at {
            write!(f, " ({at})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for Diagnostic {}
