//! Scale-out on a real `nats-server`: separate API and worker processes of this build share it.
//! Local == remote through them; a worker killed mid-job (its job is delivered again and
//! completes once, equal); a worker that dies after storing a result (the next delivery only
//! acks); a job that kills every worker that takes it (failed as `worker_crashed` after the
//! delivery cap, while the others complete); the broker and the API restarted mid-run (no job
//! lost).

use nnsight_remote::api::{EventKind, State};
use nnsight_remote::arch::{Gpt2, Llama};
use nnsight_remote::client::{Client, Job, RemoteModel, SubmitOptions};
use nnsight_server::keys::KeyStore;

use super::broker::{Nats, Process, config, nats_binary, wait_for};
use super::remote::{assert_same, local_gpt2, patching_and_lens, steering};

/// A broker, a config on it, and a key.
struct Cluster {
    nats: Nats,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    key: String,
}

impl Cluster {
    fn start(extra: &str) -> Option<Cluster> {
        let nats = Nats::start(nats_binary()?);
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &nats.url(), extra, 32);
        let key = KeyStore::open(&dir.path().join("keys.json")).unwrap().add("alice", None, None).unwrap().0;
        Some(Cluster { nats, dir, config, key })
    }

    fn process(&self, role: &str, env: &[(&str, &str)]) -> Process {
        Process::start(role, &self.config, env)
    }
}

fn count(job: &Job, kind: &str) -> usize {
    job.status().unwrap().history.iter().filter(|e| e.kind.name() == kind).count()
}

/// Waits until `job` reports progress (it runs).
fn until_running(job: &Job) {
    wait_for(
        || job.status().unwrap().history.iter().any(|e| matches!(e.kind, EventKind::Progress { .. })),
        "the job to run",
    );
}

#[test]
fn api_and_worker_processes_give_local_bytes() {
    let Some(cluster) = Cluster::start("") else { return };
    let worker = cluster.process("worker", &[]);
    let api = cluster.process("api", &[]);
    worker.wait_ready();
    api.wait_ready();
    let remote = RemoteModel::<Gpt2>::connect(&api.url, &cluster.key, "gpt2")
        .expect("connects through the API process");
    let saves = remote
        .trace(|lm, rec| {
            let (patched, lens) = patching_and_lens(lm)?;
            rec.save("patched", &patched)?;
            rec.save("lens", &lens)
        })
        .unwrap();
    let (patched, lens) = patching_and_lens(&local_gpt2()).unwrap();
    assert_same(&saves, "patched", &patched);
    assert_same(&saves, "lens", &lens);
    // Status, events and cancel of a finished job through the broker's records.
    let client = Client::new(&api.url, &cluster.key);
    let job =
        remote.submit(&SubmitOptions::default(), |lm, rec| rec.save("last", &steering_gpt2(lm)?)).unwrap();
    let events: Vec<_> = job.events(0).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(events.first().map(|e| e.kind.name()), Some("queued"));
    assert_eq!(events.last().map(|e| e.kind.name()), Some("completed"));
    assert_eq!(client.job(job.id()).status().unwrap().history, events);
    job.cancel().unwrap();
    assert_eq!(job.result().unwrap_err().code(), Some("expired"));
    let _ = cluster.dir.path();
}

/// A small GPT-2 job.
fn steering_gpt2<B: burn::prelude::Backend>(
    lm: &nnsight_models::LanguageModel<B, nnsight_models::gpt2::Gpt2LMHeadModel<B>>,
) -> nnsight::Result<burn::prelude::Tensor<B, 3>> {
    lm.trace("The Eiffel Tower").run(async |m| m.transformer.h[1].output().await)
}

#[test]
fn a_worker_killed_mid_job_is_replaced_and_the_job_completes_once() {
    let Some(cluster) = Cluster::start("") else { return };
    let api = cluster.process("api", &[]);
    let mut first = cluster.process("worker", &[]);
    first.wait_ready();
    api.wait_ready();
    let remote = RemoteModel::<Llama>::connect(&api.url, &cluster.key, "llama").unwrap();
    let job =
        remote.submit(&SubmitOptions::default(), |lm, rec| rec.save("last", &steering(lm, 300)?)).unwrap();
    until_running(&job);
    first.kill();
    let second = cluster.process("worker", &[]);
    second.wait_ready();
    let saves = job.wait(false).expect("the job completes on the second worker");
    assert_eq!(count(&job, "running"), 2, "it ran twice");
    assert_eq!(count(&job, "completed"), 1, "and completed once");
    let local = steering(&super::batching_local(), 300).unwrap();
    assert_same(&saves, "last", &local);
}

#[test]
fn a_result_stored_before_its_worker_died_is_only_acked() {
    let Some(cluster) = Cluster::start("") else { return };
    let api = cluster.process("api", &[]);
    let mut dying = cluster.process("worker", &[("NNSIGHT_FAILPOINT", "exit-after-result-stored")]);
    dying.wait_ready();
    api.wait_ready();
    let remote = RemoteModel::<Gpt2>::connect(&api.url, &cluster.key, "gpt2").unwrap();
    let job = remote.submit(&SubmitOptions::default(), |lm, rec| rec.save("h", &steering_gpt2(lm)?)).unwrap();
    wait_for(|| dying.exited().is_some(), "the worker to die after storing the result");
    let second = cluster.process("worker", &[]);
    second.wait_ready();
    let saves = job.wait(false).expect("the stored result is taken");
    assert_eq!(count(&job, "running"), 1, "not run again");
    assert_eq!(count(&job, "completed"), 1);
    assert_same(&saves, "h", &steering_gpt2(&local_gpt2()).unwrap());
}

#[test]
fn a_job_that_kills_its_workers_fails_after_the_delivery_cap_and_others_complete() {
    let Some(cluster) = Cluster::start("") else { return };
    let api = cluster.process("api", &[]);
    api.wait_ready_after_worker(&cluster);
    let remote = RemoteModel::<Gpt2>::connect(&api.url, &cluster.key, "gpt2").unwrap();
    let poison = remote
        .submit(&SubmitOptions { exclusive: true, ..SubmitOptions::default() }, |lm, rec| {
            rec.save("poison", &steering_gpt2(lm)?)
        })
        .unwrap();
    let good: Vec<Job> = (0..3)
        .map(|_| {
            remote.submit(&SubmitOptions::default(), |lm, rec| rec.save("h", &steering_gpt2(lm)?)).unwrap()
        })
        .collect();
    // Workers that die on the poisoned job, replaced as they die (bounded).
    let mut worker = cluster.process("worker", &[("NNSIGHT_FAILPOINT", "exit-on-save:poison")]);
    let mut restarts = 0;
    while !poison.status().unwrap().state.is_final() {
        if worker.exited().is_some() {
            restarts += 1;
            assert!(restarts <= 5, "more worker deaths than the delivery cap allows");
            worker = cluster.process("worker", &[("NNSIGHT_FAILPOINT", "exit-on-save:poison")]);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let view = poison.status().unwrap();
    assert_eq!(view.state, State::Failed);
    assert!(
        matches!(&view.history.last().unwrap().kind, EventKind::Failed { code, .. } if code == "worker_crashed"),
        "{view:?}"
    );
    for job in &good {
        job.wait(false).expect("the others complete");
    }
}

impl Process {
    /// For tests that start their workers later: the API serves once a worker has published
    /// the models, so one worker runs for a moment first.
    fn wait_ready_after_worker(&self, cluster: &Cluster) {
        let worker = cluster.process("worker", &[]);
        worker.wait_ready();
        self.wait_ready();
        drop(worker);
    }
}

#[test]
fn the_broker_and_the_api_restarted_mid_run_lose_no_job() {
    let Some(mut cluster) = Cluster::start("") else { return };
    let mut api = cluster.process("api", &[]);
    let worker = cluster.process("worker", &[]);
    worker.wait_ready();
    api.wait_ready();
    let remote = RemoteModel::<Llama>::connect(&api.url, &cluster.key, "llama").unwrap();
    // Exclusive: each alone, so each result is the local run's bytes.
    let alone = SubmitOptions { exclusive: true, ..SubmitOptions::default() };
    let jobs: Vec<Job> = (0..4)
        .map(|_| remote.submit(&alone, |lm, rec| rec.save("last", &steering(lm, 40)?)).unwrap())
        .collect();
    until_running(&jobs[0]);
    cluster.nats.restart();
    // The API process restarted too (on another port: clients of the old one go to the new).
    api.kill();
    let api = cluster.process("api", &[]);
    api.wait_ready();
    let client = Client::new(&api.url, &cluster.key);
    let expected = steering(&super::batching_local(), 40).unwrap();
    for job in &jobs {
        let saves = client.job(job.id()).wait(false).expect("no job is lost");
        assert_same(&saves, "last", &expected);
    }
}
