//! [`Job`]: a submitted program on the server — poll it, follow its events, cancel it, fetch its
//! result ([`Saves`]), or [`wait`](Job::wait) for it with a progress bar.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};

use burn::prelude::*;
use burn::tensor::TensorData;

use super::{Client, ClientError};
use crate::api::{Event, EventKind, JobView};

/// How many times [`Job::wait`] reconnects an event stream that ended before the job did (a
/// restarted API process), waiting a little longer each time (up to 2 s), before it gives up.
const RECONNECTS: usize = 40;

/// Whether `error` may pass if asked again (no answer, or a server that is starting or whose
/// broker is away).
fn transient(error: &ClientError) -> bool {
    match error {
        ClientError::Transport(_) => true,
        ClientError::Server { status, .. } => *status == 503 || *status == 502,
        _ => false,
    }
}

/// The pause before attempt `n` (from 0).
fn backoff(n: usize) -> std::time::Duration {
    std::time::Duration::from_millis((100 * n as u64).min(2000))
}

/// A job on the server.
#[derive(Clone, Debug)]
pub struct Job {
    client: Client,
    id: String,
}

impl Job {
    pub(crate) fn new(client: Client, id: String) -> Job {
        Job { client, id }
    }

    /// Its id (give it to [`Client::job`] to find it again later).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its state and history now.
    ///
    /// # Errors
    /// [`ClientError::Server`] (`not_found` for a job of another key), or no answer.
    pub fn status(&self) -> Result<JobView, ClientError> {
        self.client.job_view(&self.id)
    }

    /// Its events from number `from` on (0: its whole history), as they happen; the stream ends
    /// after the job's last event (or when the connection drops: resume from the next number).
    ///
    /// # Errors
    /// As [`status`](Self::status).
    pub fn events(&self, from: u64) -> Result<Events, ClientError> {
        let mut request = self.client.request("GET", &format!("/v1/jobs/{}/events", self.id));
        if from > 0 {
            request = request.set("Last-Event-ID", &(from - 1).to_string());
        }
        let response = super::http::send(request.call())?;
        Ok(Events { lines: Box::new(BufReader::new(response.into_reader())), done: false })
    }

    /// Cancels it: a queued job is removed, a running one stops at its next site, a finished
    /// job's result is deleted.
    ///
    /// # Errors
    /// As [`status`](Self::status).
    pub fn cancel(&self) -> Result<JobView, ClientError> {
        let request = self.client.request("DELETE", &format!("/v1/jobs/{}", self.id));
        super::http::json(super::http::send(request.call())?)
    }

    /// Its result, once it has completed.
    ///
    /// # Errors
    /// [`ClientError::Server`] with `not_finished` (or the job's failure), `expired`; a result
    /// that is not a safetensors file is [`ClientError::Protocol`].
    pub fn result(&self) -> Result<Saves, ClientError> {
        let request = self.client.request("GET", &format!("/v1/jobs/{}/result", self.id));
        let response = super::http::send(request.call())?;
        let mut bytes = Vec::new();
        response
            .into_reader()
            .read_to_end(&mut bytes)
            .map_err(|e| ClientError::Transport(format!("reading the result: {e}")))?;
        Saves::from_safetensors(&bytes)
    }

    /// Waits for it to end, following its events (with a progress bar on a terminal when
    /// `progress`), and fetches its result.
    ///
    /// # Errors
    /// [`ClientError::Failed`] or [`ClientError::Cancelled`] when it did not complete; as
    /// [`result`](Self::result).
    pub fn wait(&self, progress: bool) -> Result<Saves, ClientError> {
        let bar = progress.then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} job {prefix}: {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar.set_prefix(self.id.chars().take(12).collect::<String>());
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        let mut next = 0;
        let mut last = None;
        for attempt in 0..RECONNECTS {
            std::thread::sleep(backoff(attempt));
            let events = match self.events(next) {
                Ok(events) => events,
                Err(error) if transient(&error) => continue,
                Err(error) => return Err(error),
            };
            for event in events {
                let event = match event {
                    Ok(event) => event,
                    // A dropped connection: resume where it stopped.
                    Err(ClientError::Transport(_)) => break,
                    Err(other) => return Err(other),
                };
                next = event.id + 1;
                if let Some(bar) = &bar {
                    bar.set_message(describe(&event.kind));
                }
                let kind = event.kind.clone();
                last = Some(kind.clone());
                if kind.state().is_final() {
                    break;
                }
            }
            if last.as_ref().is_some_and(|k| k.state().is_final()) {
                break;
            }
        }
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        match last {
            Some(EventKind::Completed { .. }) => {
                let mut attempt = 0;
                loop {
                    match self.result() {
                        Err(error) if transient(&error) && attempt < RECONNECTS => {
                            attempt += 1;
                            std::thread::sleep(backoff(attempt));
                        }
                        other => return other,
                    }
                }
            }
            Some(EventKind::Failed { code, message }) => Err(ClientError::Failed { code, message }),
            Some(EventKind::Cancelled) => Err(ClientError::Cancelled),
            _ => {
                let view = self.status()?;
                Err(ClientError::Protocol(format!(
                    "the event stream of job {} ended {RECONNECTS} times before the job did (it is {:?})",
                    self.id, view.state
                )))
            }
        }
    }
}

/// A progress line for `kind`.
fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::Queued { position: 0 } => "queued, next".to_owned(),
        EventKind::Queued { position } => format!("queued, {position} ahead"),
        EventKind::Running { batch: 1, .. } => "running".to_owned(),
        EventKind::Running { batch, .. } => format!("running, batched with {} other jobs", batch - 1),
        EventKind::Progress { trace, traces, step } => format!("trace {}/{traces}, step {step}", trace + 1),
        EventKind::Log { line } => line.clone(),
        EventKind::Completed { result_bytes, .. } => format!("completed ({result_bytes} bytes)"),
        EventKind::Failed { code, .. } => format!("failed ({code})"),
        EventKind::Cancelled => "cancelled".to_owned(),
    }
}

/// A job's events as a server-sent event stream delivers them.
pub struct Events {
    lines: Box<dyn BufRead + Send>,
    done: bool,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("done", &self.done).finish_non_exhaustive()
    }
}

impl Iterator for Events {
    type Item = Result<Event, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let mut data = String::new();
        loop {
            let mut line = String::new();
            match self.lines.read_line(&mut line) {
                Ok(0) => {
                    self.done = true;
                    return Some(Err(ClientError::Transport("the event stream ended".to_owned())));
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(ClientError::Transport(format!("the event stream broke: {e}"))));
                }
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if data.is_empty() {
                    continue;
                }
                let event = serde_json::from_str::<Event>(&data)
                    .map_err(|e| ClientError::Protocol(format!("an event that is not one: {e}: {data}")));
                if event.as_ref().is_ok_and(|e| e.kind.state().is_final()) {
                    self.done = true;
                }
                return Some(event);
            }
            if let Some(rest) = line.strip_prefix("data:") {
                data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            }
            // `id:`, `event:` and comments (keep-alives) repeat what `data` holds.
        }
    }
}

/// What a job saved, by name (each as the save cast it).
#[derive(Clone, Debug, Default)]
pub struct Saves {
    values: BTreeMap<String, TensorData>,
}

impl Saves {
    /// The saves of a result file.
    ///
    /// # Errors
    /// [`ClientError::Protocol`]: not a safetensors file, or an element type the IR has not.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Saves, ClientError> {
        crate::tensors::read_data(bytes)
            .map(|values| Saves { values })
            .map_err(|d| ClientError::Protocol(format!("the result is not a tensors file: {}", d.message)))
    }

    /// The save `name`.
    pub fn get(&self, name: &str) -> Option<&TensorData> {
        self.values.get(name)
    }

    /// The save `name` as a float tensor of rank `D` on `device`.
    ///
    /// # Errors
    /// [`ClientError::Protocol`] when there is no such save or it has another rank.
    pub fn tensor<B: Backend, const D: usize>(
        &self,
        name: &str,
        device: &B::Device,
    ) -> Result<Tensor<B, D>, ClientError> {
        let data =
            self.get(name).ok_or_else(|| ClientError::Protocol(format!("the job saved no `{name}`")))?;
        if data.shape.len() != D {
            return Err(ClientError::Protocol(format!("`{name}` has rank {}, not {D}", data.shape.len())));
        }
        Ok(Tensor::from_data(data.clone(), device))
    }

    /// The names saved.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Every save, by name.
    pub fn into_map(self) -> BTreeMap<String, TensorData> {
        self.values
    }
}
