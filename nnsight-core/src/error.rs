//! The one error type of nnsight-rs.

use std::fmt;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a trace, each variant naming what happened and where.
///
/// A trace that returns an error leaves the model unchanged and usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A body asked for a site that the forward pass had already passed.
    #[error(
        "`{requested}` was requested but the model already ran past it (it is at `{passed}`); \
         accesses in one body must follow execution order"
    )]
    OutOfOrder {
        /// The site that was asked for.
        requested: String,
        /// The last site the forward pass went through.
        passed: String,
    },

    /// A body was still waiting for a site when the forward pass ended.
    #[error(
        "`{site}` was requested but the forward pass never reached it \
         (is the module called in its parent's forward, and is that impl marked `#[inspect]`?)"
    )]
    NotReached {
        /// The site that was never reached.
        site: String,
    },

    /// An index past the end of a list of modules.
    #[error("index {index} is out of range for `{path}`, which has {len} modules")]
    IndexOutOfRange {
        /// The path of the list.
        path: String,
        /// The index asked for.
        index: usize,
        /// The number of modules in the list.
        len: usize,
    },

    /// A module path (given at run time, e.g. by an IR program) that names no module of the model.
    #[error("no module `{path}` in this model: `{parent}` has no `{component}` (it has: {children})")]
    UnknownModule {
        /// The path asked for.
        path: String,
        /// The deepest module of the path that exists.
        parent: String,
        /// The component not found under it.
        component: String,
        /// What `parent` has instead.
        children: String,
    },

    /// An optional module (`Option<M>` field) that is `None` in this model.
    #[error("module `{path}` is not present in this model (its field is `None`)")]
    NotPresent {
        /// The path of the absent module.
        path: String,
    },

    /// A value of another type than its consumer expects: a body reading a site as another type
    /// than the model passes, or a replacement (or skip value) whose element type differs from
    /// the model's value (an `F16` tensor for an `F32` site).
    #[error("type mismatch at `{site}`: `{expected}` is expected, `{found}` was given")]
    TypeMismatch {
        /// The site (with ` (replacement)` or ` (skip)` when a body's value was checked).
        site: String,
        /// The type the consumer expects: the body's type when it reads, the model's when a body
        /// replaces.
        expected: &'static str,
        /// The type it got.
        found: &'static str,
    },

    /// A replacement whose shape differs from the value it replaces.
    #[error("shape mismatch replacing `{site}`: the model passes {expected}, the replacement is {found}")]
    ShapeMismatch {
        /// The site being replaced.
        site: String,
        /// The shape of the value the model passes.
        expected: String,
        /// The shape of the replacement.
        found: String,
    },

    /// A body awaited two sites at once (e.g. with `join!`) or something that is not a site.
    #[error("the body {what}; await envoy accesses one after another")]
    Unsupported {
        /// What the body did.
        what: String,
    },

    /// A model could not be loaded: a missing or unreadable file, a bad `config.json`, a repository
    /// that cannot be fetched.
    #[error("cannot load the model from `{source_name}`: {problem}")]
    Load {
        /// The directory, file or Hub repository being loaded.
        source_name: String,
        /// What is wrong with it.
        problem: String,
    },

    /// A file an analysis writes (a picture, saved vectors) could not be written.
    #[error("cannot write `{path}`: {problem}")]
    Write {
        /// The file.
        path: String,
        /// What went wrong.
        problem: String,
    },

    /// A model configuration whose values do not fit together or name something unsupported (read
    /// from a file, this is an [`Error::Load`] naming the file; see [`Error::in_source`]).
    #[error("invalid model configuration: {problem}")]
    Config {
        /// What is wrong, naming the field.
        problem: String,
    },

    /// A weight the model needs is not in the checkpoint.
    #[error("weight `{name}` is missing from {file}")]
    MissingWeight {
        /// The tensor name, as the checkpoint spells it.
        name: String,
        /// The checkpoint file(s) searched.
        file: String,
    },

    /// A weight whose shape or element type is not what the configuration implies.
    #[error("weight `{name}` in {file}: {problem}")]
    BadWeight {
        /// The tensor name, as the checkpoint spells it.
        name: String,
        /// The checkpoint file holding it.
        file: String,
        /// What is wrong with it (shape or dtype, expected and found).
        problem: String,
    },

    /// A tokenizer that cannot be read or used.
    #[error("tokenizer error: {problem}")]
    Tokenizer {
        /// What went wrong.
        problem: String,
    },

    /// Input the model cannot run on: an empty prompt, a token id outside the vocabulary, a
    /// sequence longer than the model's context.
    #[error("invalid input: {problem}")]
    Input {
        /// What is wrong with the input.
        problem: String,
    },

    /// A value one invoke hands to another was read before it was stored.
    #[error(
        "`{name}` was read before any invoke stored it: bodies run in invoke order at each site, \
         so the invoke that stores it must reach that site first (same or earlier site, earlier invoke)"
    )]
    NotShared {
        /// What the shared slot holds.
        name: &'static str,
    },

    /// A module skipped by a body that sees only some rows of the batch.
    #[error(
        "`{site}` is skipped by {invoke}, which sees only rows {rows} of the batch; a skipped \
         module's output is the skip value for the whole batch, so skip from a single invoke or \
         from `invoke_all`"
    )]
    PartialSkip {
        /// The site of the skipped module.
        site: String,
        /// The invoke that asked (`invoke 1`).
        invoke: String,
        /// Its rows (`2..3 of 4`).
        rows: String,
    },

    /// A value that one invoke of several cannot see only its rows of: its batch dimension does
    /// not hold the batch (e.g. heads merged into it), or it is shared by every row and the body
    /// writes it.
    #[error(
        "`{site}` cannot be narrowed to the rows of {invoke}: {problem}; declare how the calls \
         of the module's parent carry the batch (`#[inspect(batch_dim = N)]` or \
         `#[inspect(unbatched)]` on its impl block), or access it from `invoke_all`, which sees \
         the whole batch"
    )]
    NotBatched {
        /// The site.
        site: String,
        /// The invoke that asked (`invoke 1`).
        invoke: String,
        /// Why its rows cannot be told.
        problem: String,
    },

    /// A write by an invoke of one part of a several-part input (CLIP's texts or images) to a
    /// module of another part, or to one whose values combine the parts (the model's own).
    #[error(
        "{invoke} cannot write `{site}`: the module is not of its part of the input (its field \
         declares another `#[inspect(part = N)]`, or its values combine the parts), so the invoke \
         sees the value whole and a write would change the other invokes' values; write it from \
         an invoke of its part, or from `invoke_all`"
    )]
    OtherPart {
        /// The site.
        site: String,
        /// The invoke that asked (`invoke 1`).
        invoke: String,
    },

    /// A tracked activation got no gradient from the backward pass.
    #[error(
        "no gradient reached `{site}`: the backward pass did not start from a value computed \
         from it (or the gradients are of another trace)"
    )]
    NoGradient {
        /// The site whose gradient was asked for.
        site: String,
    },

    /// A cache lookup for a site the cache did not record.
    #[error("the cache holds no `{site}` ({why})")]
    NotCached {
        /// The site asked for (`transformer.h.3.output.i0`).
        site: String,
        /// Why: not recorded, not reached, of another type.
        why: String,
    },

    /// An error raised by user code inside a trace body.
    #[error("{0}")]
    Custom(Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Wraps an error of user code inside a trace body, so that `?` can return it from the body.
    ///
    /// # Examples
    /// ```
    /// let err = nnsight::Error::custom("the probe did not converge");
    /// assert_eq!(err.to_string(), "the probe did not converge");
    /// ```
    pub fn custom(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Custom(error.into())
    }

    /// A configuration error as the load error of the file (or other source) that holds the
    /// configuration; other errors unchanged.
    ///
    /// # Examples
    /// ```
    /// let err = nnsight::Error::Config { problem: "`n_head` is 0".into() }.in_source("config.json");
    /// assert_eq!(err.to_string(), "cannot load the model from `config.json`: `n_head` is 0");
    /// ```
    pub fn in_source(self, source: impl fmt::Display) -> Self {
        match self {
            Error::Config { problem } => Error::Load { source_name: source.to_string(), problem },
            other => other,
        }
    }
}

/// A difference found by [`SiteValue::check_replacement`](crate::SiteValue::check_replacement):
/// of shape, or of element type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What the model passes (a shape like `[2, 3]`, or an element type).
    pub expected: String,
    /// What the replacement has.
    pub found: String,
    /// The element types, when they are what differs (`("f32", "f16")`): the replacement would
    /// make the model's kernels fail even with the right shape.
    pub element_types: Option<(&'static str, &'static str)>,
}

impl Mismatch {
    /// A difference of shape (or of any other property described by `expected` and `found`).
    pub fn shape(expected: impl Into<String>, found: impl Into<String>) -> Self {
        Mismatch { expected: expected.into(), found: found.into(), element_types: None }
    }

    /// A difference of element type.
    pub fn element_type(expected: &'static str, found: &'static str) -> Self {
        Mismatch {
            expected: expected.to_owned(),
            found: found.to_owned(),
            element_types: Some((expected, found)),
        }
    }

    /// The error of a replacement at `site` that differs this way: [`Error::TypeMismatch`] for
    /// element types, else [`Error::ShapeMismatch`] (`expected` may say more than `self`'s, e.g.
    /// which rows of a batch the body sees).
    pub(crate) fn into_error(self, site: String, expected: impl FnOnce(String) -> String) -> Error {
        match self.element_types {
            Some((expected, found)) => Error::TypeMismatch { site, expected, found },
            None => Error::ShapeMismatch { site, expected: expected(self.expected), found: self.found },
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "expected {}, found {}", self.expected, self.found)
    }
}
