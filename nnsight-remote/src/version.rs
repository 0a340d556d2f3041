//! The IR's version: `{major, minor}`, like ONNX's opset. A minor adds operations and optional
//! fields and never changes the meaning of a valid program; a major may.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The version of the IR a program is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// Incompatible revisions: a reader reads only its own major.
    pub major: u32,
    /// Compatible additions: a reader reads every minor up to its own.
    pub minor: u32,
}

impl Version {
    /// The newest version this build reads and writes.
    pub const CURRENT: Version = Version { major: 1, minor: 0 };

    /// Whether a reader of `self` reads a program of `program`'s version.
    pub fn reads(self, program: Version) -> bool {
        program.major == self.major && program.minor <= self.minor
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn a_reader_reads_its_major_up_to_its_minor() {
        let reader = Version { major: 1, minor: 2 };
        assert!(reader.reads(Version { major: 1, minor: 0 }));
        assert!(reader.reads(Version { major: 1, minor: 2 }));
        assert!(!reader.reads(Version { major: 1, minor: 3 }));
        assert!(!reader.reads(Version { major: 2, minor: 0 }));
        assert!(!reader.reads(Version { major: 0, minor: 9 }));
        assert_eq!(reader.to_string(), "1.2");
    }
}
