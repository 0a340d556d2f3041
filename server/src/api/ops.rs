//! `GET /healthz` (the process answers), `/readyz` (every model loaded), `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use nnsight_remote::api::State as JobState;

use super::App;
use crate::hosted::Status;
use crate::store::Store;

/// The process answers.
pub(super) async fn healthz() -> &'static str {
    "ok\n"
}

/// `200` once every model is loaded; `503` naming those loading or failed.
pub(super) async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    let waiting: Vec<String> = app
        .models
        .iter()
        .filter_map(|(key, slot)| match slot.status() {
            Status::Ready(_) => None,
            Status::Loading => Some(format!("{key}: loading")),
            Status::Failed(why) => Some(format!("{key}: failed: {why}")),
        })
        .collect();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", waiting.join("\n")))
    }
}

/// The counters and gauges, in Prometheus' text format.
pub(super) async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let mut gauges = Vec::new();
    for (key, slot) in app.models.iter() {
        let labels = format!("model=\"{key}\"");
        gauges.push(("nnsight_queue_depth", labels.clone(), slot.queue.len() as f64));
        gauges.push(("nnsight_jobs_running", labels.clone(), slot.queue.running() as f64));
        gauges.push(("nnsight_model_ready", labels, f64::from(u8::from(slot.ready().is_some()))));
    }
    // Jobs per state: a broker's records are counted by the broker's own tools.
    if let Store::Memory(jobs) = &app.store {
        let counts = jobs.counts();
        for state in
            [JobState::Queued, JobState::Running, JobState::Completed, JobState::Failed, JobState::Cancelled]
        {
            let n = counts.get(&state).copied().unwrap_or(0);
            gauges.push(("nnsight_jobs", format!("state=\"{}\"", state_name(state)), n as f64));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render(&gauges))
}

fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Completed => "completed",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}
