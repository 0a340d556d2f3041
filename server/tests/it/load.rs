//! Load on a real cluster: a `nats-server`, 2 API processes, 3 worker processes; 64 concurrent
//! clients send 500 mixed jobs (two prompt lengths, some exclusive) under 5 keys. Every job
//! completes exactly once with its own marker (no cross-talk between users batched together);
//! batches really form; a key over its queue quota gets `429`; a key with one job is not held
//! behind another key's hundred.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use burn::prelude::*;
use nnsight_models::LanguageModel;
use nnsight_models::gpt2::Gpt2LMHeadModel;
use nnsight_remote::arch::Gpt2;
use nnsight_remote::client::{Client, Job, RemoteModel, SubmitOptions};
use nnsight_server::config::Quota;
use nnsight_server::keys::KeyStore;

use super::broker::{Nats, Process, config, nats_binary};
use super::remote::local_gpt2;

type Lm<B> = LanguageModel<B, Gpt2LMHeadModel<B>>;

const JOBS: usize = 500;
const CLIENTS: usize = 64;
const KEYS: usize = 5;
/// Jobs a worker process holds ahead in the fairness test.
const HELD: usize = 8;
const PROMPTS: [&[u32]; 2] = [&[5, 6, 7, 8], &[9, 10, 11, 12, 13, 14]];

/// Block 1's output times `marker`.
fn marked<B: Backend>(lm: &Lm<B>, prompt: &[u32], marker: f32) -> nnsight::Result<Tensor<B, 3>> {
    lm.trace(prompt.to_vec()).run(async |m| Ok(m.transformer.h[1].output().await? * marker))
}

#[test]
fn five_hundred_jobs_of_sixty_four_clients_complete_once_each_with_their_own_values() {
    let Some(binary) = nats_binary() else { return };
    let nats = Nats::start(binary);
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), &nats.url(), "[batching]\nmax_jobs = 32\n", 64);
    let keys_file = KeyStore::open(&dir.path().join("keys.json")).unwrap();
    let roomy = Quota { max_queued: 1000, max_running: 64, ..Quota::default() };
    let keys: Vec<String> =
        (0..KEYS).map(|k| keys_file.add(&format!("user{k}"), Some(roomy.clone()), None).unwrap().0).collect();
    let workers: Vec<Process> = (0..3).map(|_| Process::start("worker", &config, &[])).collect();
    let apis: Vec<Process> = (0..2).map(|_| Process::start("api", &config, &[])).collect();
    workers.iter().chain(&apis).for_each(Process::wait_ready);

    let remotes: Vec<Vec<RemoteModel<Gpt2>>> = apis
        .iter()
        .map(|api| keys.iter().map(|key| RemoteModel::connect(&api.url, key, "gpt2").unwrap()).collect())
        .collect();
    let lm = local_gpt2();
    let bases: Vec<Vec<f32>> =
        PROMPTS.iter().map(|p| marked(&lm, p, 1.0).unwrap().to_data().to_vec().unwrap()).collect();

    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, Job)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= JOBS {
                        return;
                    }
                    let remote = &remotes[i % 2][i % KEYS];
                    let prompt = PROMPTS[i % 2];
                    let marker = (i + 1) as f32;
                    let options =
                        SubmitOptions { exclusive: i.is_multiple_of(10), ..SubmitOptions::default() };
                    let job = remote
                        .submit(&options, |lm, rec| rec.save("h", &marked(lm, prompt, marker)?))
                        .unwrap();
                    let saves = job.wait(false).unwrap_or_else(|e| panic!("job {i}: {e}"));
                    let got: Vec<f32> = saves.get("h").unwrap().to_vec().unwrap();
                    let base = &bases[i % 2];
                    let worst = got.iter().zip(base).map(|(g, b)| (g - b * marker).abs()).fold(0.0, f32::max);
                    assert!(
                        worst <= 1e-4 * marker.max(1.0),
                        "job {i} got another job's values (off by {worst})"
                    );
                    done.lock().unwrap().push((i, job));
                }
            });
        }
    });
    let done = done.into_inner().unwrap();
    assert_eq!(done.len(), JOBS);
    for (i, job) in &done {
        let history = job.status().unwrap().history;
        let completed = history.iter().filter(|e| e.kind.name() == "completed").count();
        let failed = history.iter().filter(|e| e.kind.name() == "failed").count();
        assert_eq!((completed, failed), (1, 0), "job {i}: {history:?}");
    }
    let jobs: f64 = workers.iter().map(|w| w.metric("nnsight_batched_jobs_total")).sum();
    let forwards: f64 = workers.iter().map(|w| w.metric("nnsight_forward_batches_total")).sum();
    assert!(jobs >= JOBS as f64, "{jobs}");
    assert!(jobs / forwards > 1.0, "batches formed: {jobs} jobs in {forwards} forward runs");
    eprintln!("load: {JOBS} jobs in {forwards} forward runs ({:.1} jobs per run)", jobs / forwards);

    // A key over its queue quota is told to come back.
    let tight = keys_file.add("flood", Some(Quota { max_queued: 2, ..Quota::default() }), None).unwrap().0;
    let flood = RemoteModel::<Gpt2>::connect(&apis[0].url, &tight, "gpt2").unwrap();
    let intervention = flood.record(|lm, rec| rec.save("h", &marked(lm, PROMPTS[0], 1.0)?)).unwrap();
    let client = Client::new(&apis[0].url, &tight);
    let refused = (0..20)
        .map(|_| client.submit("gpt2", &intervention, &SubmitOptions::default()))
        .filter_map(Result::err)
        .find(|e| e.code() == Some("quota_exceeded"));
    match refused {
        Some(nnsight_remote::client::ClientError::Server { status: 429, retry_after: Some(_), .. }) => {}
        other => panic!("a 429 with Retry-After, not {other:?}"),
    }
}

#[test]
fn a_light_key_is_not_held_behind_a_heavy_one() {
    let Some(binary) = nats_binary() else { return };
    let nats = Nats::start(binary);
    let dir = tempfile::tempdir().unwrap();
    // One worker taking one job at a time, holding up to 8: only the order is measured.
    let config = config(dir.path(), &nats.url(), "[batching]\nmax_jobs = 1\n", HELD);
    let keys_file = KeyStore::open(&dir.path().join("keys.json")).unwrap();
    let roomy = Quota { max_queued: 1000, ..Quota::default() };
    let heavy = keys_file.add("heavy", Some(roomy.clone()), None).unwrap().0;
    let light = keys_file.add("light", Some(roomy), None).unwrap().0;
    let worker = Process::start("worker", &config, &[]);
    let api = Process::start("api", &config, &[]);
    worker.wait_ready();
    api.wait_ready();
    let record = |key: &str| {
        let remote = RemoteModel::<Gpt2>::connect(&api.url, key, "gpt2").unwrap();
        remote.record(|lm, rec| rec.save("h", &marked(lm, PROMPTS[0], 1.0)?)).unwrap()
    };
    let (heavy_program, light_program) = (record(&heavy), record(&light));
    let heavy_client = Client::new(&api.url, &heavy);
    // A backlog sent at once, from 8 threads.
    let heavy_jobs: Vec<Job> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    (0..15)
                        .map(|_| {
                            heavy_client.submit("gpt2", &heavy_program, &SubmitOptions::default()).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    let light_job =
        Client::new(&api.url, &light).submit("gpt2", &light_program, &SubmitOptions::default()).unwrap();
    light_job.wait(false).unwrap();
    let light = light_job.status().unwrap().history;
    let (sent, finished) = (light[0].at_ms, light.last().unwrap().at_ms);
    let (mut waiting, mut overtaking) = (0, 0);
    for job in &heavy_jobs {
        job.wait(false).unwrap();
        let done = job.status().unwrap().history.last().unwrap().at_ms;
        waiting += usize::from(done > sent);
        overtaking += usize::from(done > sent && done < finished);
    }
    assert!(
        waiting >= 20,
        "the backlog was only {waiting} jobs when the light key's came: the test measures nothing"
    );
    // FIFO would finish the whole backlog first. The bound: the jobs the worker held when the
    // light job came (it takes new ones as it acks old ones), then round-robin across keys.
    assert!(
        overtaking <= HELD + 1,
        "{overtaking} of the heavy key's {waiting} waiting jobs finished before the light key's one"
    );
}
