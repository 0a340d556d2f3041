//! Workers: threads that each hold a copy of one model and run the jobs of its queue with the
//! interpreter — the same engine and backend code as local traces, so a job run alone gives the
//! bytes a local run gives. A worker that takes a job also takes the waiting jobs it can share
//! a forward pass with ([`batch`]); a job that fails or is stopped in a batch is
//! taken out and the batch re-run without it (the failing job then runs alone, for its own
//! error). Every site a job reaches asks its watch whether to go on: a cancelled job stops there,
//! and so does one past the wall-clock limit.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nnsight_remote::api::EventKind;
use nnsight_remote::interpret::{Hosted, Outcome, RunError, Value, Watch, run_language_model_watched};
use nnsight_remote::ir::Program;
use nnsight_remote::tensors;

use crate::batch::{self, Merged};
use crate::config::Batching;
use crate::hosted::{Cpu, Hostable, Loaded, Ready, Slot, Status};
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::queue::{Queue, Task};

/// The reason a cancelled job's watch gives.
const CANCELLED: &str = "cancelled by its owner";

/// Where a worker reports what happens to the jobs it runs: the in-memory [`Jobs`] of a
/// one-process server, or the job records of a NATS broker.
pub trait Reporter: Send + Sync + 'static {
    /// Job `id` starts on `worker` in a batch of `batch` jobs: its cancel flag, or `None` when
    /// it must not run (it ended already, e.g. cancelled while it was taken).
    fn start(&self, id: &str, worker: &str, batch: usize) -> Option<Arc<AtomicBool>>;
    /// Adds `kind` to job `id`'s history.
    fn event(&self, id: &str, kind: EventKind);
    /// Job `id` completed with `result` (stored before this returns).
    fn complete(&self, id: &str, result: Vec<u8>);
    /// Job `id` failed with `code`.
    fn fail(&self, id: &str, code: &str, message: String) {
        self.event(id, EventKind::Failed { code: code.to_owned(), message });
    }
    /// The worker is done with job `id`: whatever it reported is stored (a broker acks its
    /// message now).
    fn done(&self, id: &str) {
        let _ = id;
    }
    /// Model `model` is loaded (a broker publishes its manifest and twin for API processes).
    fn ready(&self, model: &str, ready: &Ready) {
        let _ = (model, ready);
    }
}

impl Reporter for Jobs {
    fn start(&self, id: &str, worker: &str, batch: usize) -> Option<Arc<AtomicBool>> {
        Jobs::start(self, id, worker, batch)
    }

    fn event(&self, id: &str, kind: EventKind) {
        Jobs::event(self, id, kind);
    }

    fn complete(&self, id: &str, result: Vec<u8>) {
        Jobs::complete(self, id, result);
    }
}

/// What a worker shares with the server.
#[derive(Clone)]
pub struct Shared {
    /// Where it reports.
    pub jobs: Arc<dyn Reporter>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The longest a job may run.
    pub time_limit: Duration,
    /// How jobs share forward passes.
    pub batching: Batching,
    /// Set when the server stops.
    pub stopping: Arc<AtomicBool>,
}

/// Starts the workers of `slot` (family `A`): each loads the model, the first to finish makes
/// it ready, then each runs jobs until the server stops.
pub fn start<A: Hostable>(slot: Arc<Slot>, shared: Shared) -> Vec<std::thread::JoinHandle<()>> {
    (0..slot.config.workers)
        .map(|index| {
            let (slot, shared) = (slot.clone(), shared.clone());
            let name = format!("{}/{index}", slot.config.key);
            std::thread::Builder::new()
                .name(format!("nnsight-worker-{name}"))
                .spawn(move || work::<A>(&slot, &shared, &name))
                .expect("the operating system starts a thread")
        })
        .collect()
}

fn work<A: Hostable>(slot: &Slot, shared: &Shared, name: &str) {
    let loaded = A::load(&slot.config.source).map_err(|e| e.to_string()).and_then(|(lm, config)| {
        let ready = Ready::of::<A>(&slot.config.key, &lm, &config)?;
        Ok((lm, ready))
    });
    let lm = match loaded {
        Ok((lm, ready)) => {
            if slot.ready().is_none() {
                eprintln!("nnsight-server: model `{}` ready ({})", slot.config.key, slot.config.source);
                shared.jobs.ready(&slot.config.key, &ready);
                slot.set_status(Status::Ready(Arc::new(ready)));
            }
            lm
        }
        Err(error) => {
            eprintln!("nnsight-server: model `{}` failed to load: {error}", slot.config.key);
            slot.set_status(Status::Failed(error));
            return;
        }
    };
    let hosted = A::hosted(lm.model());
    let labels = format!("model=\"{}\"", slot.config.key);
    while !shared.stopping.load(Ordering::SeqCst) {
        let Some(first) = slot.queue.pop(Duration::from_millis(200)) else { continue };
        let tasks = gather(&slot.queue, first, &shared.batching);
        let keys: Vec<String> = tasks.iter().map(|t| t.key.clone()).collect();
        let ids: Vec<String> = tasks.iter().map(|t| t.id.clone()).collect();
        let started = Instant::now();
        let forwards = Worker::<A> { lm: &lm, hosted: &hosted, shared, name }.run(tasks);
        shared.metrics.add("nnsight_job_run_seconds_total", &labels, started.elapsed().as_secs_f64());
        shared.metrics.add("nnsight_forward_batches_total", &labels, forwards as f64);
        shared.metrics.add("nnsight_batched_jobs_total", &labels, keys.len() as f64);
        for key in keys {
            slot.queue.done(&key);
        }
        for id in ids {
            shared.jobs.done(&id);
        }
    }
}

/// `first` and the waiting jobs that can share its forward pass, within the batching limits.
fn gather(queue: &Queue, first: Task, batching: &Batching) -> Vec<Task> {
    let Some(class) = first.class.clone() else { return vec![first] };
    let (mut rows, mut longest) = first.footprint;
    let mut tasks = vec![first];
    let deadline = Instant::now() + Duration::from_millis(batching.admission_window_ms);
    loop {
        let room = batching.max_jobs.saturating_sub(tasks.len());
        let more = queue.take_matching(room, |t| {
            let (r, l) = t.footprint;
            let fits =
                t.class.as_ref() == Some(&class) && (rows + r) * longest.max(l) <= batching.token_budget;
            if fits {
                rows += r;
                longest = longest.max(l);
            }
            fits
        });
        tasks.extend(more);
        let left = deadline.saturating_duration_since(Instant::now());
        if tasks.len() >= batching.max_jobs || left.is_zero() {
            return tasks;
        }
        queue.wait(left);
    }
}

/// A job being run: its task, cancel flag and tensors.
struct Running {
    task: Task,
    cancel: Arc<AtomicBool>,
    tensors: BTreeMap<String, Value<Cpu>>,
}

/// One worker's model and what it reports to.
struct Worker<'w, A: Hostable> {
    lm: &'w Loaded<A>,
    hosted: &'w Hosted<'w, Cpu>,
    shared: &'w Shared,
    name: &'w str,
}

/// How a run failed.
enum Failure {
    /// The watch stopped invoke `invoke` (cancelled, or past the time limit).
    Stopped { invoke: usize, reason: String },
    /// An invoke's body or standing edit failed.
    Invoke { invoke: usize, message: String },
    /// Anything else (a panic, an error outside every body).
    Other { code: &'static str, message: String },
}

impl<A: Hostable> Worker<'_, A> {
    /// Runs `tasks` (one batch); the forward runs it took.
    fn run(&self, tasks: Vec<Task>) -> usize {
        let jobs = &self.shared.jobs;
        let n = tasks.len();
        let mut live = Vec::with_capacity(n);
        for task in tasks {
            let Some(cancel) = jobs.start(&task.id, self.name, n) else { continue };
            match read_tensors(&task.tensors) {
                Ok(tensors) => live.push(Running { task, cancel, tensors }),
                Err(message) => self.fail(&task, "bad_tensors", message),
            }
        }
        let deadline = Instant::now() + self.shared.time_limit;
        let mut alone = Vec::new();
        let mut forwards = 0;
        while live.len() > 1 {
            forwards += 1;
            let programs: Vec<&Program> = live.iter().map(|r| &r.task.program).collect();
            let merged = batch::merge(&programs);
            let tensors = batch::merge_tensors(live.iter().map(|r| r.tensors.clone()).collect());
            let watch = self.watch(&live, Some(&merged), deadline);
            match self.interpret(&merged.program, &tensors, watch) {
                Ok(outcome) => {
                    for (running, outcome) in live.iter().zip(batch::split(outcome, live.len())) {
                        self.finish(&running.task, outcome);
                    }
                    live.clear();
                }
                Err(Failure::Stopped { invoke, reason }) => match merged.owner(invoke) {
                    Some(k) => self.stopped(&live.remove(k).task, &reason),
                    None => break,
                },
                // Taken out; its own error comes from running it alone.
                Err(Failure::Invoke { invoke, .. }) => match merged.owner(invoke) {
                    Some(k) => alone.push(live.remove(k)),
                    None => break,
                },
                // Not one job's failure: each runs alone.
                Err(Failure::Other { .. }) => break,
            }
        }
        for running in live.into_iter().chain(alone) {
            forwards += 1;
            let watch = self.watch(std::slice::from_ref(&running), None, deadline);
            match self.interpret(&running.task.program, &running.tensors, watch) {
                Ok(outcome) => self.finish(&running.task, outcome),
                Err(Failure::Stopped { reason, .. }) => self.stopped(&running.task, &reason),
                Err(Failure::Invoke { message, .. }) => self.fail(&running.task, "run_error", message),
                Err(Failure::Other { code, message }) => self.fail(&running.task, code, message),
            }
        }
        forwards
    }

    /// The watch of `running` (merged as `merged`, or one job alone).
    fn watch(&self, running: &[Running], merged: Option<&Merged>, deadline: Instant) -> Rc<JobsWatch> {
        let entries = running
            .iter()
            .enumerate()
            .map(|(k, r)| Entry {
                id: r.task.id.clone(),
                cancel: r.cancel.clone(),
                invokes: merged.map_or(0..usize::MAX, |m| m.invokes[k].clone()),
                traces: r.task.program.traces.len(),
                last: Cell::new(None),
            })
            .collect();
        Rc::new(JobsWatch {
            jobs: self.shared.jobs.clone(),
            entries,
            deadline,
            limit: self.shared.time_limit,
        })
    }

    /// Runs `program` under `watch`.
    fn interpret(
        &self,
        program: &Program,
        tensors: &BTreeMap<String, Value<Cpu>>,
        watch: Rc<JobsWatch>,
    ) -> Result<Outcome<Cpu>, Failure> {
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run_language_model_watched(self.lm, program, tensors, self.hosted, watch)
        }));
        match ran {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(RunError::Stopped { invoke, reason, .. })) => Err(Failure::Stopped { invoke, reason }),
            Ok(Err(error @ RunError::Trace { invoke: Some(invoke), .. })) => {
                Err(Failure::Invoke { invoke, message: error.to_string() })
            }
            Ok(Err(error)) => {
                let code = match &error {
                    RunError::Invalid(_) => "invalid_program",
                    RunError::NotInterpreted { .. } | RunError::NotHosted { .. } => "not_supported",
                    _ => "run_error",
                };
                Err(Failure::Other { code, message: error.to_string() })
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                let message = format!("the worker panicked running the job (a server bug): {message}");
                Err(Failure::Other { code: "internal_error", message })
            }
        }
    }

    /// Records `task`'s outcome: its result, or `result_too_large`.
    fn finish(&self, task: &Task, outcome: Outcome<Cpu>) {
        let jobs = &self.shared.jobs;
        for line in outcome.log {
            jobs.event(&task.id, EventKind::Log { line });
        }
        match tensors::write(&outcome.saves) {
            Ok(bytes) if bytes.len() as u64 > task.max_result_bytes => {
                let message = format!(
                    "the result has {} bytes; this key may receive {}",
                    bytes.len(),
                    task.max_result_bytes
                );
                self.fail(task, "result_too_large", message);
            }
            Ok(bytes) => {
                // Counted first: a client that sees the result then sees it in the metrics too.
                self.count("completed");
                jobs.complete(&task.id, bytes);
            }
            Err(diagnostic) => self.fail(task, "run_error", diagnostic.to_string()),
        }
    }

    /// `task` was stopped by its watch: cancelled, or past the time limit.
    fn stopped(&self, task: &Task, reason: &str) {
        if reason == CANCELLED {
            self.count("cancelled");
            self.shared.jobs.event(&task.id, EventKind::Cancelled);
        } else {
            self.fail(task, "time_limit", reason.to_owned());
        }
    }

    fn fail(&self, task: &Task, code: &str, message: String) {
        self.count("failed");
        self.shared.jobs.fail(&task.id, code, message);
    }

    fn count(&self, state: &str) {
        self.shared.metrics.add("nnsight_jobs_finished_total", &format!("state=\"{state}\""), 1.0);
    }
}

/// The tensors of a job.
fn read_tensors(bytes: &[u8]) -> Result<BTreeMap<String, Value<Cpu>>, String> {
    if bytes.is_empty() {
        return Ok(BTreeMap::new());
    }
    tensors::read::<Cpu>(bytes, &Default::default()).map_err(|d| d.to_string())
}

/// One watched job.
struct Entry {
    id: String,
    cancel: Arc<AtomicBool>,
    /// Its invokes in the program run.
    invokes: std::ops::Range<usize>,
    /// Traces in its program.
    traces: usize,
    /// The last (trace, step) reported.
    last: Cell<Option<(usize, u32)>>,
}

/// The jobs of one run, watched: each one's cancel flag and deadline at every site it reaches,
/// and its progress.
struct JobsWatch {
    jobs: Arc<dyn Reporter>,
    entries: Vec<Entry>,
    deadline: Instant,
    limit: Duration,
}

impl Watch for JobsWatch {
    fn site(&self, trace: usize, invoke: usize, occurrence: u32) -> Result<(), String> {
        let Some(entry) = self.entries.iter().find(|e| e.invokes.contains(&invoke)) else { return Ok(()) };
        if entry.cancel.load(Ordering::SeqCst) {
            return Err(CANCELLED.to_owned());
        }
        if Instant::now() > self.deadline {
            return Err(format!("the job ran past this server's limit of {} s", self.limit.as_secs_f64()));
        }
        if entry.last.get().is_none_or(|last| (trace, occurrence) > last) {
            entry.last.set(Some((trace, occurrence)));
            self.jobs.event(&entry.id, EventKind::Progress { trace, traces: entry.traces, step: occurrence });
        }
        Ok(())
    }
}
