//! Workers: threads that each hold a copy of one model and run the jobs of its queue with the
//! interpreter — the same engine and backend code as local traces, so a job's saves are the
//! bytes a local run gives. Every site access asks the job's watch whether to go on: a
//! cancelled job stops there, and so does one past the wall-clock limit.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nnsight_remote::api::EventKind;
use nnsight_remote::interpret::{Hosted, RunError, Watch, run_language_model_watched};
use nnsight_remote::tensors;

use crate::hosted::{Cpu, Hostable, Loaded, Ready, Slot, Status};
use crate::jobs::Jobs;
use crate::metrics::Metrics;
use crate::queue::Task;

/// The reason a cancelled job's watch gives.
const CANCELLED: &str = "cancelled by its owner";

/// What a worker shares with the server.
#[derive(Clone, Debug)]
pub struct Shared {
    /// The jobs.
    pub jobs: Arc<Jobs>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// The longest a job may run.
    pub time_limit: Duration,
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
    let lm = match A::load(&slot.config.source).map_err(|e| e.to_string()).and_then(|(lm, config)| {
        let ready = Ready::of::<A>(&slot.config.key, &lm, &config)?;
        Ok((lm, ready))
    }) {
        Ok((lm, ready)) => {
            if slot.ready().is_none() {
                eprintln!("nnsight-server: model `{}` ready ({})", slot.config.key, slot.config.source);
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
    while !shared.stopping.load(Ordering::SeqCst) {
        let Some(task) = slot.queue.pop(Duration::from_millis(200)) else { continue };
        let started = Instant::now();
        run::<A>(&lm, &hosted, &task, shared, name);
        let labels = format!("model=\"{}\"", slot.config.key);
        shared.metrics.add("nnsight_job_run_seconds_total", &labels, started.elapsed().as_secs_f64());
        shared.metrics.add("nnsight_forward_batches_total", &labels, 1.0);
        slot.queue.done(&task.key);
    }
}

/// Runs one task and records how it ended.
fn run<A: Hostable>(lm: &Loaded<A>, hosted: &Hosted<'_, Cpu>, task: &Task, shared: &Shared, name: &str) {
    let jobs = &shared.jobs;
    let Some(cancel) = jobs.start(&task.id, name, 1) else { return };
    let finished = |state: &str| {
        shared.metrics.add("nnsight_jobs_finished_total", &format!("state=\"{state}\""), 1.0);
    };
    let tensors = if task.tensors.is_empty() {
        Ok(BTreeMap::new())
    } else {
        tensors::read::<Cpu>(&task.tensors, &Default::default())
    };
    let tensors = match tensors {
        Ok(tensors) => tensors,
        Err(diagnostic) => {
            jobs.fail(&task.id, "bad_tensors", diagnostic.to_string());
            finished("failed");
            return;
        }
    };
    let watch = Rc::new(JobWatch {
        jobs: jobs.clone(),
        id: task.id.clone(),
        cancel,
        deadline: Instant::now() + shared.time_limit,
        limit: shared.time_limit,
        traces: task.program.traces.len(),
        last: Cell::new(None),
    });
    let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
        run_language_model_watched(lm, &task.program, &tensors, hosted, watch)
    }));
    let (code, message) = match ran {
        Ok(Ok(outcome)) => {
            for line in outcome.log {
                jobs.event(&task.id, EventKind::Log { line });
            }
            match tensors::write(&outcome.saves) {
                Ok(bytes) if bytes.len() as u64 > task.max_result_bytes => (
                    "result_too_large",
                    format!(
                        "the result has {} bytes; this key may receive {}",
                        bytes.len(),
                        task.max_result_bytes
                    ),
                ),
                Ok(bytes) => {
                    jobs.complete(&task.id, bytes);
                    finished("completed");
                    return;
                }
                Err(diagnostic) => ("run_error", diagnostic.to_string()),
            }
        }
        Ok(Err(RunError::Stopped { reason, .. })) if reason == CANCELLED => {
            jobs.event(&task.id, EventKind::Cancelled);
            finished("cancelled");
            return;
        }
        Ok(Err(error @ RunError::Stopped { .. })) => ("time_limit", error.to_string()),
        Ok(Err(error @ RunError::Invalid(_))) => ("invalid_program", error.to_string()),
        Ok(Err(error @ (RunError::NotInterpreted { .. } | RunError::NotHosted { .. }))) => {
            ("not_supported", error.to_string())
        }
        Ok(Err(error @ RunError::Trace { .. })) => ("run_error", error.to_string()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            ("internal_error", format!("the worker panicked running the job (a server bug): {message}"))
        }
    };
    jobs.fail(&task.id, code, message);
    finished("failed");
}

/// A running job's watch: its cancel flag and deadline at every site, and its progress.
struct JobWatch {
    jobs: Arc<Jobs>,
    id: String,
    cancel: Arc<AtomicBool>,
    deadline: Instant,
    limit: Duration,
    /// Traces in the program.
    traces: usize,
    /// The last (trace, step) reported.
    last: Cell<Option<(usize, u32)>>,
}

impl Watch for JobWatch {
    fn site(&self, trace: usize, occurrence: u32) -> Result<(), String> {
        if self.cancel.load(Ordering::SeqCst) {
            return Err(CANCELLED.to_owned());
        }
        if Instant::now() > self.deadline {
            return Err(format!("the job ran past this server's limit of {} s", self.limit.as_secs_f64()));
        }
        if self.last.get().is_none_or(|last| (trace, occurrence) > last) {
            self.last.set(Some((trace, occurrence)));
            self.jobs.event(&self.id, EventKind::Progress { trace, traces: self.traces, step: occurrence });
        }
        Ok(())
    }
}
