//! The jobs: each one's state, full history (what the events stream replays and follows), its
//! result until the result's time to live runs out, and what each key has used (results kept,
//! compute today). Idempotency keys map a repeated submission to its first job.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nnsight_remote::api::{Event, EventKind, JobView, State};
use tokio::sync::watch;

use crate::keys::now_ms;

/// One job.
#[derive(Debug)]
struct Job {
    key: String,
    model: String,
    state: State,
    history: Vec<Event>,
    result: Option<Arc<Vec<u8>>>,
    /// When its result goes (or, once it has ended, when it is forgotten).
    expires_ms: Option<u64>,
    cancel: Arc<AtomicBool>,
    /// The number of events so far, for the event streams waiting on it.
    notify: watch::Sender<u64>,
}

/// What one key uses now.
#[derive(Debug, Default)]
struct Usage {
    /// Bytes of its results kept.
    result_bytes: u64,
    /// The UTC day `compute` counts (days since the Unix epoch).
    day: u64,
    /// Positions charged on that day.
    compute: u64,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<String, Job>,
    /// (key, idempotency key) → (job, digest of the request).
    idempotency: HashMap<(String, String), (String, String)>,
    usage: HashMap<String, Usage>,
}

/// Why a result cannot be had.
#[derive(Debug, PartialEq, Eq)]
pub enum ResultError {
    /// No such job for this key.
    NotFound,
    /// It has not ended.
    NotFinished(State),
    /// It ended without one (failed or cancelled): the last event's code and message.
    NoResult(String, String),
    /// It was deleted (its time to live ran out, or its owner deleted it).
    Expired,
}

/// Why a quota refuses a job, and when to try again (seconds).
#[derive(Debug, PartialEq, Eq)]
pub struct OverQuota {
    /// What is used up.
    pub what: String,
    /// Seconds until it may be available.
    pub retry_after: u64,
}

/// Every job of the server.
#[derive(Debug)]
pub struct Jobs {
    inner: Mutex<Inner>,
    /// How long results are kept, in ms.
    ttl_ms: u64,
}

const DAY_MS: u64 = 86_400_000;

impl Jobs {
    /// No jobs yet; results are kept `ttl_s` seconds.
    pub fn new(ttl_s: u64) -> Jobs {
        Jobs { inner: Mutex::default(), ttl_ms: ttl_s.saturating_mul(1000) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims idempotency key `idem` of `key` for job `id` (a request of digest `digest`), in one
    /// step: `Ok(None)` when it is new (now `id`'s), `Ok(Some(job))` when an earlier submission of
    /// the same request made `job`, `Err(job)` when the key came with another request.
    pub fn claim(&self, key: &str, idem: &str, digest: &str, id: &str) -> Result<Option<String>, String> {
        let mut inner = self.lock();
        match inner.idempotency.entry((key.to_owned(), idem.to_owned())) {
            std::collections::hash_map::Entry::Occupied(e) if e.get().1 == digest => {
                Ok(Some(e.get().0.clone()))
            }
            std::collections::hash_map::Entry::Occupied(e) => Err(e.get().0.clone()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert((id.to_owned(), digest.to_owned()));
                Ok(None)
            }
        }
    }

    /// Gives back a claim of [`claim`](Self::claim) whose job was not queued.
    pub fn release(&self, key: &str, idem: &str) {
        self.lock().idempotency.remove(&(key.to_owned(), idem.to_owned()));
    }

    /// Charges `positions` of compute to `key` for today, if its `per_day` allows; and checks
    /// that `result_bytes` more fit in its `max_result_bytes`.
    ///
    /// # Errors
    /// [`OverQuota`] naming what is used up.
    pub fn charge(
        &self,
        key: &str,
        positions: u64,
        per_day: u64,
        result_bytes: u64,
        max_result_bytes: u64,
    ) -> Result<(), OverQuota> {
        let now = now_ms();
        let mut inner = self.lock();
        let oldest_expiry = inner
            .jobs
            .values()
            .filter(|j| j.key == key && j.result.is_some())
            .filter_map(|j| j.expires_ms)
            .min();
        let usage = inner.usage.entry(key.to_owned()).or_default();
        if usage.day != now / DAY_MS {
            usage.day = now / DAY_MS;
            usage.compute = 0;
        }
        if usage.result_bytes.saturating_add(result_bytes) > max_result_bytes {
            let retry_after = oldest_expiry.map_or(1, |t| t.saturating_sub(now).div_ceil(1000).max(1));
            return Err(OverQuota {
                what: format!(
                    "results kept: {} bytes held and up to {result_bytes} more asked, of {max_result_bytes} (fetch and delete results, or wait for them to expire)",
                    usage.result_bytes
                ),
                retry_after,
            });
        }
        if usage.compute.saturating_add(positions) > per_day {
            let retry_after = ((usage.day + 1) * DAY_MS).saturating_sub(now).div_ceil(1000).max(1);
            return Err(OverQuota {
                what: format!(
                    "compute today: {} positions used and {positions} asked, of {per_day} per day",
                    usage.compute
                ),
                retry_after,
            });
        }
        usage.compute += positions;
        Ok(())
    }

    /// A new job id.
    pub fn new_id() -> String {
        format!("job_{}", crate::keys::random_id(12))
    }

    /// Job `id` of `key` on `model`, queued at `position`.
    pub fn create(&self, id: &str, key: &str, model: &str, position: usize) {
        let id = id.to_owned();
        let mut job = Job {
            key: key.to_owned(),
            model: model.to_owned(),
            state: State::Queued,
            history: Vec::new(),
            result: None,
            expires_ms: None,
            cancel: Arc::new(AtomicBool::new(false)),
            notify: watch::channel(0).0,
        };
        push(&mut job, EventKind::Queued { position }, self.ttl_ms);
        let mut inner = self.lock();
        inner.jobs.insert(id, job);
    }

    /// Adds `kind` to job `id`'s history (nothing once it has ended).
    pub fn event(&self, id: &str, kind: EventKind) {
        let mut inner = self.lock();
        if let Some(job) = inner.jobs.get_mut(id) {
            push(job, kind, self.ttl_ms);
        }
    }

    /// Job `id` starts running: its cancel flag, or `None` if it ended already (cancelled while
    /// a worker took it).
    pub fn start(&self, id: &str, worker: &str, batch: usize) -> Option<Arc<AtomicBool>> {
        let mut inner = self.lock();
        let job = inner.jobs.get_mut(id)?;
        if job.state != State::Queued {
            return None;
        }
        push(job, EventKind::Running { worker: worker.to_owned(), batch }, self.ttl_ms);
        Some(job.cancel.clone())
    }

    /// Job `id` completed with `result`.
    pub fn complete(&self, id: &str, result: Vec<u8>) {
        let mut inner = self.lock();
        let Inner { jobs, usage, .. } = &mut *inner;
        let Some(job) = jobs.get_mut(id) else { return };
        if job.state.is_final() {
            return;
        }
        let bytes = result.len() as u64;
        let expires_ms = now_ms().saturating_add(self.ttl_ms);
        job.result = Some(Arc::new(result));
        usage.entry(job.key.clone()).or_default().result_bytes += bytes;
        push(job, EventKind::Completed { result_bytes: bytes, expires_ms }, self.ttl_ms);
    }

    /// Job `id` failed with `code`.
    pub fn fail(&self, id: &str, code: &str, message: String) {
        self.event(id, EventKind::Failed { code: code.to_owned(), message });
    }

    /// The job `id` if `key` owns it.
    pub fn view(&self, id: &str, key: &str) -> Option<JobView> {
        let inner = self.lock();
        let job = inner.jobs.get(id).filter(|j| j.key == key)?;
        Some(JobView {
            id: id.to_owned(),
            model: job.model.clone(),
            state: job.state,
            history: job.history.clone(),
        })
    }

    /// The model and state of job `id` if `key` owns it.
    pub fn owned(&self, id: &str, key: &str) -> Option<(String, State)> {
        let inner = self.lock();
        inner.jobs.get(id).filter(|j| j.key == key).map(|j| (j.model.clone(), j.state))
    }

    /// Cancels job `id` of `key`: `removed` says the queue dropped it (it never ran); a running
    /// job's flag is set (it stops at its next site); a finished job's result is deleted.
    pub fn cancel(&self, id: &str, key: &str, removed: bool) -> Option<JobView> {
        {
            let mut inner = self.lock();
            let Inner { jobs, usage, .. } = &mut *inner;
            let job = jobs.get_mut(id).filter(|j| j.key == key)?;
            match job.state {
                State::Queued if removed => push(job, EventKind::Cancelled, self.ttl_ms),
                State::Queued | State::Running => job.cancel.store(true, Ordering::SeqCst),
                _ => {
                    if let Some(result) = job.result.take() {
                        let u = usage.entry(job.key.clone()).or_default();
                        u.result_bytes = u.result_bytes.saturating_sub(result.len() as u64);
                    }
                }
            }
        }
        self.view(id, key)
    }

    /// Job `id`'s events from number `from`, whether it has ended, and a receiver that changes
    /// when an event is added; `None` if `key` does not own it.
    pub fn follow(&self, id: &str, key: &str, from: u64) -> Option<(Vec<Event>, bool, watch::Receiver<u64>)> {
        let inner = self.lock();
        let job = inner.jobs.get(id).filter(|j| j.key == key)?;
        let events = job.history.iter().skip(from as usize).cloned().collect();
        Some((events, job.state.is_final(), job.notify.subscribe()))
    }

    /// Job `id`'s result.
    ///
    /// # Errors
    /// [`ResultError`].
    pub fn result(&self, id: &str, key: &str) -> Result<Arc<Vec<u8>>, ResultError> {
        let inner = self.lock();
        let job = inner.jobs.get(id).filter(|j| j.key == key).ok_or(ResultError::NotFound)?;
        match (job.state, &job.result) {
            (State::Completed, Some(result)) => Ok(result.clone()),
            (State::Completed, None) => Err(ResultError::Expired),
            (State::Failed | State::Cancelled, _) => {
                let (code, message) = match job.history.last().map(|e| &e.kind) {
                    Some(EventKind::Failed { code, message }) => (code.clone(), message.clone()),
                    _ => ("cancelled".to_owned(), "the job was cancelled".to_owned()),
                };
                Err(ResultError::NoResult(code, message))
            }
            (state, _) => Err(ResultError::NotFinished(state)),
        }
    }

    /// Deletes results whose time has come, and forgets jobs that ended a time to live ago
    /// (their ids then answer `404`).
    pub fn sweep(&self) {
        let now = now_ms();
        let mut inner = self.lock();
        let Inner { jobs, usage, idempotency } = &mut *inner;
        for job in jobs.values_mut() {
            if job.expires_ms.is_some_and(|t| t <= now)
                && let Some(result) = job.result.take()
            {
                let u = usage.entry(job.key.clone()).or_default();
                u.result_bytes = u.result_bytes.saturating_sub(result.len() as u64);
            }
        }
        // A job is forgotten a second time to live after its result went.
        let forget = |job: &Job| {
            job.state.is_final() && job.expires_ms.is_some_and(|t| t.saturating_add(self.ttl_ms) <= now)
        };
        jobs.retain(|_, job| !forget(job));
        idempotency.retain(|_, (job, _)| jobs.contains_key(job));
    }

    /// Jobs per state, for metrics.
    pub fn counts(&self) -> HashMap<State, usize> {
        let inner = self.lock();
        let mut counts = HashMap::new();
        for job in inner.jobs.values() {
            *counts.entry(job.state).or_default() += 1;
        }
        counts
    }
}

/// Adds `kind` to `job`'s history, unless the job has ended.
fn push(job: &mut Job, kind: EventKind, ttl_ms: u64) {
    if job.state.is_final() {
        return;
    }
    let now = now_ms();
    job.state = kind.state();
    if job.state.is_final() && job.expires_ms.is_none() {
        job.expires_ms = Some(now.saturating_add(ttl_ms));
    }
    let id = job.history.len() as u64;
    job.history.push(Event { id, at_ms: now, kind });
    job.notify.send_replace(id + 1);
}
