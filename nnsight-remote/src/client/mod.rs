//! The client of an `nnsight-server` (feature `client`): the same trace bodies as local runs,
//! recorded on a shape-only twin of the hosted model, checked against its manifest before
//! anything is sent, run on the server, their saves fetched back.
//!
//! - [`RemoteModel`] (or `lm.remote(url, key, model)` of a local model, [`RemoteExt`]): a hosted
//!   language model — [`trace`](RemoteModel::trace) blocks (with a
//!   progress bar) and returns the saves; [`submit`](RemoteModel::submit) returns a [`Job`].
//! - [`Client`]: the server's endpoints, for programs recorded or written elsewhere.
//! - [`Job`]: poll, stream events, cancel, fetch the result ([`Saves`]).

mod http;
mod job;
mod remote_model;

pub use http::{Client, SubmitOptions};
pub use job::{Events, Job, Saves};
pub use remote_model::{RemoteExt, RemoteModel, TwinLm};

use crate::Diagnostic;
use crate::api::ErrorBody;
use crate::record::RecordError;

/// Why a remote run gave no result.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the request (its status, its error with a stable code, and for `429`
    /// the seconds to wait).
    #[error("the server answered {status} [{}]: {}{}", body.error.code, body.error.message, diagnostics(&body.error.diagnostics))]
    Server {
        /// The HTTP status.
        status: u16,
        /// The error.
        body: ErrorBody,
        /// `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
    /// The program is not valid for the hosted model (checked before sending).
    #[error("the program does not fit the hosted model:{}", diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
    /// The body cannot be recorded.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The local twin and the server disagree about the model: a client and a server built from
    /// different model code (or a different tokenizer).
    #[error(
        "the {what} digest of the local twin ({local}) differs from the server's ({remote}): update the client or the server"
    )]
    DigestMismatch {
        /// Which digest.
        what: &'static str,
        /// The twin's.
        local: String,
        /// The server's.
        remote: String,
    },
    /// The job ended with an error on the server.
    #[error("the job failed [{code}]: {message}")]
    Failed {
        /// Its stable code.
        code: String,
        /// What went wrong.
        message: String,
    },
    /// The job was cancelled.
    #[error("the job was cancelled")]
    Cancelled,
    /// No answer (connection refused, a timeout, a dropped stream).
    #[error("no answer from the server: {0}")]
    Transport(String),
    /// An answer that does not follow the API.
    #[error("the server's answer does not follow the API: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The server's error code, for [`ClientError::Server`].
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Server { body, .. } => Some(body.code()),
            ClientError::Failed { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Diagnostics, one per line.
fn diagnostics(list: &[Diagnostic]) -> String {
    list.iter().map(|d| format!("\n  {d}")).collect()
}
