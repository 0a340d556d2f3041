//! Counters for `/metrics`, in Prometheus' text format: jobs submitted, refused, completed,
//! failed and cancelled per model, seconds spent running, and the gauges (queue depth, jobs
//! running, jobs per state) read when scraped.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Counter names and their help lines.
const HELP: &[(&str, &str, &str)] = &[
    ("nnsight_jobs_submitted_total", "counter", "Jobs accepted into a queue."),
    ("nnsight_jobs_refused_total", "counter", "Submissions refused, by HTTP status."),
    ("nnsight_jobs_finished_total", "counter", "Jobs that ended, by final state."),
    ("nnsight_job_run_seconds_total", "counter", "Seconds workers spent running jobs."),
    ("nnsight_forward_batches_total", "counter", "Forward runs of workers (a batch of one or more jobs)."),
    ("nnsight_batched_jobs_total", "counter", "Jobs taken by workers, in batches of one or more."),
    ("nnsight_queue_depth", "gauge", "Jobs waiting."),
    ("nnsight_jobs_running", "gauge", "Jobs running."),
    ("nnsight_model_ready", "gauge", "Whether a model is loaded (1) or not (0)."),
    ("nnsight_jobs", "gauge", "Jobs known, by state."),
];

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, String), f64>>,
}

impl Metrics {
    /// Adds `by` to counter `name` with `labels` (`model="gpt2"`).
    pub fn add(&self, name: &str, labels: &str, by: f64) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        *series.entry((name.to_owned(), labels.to_owned())).or_default() += by;
    }

    /// The text exposition of the counters and of `gauges` (name, labels, value).
    pub fn render(&self, gauges: &[(&str, String, f64)]) -> String {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let counters = series.iter().filter(|((n, _), _)| n == name).map(|((_, l), v)| (l.as_str(), *v));
            let gauge = gauges.iter().filter(|(n, _, _)| n == name).map(|(_, l, v)| (l.as_str(), *v));
            for (labels, value) in counters.chain(gauge) {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {value}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {value}");
                }
            }
        }
        out
    }
}
