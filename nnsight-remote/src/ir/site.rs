//! Sites: a module's output or one of its inputs, at one of its calls.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A value in the model's forward pass: `path`'s output or input at its `occurrence`-th call in
/// the trace (during generation, step `n` is occurrence `n` of a module called once per step).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// The module's path, field names joined by dots, list elements by index:
    /// `transformer.h.3.attn`; the empty string is the model itself.
    pub path: String,
    /// Which of the call's values.
    pub kind: SiteKind,
    /// Which call of the module, counted from 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub occurrence: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Which value of a module call a site is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SiteKind {
    /// The call's output.
    Output,
    /// The call's `i`-th owned argument (nnsight's `.input` is input 0).
    Input(u32),
}

/// Which generation steps a standing edit applies to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Steps {
    /// Every occurrence of the site (every step).
    All,
    /// Occurrences `start..end` (`end` omitted: to the last).
    Range {
        /// The first occurrence.
        start: u32,
        /// One past the last occurrence.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end: Option<u32>,
    },
    /// These occurrences, ascending.
    List(Vec<u32>),
}

impl Steps {
    /// Whether occurrence `n` is one of the steps.
    pub fn contains(&self, n: u32) -> bool {
        match self {
            Steps::All => true,
            Steps::Range { start, end } => n >= *start && end.is_none_or(|end| n < end),
            Steps::List(list) => list.binary_search(&n).is_ok(),
        }
    }
}
