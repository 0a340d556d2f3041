//! [`Client`]: one server and one API key, over blocking HTTP; every answer decoded into the
//! [`api`](crate::api) types, every error answer into [`ClientError::Server`].

use std::io::Read;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{ClientError, Job};
use crate::api::{ErrorBody, Estimate, JobView, ModelInfo, Submitted, Twin};
use crate::intervention::Intervention;
use crate::manifest::Manifest;

/// The most bytes of a JSON answer the client reads (a manifest of a large model is a few MB).
const MAX_JSON_BYTES: u64 = 256 << 20;

/// A connection to an `nnsight-server` with one API key.
#[derive(Clone)]
pub struct Client {
    base: String,
    key: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Client").field("base", &self.base).finish_non_exhaustive()
    }
}

/// How a job is to run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubmitOptions {
    /// Run it alone, never batched with other users' jobs (bit-exact with a local run).
    pub exclusive: bool,
    /// A key that makes submitting twice submit once (`Idempotency-Key`): a retry after a lost
    /// answer gets the first job.
    pub idempotency_key: Option<String>,
}

impl Client {
    /// A client of the server at `url` (`http://127.0.0.1:8470`) with the API key `key`.
    pub fn new(url: &str, key: &str) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(300))
            .build();
        Client { base: url.trim_end_matches('/').to_owned(), key: key.to_owned(), agent }
    }

    /// The server's address.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The hosted models.
    ///
    /// # Errors
    /// [`ClientError`]: the server's answer, or no answer.
    pub fn models(&self) -> Result<Vec<ModelInfo>, ClientError> {
        self.get_json("/v1/models")
    }

    /// The manifest of hosted model `model`.
    ///
    /// # Errors
    /// As [`models`](Self::models); `unknown_model`.
    pub fn manifest(&self, model: &str) -> Result<Manifest, ClientError> {
        self.get_json(&format!("/v1/models/{model}/manifest"))
    }

    /// What the shape-only twin of `model` is built from.
    ///
    /// # Errors
    /// As [`manifest`](Self::manifest).
    pub fn twin(&self, model: &str) -> Result<Twin, ClientError> {
        self.get_json(&format!("/v1/models/{model}/twin"))
    }

    /// Sends `intervention` to run on `model`; the job is queued (see [`Job`]).
    ///
    /// # Errors
    /// [`ClientError::Server`]: `invalid_program` (with diagnostics), `quota_exceeded`,
    /// `too_large`, ...; or no answer.
    pub fn submit(
        &self,
        model: &str,
        intervention: &Intervention,
        options: &SubmitOptions,
    ) -> Result<Job, ClientError> {
        let (content_type, body) = form(model, intervention, options.exclusive);
        let mut request = self.request("POST", "/v1/jobs").set("Content-Type", &content_type);
        if let Some(key) = &options.idempotency_key {
            request = request.set("Idempotency-Key", key);
        }
        let submitted: Submitted = json(send(request.send_bytes(&body))?)?;
        Ok(Job::new(self.clone(), submitted.id))
    }

    /// What `intervention` would cost on `model`, checked as a submission is but not queued.
    ///
    /// # Errors
    /// As [`submit`](Self::submit).
    pub fn validate(&self, model: &str, intervention: &Intervention) -> Result<Estimate, ClientError> {
        let (content_type, body) = form(model, intervention, false);
        let request = self.request("POST", "/v1/jobs:validate").set("Content-Type", &content_type);
        json(send(request.send_bytes(&body))?)
    }

    /// The job `id` (one this key submitted).
    pub fn job(&self, id: &str) -> Job {
        Job::new(self.clone(), id.to_owned())
    }

    /// A request to `path` with the key.
    pub(crate) fn request(&self, method: &str, path: &str) -> ureq::Request {
        self.agent
            .request(method, &format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.key))
    }

    /// `GET path`, decoded.
    pub(crate) fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        json(send(self.request("GET", path).call())?)
    }

    /// `GET /v1/jobs/{id}`.
    pub(crate) fn job_view(&self, id: &str) -> Result<JobView, ClientError> {
        self.get_json(&format!("/v1/jobs/{id}"))
    }
}

/// The response, or the server's error answer as [`ClientError::Server`].
pub(crate) fn send(result: Result<ureq::Response, ureq::Error>) -> Result<ureq::Response, ClientError> {
    match result {
        Ok(response) => Ok(response),
        Err(ureq::Error::Status(status, response)) => {
            let retry_after = response.header("Retry-After").and_then(|s| s.parse().ok());
            let mut text = String::new();
            let _ = response.into_reader().take(1 << 20).read_to_string(&mut text);
            let body = serde_json::from_str::<ErrorBody>(&text)
                .unwrap_or_else(|_| ErrorBody::new("unexpected", format!("HTTP {status}: {text}")));
            Err(ClientError::Server { status, body, retry_after })
        }
        Err(ureq::Error::Transport(t)) => Err(ClientError::Transport(t.to_string())),
    }
}

/// A JSON answer, decoded.
pub(crate) fn json<T: DeserializeOwned>(response: ureq::Response) -> Result<T, ClientError> {
    let mut text = Vec::new();
    response
        .into_reader()
        .take(MAX_JSON_BYTES)
        .read_to_end(&mut text)
        .map_err(|e| ClientError::Transport(format!("reading the answer: {e}")))?;
    serde_json::from_slice(&text)
        .map_err(|e| ClientError::Protocol(format!("an answer that is not what was asked: {e}")))
}

/// The multipart form of a submission: its content type and body.
fn form(model: &str, intervention: &Intervention, exclusive: bool) -> (String, Vec<u8>) {
    let program = crate::canonical::encode(&intervention.program);
    let mut parts: Vec<(&str, &str, &[u8])> =
        vec![("model", "text/plain", model.as_bytes()), ("program", "application/json", program.as_bytes())];
    if !intervention.tensors.is_empty() {
        parts.push(("tensors", "application/octet-stream", &intervention.tensors));
    }
    if exclusive {
        parts.push(("exclusive", "text/plain", b"true"));
    }
    let boundary = boundary(&parts);
    let mut body = Vec::new();
    for (name, content_type, bytes) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A multipart boundary found in none of `parts`.
fn boundary(parts: &[(&str, &str, &[u8])]) -> String {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id()) << 32;
    loop {
        // splitmix64: only needs to differ from the content, not to be secret.
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let candidate = format!("nnsight-{:016x}", z ^ (z >> 31));
        let found = parts
            .iter()
            .any(|(_, _, bytes)| bytes.windows(candidate.len()).any(|w| w == candidate.as_bytes()));
        if !found {
            return candidate;
        }
    }
}
