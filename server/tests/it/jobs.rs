//! A job's life on the server: its events as they happen and resumed after a given one, its
//! status with the whole history, its result whole and by ranges, cancellation while queued and
//! while running (at the next site), a finished job's result deleted, the time limit.

use nnsight_remote::api::{EventKind, State};
use nnsight_remote::arch::Llama;
use nnsight_remote::client::{ClientError, RemoteModel, SubmitOptions};
use nnsight_server::config::Quota;

use super::harness::Harness;
use super::remote::steering;

fn kinds(events: &[nnsight_remote::api::Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.name()).collect()
}

#[test]
fn events_stream_as_they_happen_and_resume_after_the_last_seen() {
    let harness = Harness::start(|_| {});
    let key = harness.key("alice");
    let remote = RemoteModel::<Llama>::connect(&harness.url(), &key, "llama").unwrap();
    let job =
        remote.submit(&SubmitOptions::default(), |lm, rec| rec.save("last", &steering(lm, 3)?)).unwrap();
    let events: Vec<_> =
        job.events(0).unwrap().collect::<Result<_, _>>().expect("the stream ends with the job");
    let names = kinds(&events);
    assert_eq!(names.first(), Some(&"queued"), "{names:?}");
    assert_eq!(names.get(1), Some(&"running"), "{names:?}");
    assert_eq!(names.last(), Some(&"completed"), "{names:?}");
    // One progress event per generation step the program touches (steps 0, 1, 2).
    let steps: Vec<u32> = events
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Progress { step, .. } => Some(step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, [0, 1, 2], "{names:?}");
    assert!(events.windows(2).all(|w| w[1].id == w[0].id + 1), "numbered in order");

    // Resumed after event 1: the rest, the same.
    let rest: Vec<_> = job.events(2).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(rest, events[2..]);
    // The status holds the whole history.
    let view = job.status().unwrap();
    assert_eq!((view.state, view.history), (State::Completed, events));
}

#[test]
fn results_come_whole_or_by_range() {
    let harness = Harness::start(|_| {});
    let key = harness.key("alice");
    let remote = RemoteModel::<Llama>::connect(&harness.url(), &key, "llama").unwrap();
    let job =
        remote.submit(&SubmitOptions::default(), |lm, rec| rec.save("last", &steering(lm, 2)?)).unwrap();
    job.wait(false).unwrap();
    let url = format!("{}/v1/jobs/{}/result", harness.url(), job.id());
    let auth = format!("Bearer {key}");
    let fetch = |range: Option<&str>| {
        let mut request = ureq::get(&url).set("Authorization", &auth);
        if let Some(range) = range {
            request = request.set("Range", range);
        }
        match request.call() {
            Ok(r) => {
                let status = r.status();
                let content_range = r.header("Content-Range").map(str::to_owned);
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut r.into_reader(), &mut bytes).unwrap();
                (status, content_range, bytes)
            }
            Err(ureq::Error::Status(status, r)) => {
                (status, r.header("Content-Range").map(str::to_owned), Vec::new())
            }
            Err(e) => panic!("{e}"),
        }
    };
    let (status, _, whole) = fetch(None);
    assert_eq!(status, 200);
    let n = whole.len();
    let (status, range, head) = fetch(Some("bytes=0-99"));
    assert_eq!((status, range.as_deref()), (206, Some(format!("bytes 0-99/{n}").as_str())));
    let (_, _, tail) = fetch(Some("bytes=100-"));
    assert_eq!([head, tail].concat(), whole);
    let (status, range, _) = fetch(Some(&format!("bytes={n}-")));
    assert_eq!((status, range), (416, Some(format!("bytes */{n}"))));

    // Deleting a finished job deletes its result.
    job.cancel().unwrap();
    assert_eq!(job.result().unwrap_err().code(), Some("expired"));
}

#[test]
fn cancelling_removes_a_queued_job_and_stops_a_running_one_at_its_next_site() {
    let harness = Harness::start(|_| {});
    // One job at a time for this key: the second waits while the first runs.
    let key = harness.key_with("alice", Quota { max_running: 1, ..Quota::default() }, None);
    let remote = RemoteModel::<Llama>::connect(&harness.url(), &key, "llama").unwrap();
    let long =
        remote.submit(&SubmitOptions::default(), |lm, rec| rec.save("last", &steering(lm, 1000)?)).unwrap();
    let waiting =
        remote.submit(&SubmitOptions::default(), |lm, rec| rec.save("last", &steering(lm, 2)?)).unwrap();
    // Once the long job reports its first step, it runs and the other waits.
    for event in long.events(0).unwrap() {
        if matches!(event.unwrap().kind, EventKind::Progress { .. }) {
            break;
        }
    }
    assert_eq!(waiting.status().unwrap().state, State::Queued);
    let cancelled = waiting.cancel().unwrap();
    assert_eq!(kinds(&cancelled.history), ["queued", "cancelled"], "it never ran");

    long.cancel().unwrap();
    assert!(matches!(long.wait(false), Err(ClientError::Cancelled)));
    let history = long.status().unwrap().history;
    let steps = history.iter().filter(|e| matches!(e.kind, EventKind::Progress { .. })).count();
    assert!(steps < 1000, "it stopped early ({steps} steps)");
    // The worker is free again: a new job of the key completes.
    let again = remote.trace(|lm, rec| rec.save("last", &steering(lm, 2)?)).unwrap();
    assert!(again.get("last").is_some());
}

#[test]
fn a_job_past_the_time_limit_fails_at_a_site() {
    let harness = Harness::start(|config| config.job_time_limit_s = 0);
    let key = harness.key("alice");
    let remote = RemoteModel::<Llama>::connect(&harness.url(), &key, "llama").unwrap();
    let error = remote.trace(|lm, rec| rec.save("last", &steering(lm, 2)?)).unwrap_err();
    assert_eq!(error.code(), Some("time_limit"), "{error}");
}

#[test]
fn health_readiness_and_metrics_answer() {
    let harness = Harness::start(|_| {});
    let key = harness.key("alice");
    let remote = RemoteModel::<Llama>::connect(&harness.url(), &key, "llama").unwrap();
    remote.trace(|lm, rec| rec.save("last", &steering(lm, 2)?)).unwrap();
    let text =
        |path: &str| ureq::get(&format!("{}{path}", harness.url())).call().unwrap().into_string().unwrap();
    assert_eq!(text("/healthz"), "ok\n");
    assert_eq!(text("/readyz"), "ready\n");
    let metrics = text("/metrics");
    for line in [
        "nnsight_jobs_submitted_total{model=\"llama\"} 1",
        "nnsight_jobs_finished_total{state=\"completed\"} 1",
        "nnsight_model_ready{model=\"gpt2\"} 1",
        "nnsight_queue_depth{model=\"llama\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "`{line}` in\n{metrics}");
    }
}
