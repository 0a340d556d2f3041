//! The HTTP API between a client and an `nnsight-server`, as types: what each endpoint answers
//! (JSON) and how errors read. One definition serves both sides, so they cannot drift.
//!
//! | endpoint | answers |
//! |---|---|
//! | `GET /v1/models` | `[`[`ModelInfo`]`]` |
//! | `GET /v1/models/{key}/manifest` | [`Manifest`](crate::manifest::Manifest) |
//! | `GET /v1/models/{key}/twin` | [`Twin`]: what a client builds the shape-only twin from |
//! | `POST /v1/jobs` (multipart: `model`, `program`, `tensors`?, `exclusive`?) | `202` [`Submitted`] |
//! | `POST /v1/jobs:validate` (the same form) | [`Estimate`] |
//! | `GET /v1/jobs/{id}` | [`JobView`]: state and full history |
//! | `GET /v1/jobs/{id}/events` | server-sent [`Event`]s, resumable with `Last-Event-ID` |
//! | `GET /v1/jobs/{id}/result` | the saves as one safetensors file (`Range` supported) |
//! | `DELETE /v1/jobs/{id}` | [`JobView`]: queued jobs are removed, running ones stop at their next site, a finished job's result is deleted |
//!
//! Every error is an [`ErrorBody`] with a stable [`ErrorBody::code`].

use serde::{Deserialize, Serialize};

use crate::Diagnostic;
use crate::version::Version;

/// A hosted model, as `GET /v1/models` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The name jobs give (`model` field).
    pub key: String,
    /// Its family ([`Architecture::NAME`](crate::arch::Architecture::NAME)).
    pub arch: String,
    /// The IR version it reads.
    pub ir: Version,
    /// Whether traces may generate.
    pub generates: bool,
    /// The most positions a forward pass takes.
    pub max_positions: usize,
    /// The manifest's architecture digest.
    pub config_digest: String,
    /// The manifest's weights digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_digest: Option<String>,
}

/// What a client builds a hosted model's shape-only twin from (no weights).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Twin {
    /// The family.
    pub arch: String,
    /// The model's config, as its family writes it (a Hugging Face `config.json`).
    pub config: serde_json::Value,
    /// The tokenizer (`tokenizer.json`).
    pub tokenizer: String,
    /// The token id batches are padded with.
    pub pad_id: u32,
    /// The end-of-sequence ids.
    pub eos_ids: Vec<u32>,
}

/// `POST /v1/jobs` accepted a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// The job's id.
    pub id: String,
    /// Where it stands in its model's queue (0: next).
    pub position: usize,
}

/// What a valid program costs (`POST /v1/jobs:validate`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    /// Its nodes.
    pub nodes: usize,
    /// Forward passes, all traces together.
    pub forward_passes: u64,
    /// Token positions processed: what the compute quota counts.
    pub positions: u64,
    /// The most bytes the result can have.
    pub result_bytes: u64,
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting in its model's queue.
    Queued,
    /// A worker runs it.
    Running,
    /// Its result is ready.
    Completed,
    /// It ended with an error ([`EventKind::Failed`] says which).
    Failed,
    /// Cancelled by its owner.
    Cancelled,
}

impl State {
    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        matches!(self, State::Completed | State::Failed | State::Cancelled)
    }
}

/// One step of a job's history; the events stream sends each as it happens (SSE `id` is
/// [`Event::id`], `event` the kind's name, `data` this JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Its number in the job's history, from 0.
    pub id: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened to a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// Accepted, at `position` in the queue (0: next).
    Queued {
        /// Jobs ahead of it.
        position: usize,
    },
    /// A worker started it, in a forward pass shared by `batch` jobs.
    Running {
        /// The worker.
        worker: String,
        /// Jobs in its batch (1: alone).
        batch: usize,
    },
    /// It reached a site in trace `trace` of `traces`, at `step` (a generation's token).
    Progress {
        /// The trace.
        trace: usize,
        /// Traces in the program.
        traces: usize,
        /// The step.
        step: u32,
    },
    /// A `log` line of the program.
    Log {
        /// The line.
        line: String,
    },
    /// Its result is ready: `result_bytes` long, kept until `expires_ms`.
    Completed {
        /// The result's size.
        result_bytes: u64,
        /// When the result is deleted (ms since the Unix epoch).
        expires_ms: u64,
    },
    /// It ended with an error.
    Failed {
        /// A stable code (`run_error`, `time_limit`, `result_too_large`, `worker_crashed`, ...).
        code: String,
        /// What went wrong.
        message: String,
    },
    /// Its owner cancelled it.
    Cancelled,
}

impl EventKind {
    /// The kind's name (the SSE `event` field).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Queued { .. } => "queued",
            EventKind::Running { .. } => "running",
            EventKind::Progress { .. } => "progress",
            EventKind::Log { .. } => "log",
            EventKind::Completed { .. } => "completed",
            EventKind::Failed { .. } => "failed",
            EventKind::Cancelled => "cancelled",
        }
    }

    /// The state a job is in after this event.
    pub fn state(&self) -> State {
        match self {
            EventKind::Queued { .. } => State::Queued,
            EventKind::Running { .. } | EventKind::Progress { .. } | EventKind::Log { .. } => State::Running,
            EventKind::Completed { .. } => State::Completed,
            EventKind::Failed { .. } => State::Failed,
            EventKind::Cancelled => State::Cancelled,
        }
    }
}

/// A job: its state and everything that happened to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// Its id.
    pub id: String,
    /// The model it runs on.
    pub model: String,
    /// Where it is.
    pub state: State,
    /// Its history, oldest first.
    pub history: Vec<Event>,
}

/// An error answer: `{"error": {"code": .., "message": .., "diagnostics": [..]}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorInfo,
}

/// The error of an [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// A stable code: `missing_key`, `unknown_key`, `forbidden`, `unknown_model`, `not_found`,
    /// `too_large`, `bad_request`, `invalid_program`, `quota_exceeded`, `not_finished`,
    /// `expired`, `idempotency_conflict`, `range_not_satisfiable`, ...
    pub code: String,
    /// What is wrong, in words.
    pub message: String,
    /// For `invalid_program`: each problem found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<Diagnostic>,
}

impl ErrorBody {
    /// The body for `code` and `message`.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorInfo { code: code.to_owned(), message: message.into(), diagnostics: Vec::new() },
        }
    }

    /// The error's code.
    pub fn code(&self) -> &str {
        &self.error.code
    }
}
