//! Server throughput and latency on this machine: jobs/s and p50/p99 latency for 1, 8 and 32
//! concurrent users, with cross-user batching and with NDIF's policy (one job at a time per
//! model), on the tiny GPT-2 and on SmolLM2-135M; and the remote overhead of one job over the
//! same trace run locally. Server and clients share the machine (loopback HTTP, in one process).
//!
//! `cargo bench -p nnsight-server --bench serve` measures (figures in BENCHMARKS.md);
//! `cargo test --benches` runs it once, briefly.

use std::time::{Duration, Instant};

use burn::backend::Flex;
use nnsight_models::LanguageModel;
use nnsight_remote::arch::{Architecture, Gpt2, Llama};
use nnsight_remote::client::{Client, RemoteModel, SubmitOptions, TwinLm};
use nnsight_remote::intervention::Intervention;
use nnsight_server::config::Config;
use nnsight_server::keys::KeyStore;
use nnsight_server::{Running, Server};
use nnsight_support::packaged::PackagedFile;

/// A hosted model and the job every user sends.
struct Case {
    name: &'static str,
    source: String,
    /// Jobs per user at each concurrency.
    jobs: fn(usize) -> usize,
}

fn server(dir: &std::path::Path, source: &str, max_jobs: usize, tag: &str) -> (Running, String) {
    let keys = dir.join(format!("keys-{tag}.json"));
    let text = format!(
        "listen = \"127.0.0.1:0\"\nkeys = {keys:?}\n[batching]\nmax_jobs = {max_jobs}\n[quota]\nmax_queued = 10000\nmax_running = 1000\n[[models]]\nkey = \"m\"\nsource = {source:?}\n"
    );
    let key = KeyStore::open(&keys).unwrap().add("bench", None, None).unwrap().0;
    let running = Server::spawn(Config::parse(&text).unwrap()).unwrap();
    assert!(running.wait_ready(Duration::from_secs(600)), "the model loads");
    (running, key)
}

/// Jobs/s, p50 and p99 latency (ms) of `users` threads each sending `per_user` jobs one after
/// another.
fn load(url: &str, key: &str, intervention: &Intervention, users: usize, per_user: usize) -> (f64, f64, f64) {
    let started = Instant::now();
    let mut latencies: Vec<f64> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..users)
            .map(|_| {
                scope.spawn(|| {
                    let client = Client::new(url, key);
                    (0..per_user)
                        .map(|_| {
                            let sent = Instant::now();
                            let job = client.submit("m", intervention, &SubmitOptions::default()).unwrap();
                            job.wait(false).unwrap();
                            sent.elapsed().as_secs_f64() * 1e3
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    (latencies.len() as f64 / seconds, at(0.5), at(0.99))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Runs `case` for family `A`, with `body` the job.
fn run<A: Architecture>(
    case: &Case,
    full: bool,
    body: impl Fn(
        &TwinLm<A>,
        &nnsight_remote::record::Recording,
    ) -> Result<(), nnsight_remote::record::RecordError>,
    local: impl Fn() -> f64,
) {
    let dir = std::env::temp_dir().join(format!("nnsight-bench-serve-{}-{}", std::process::id(), case.name));
    std::fs::create_dir_all(&dir).unwrap();
    let (batched, batched_key) = server(&dir, &case.source, 32, "batched");
    let (ndif, ndif_key) = server(&dir, &case.source, 1, "ndif");
    let remote = RemoteModel::<A>::connect(&batched.url(), &batched_key, "m").unwrap();
    let intervention = remote.record(|lm, rec| body(lm, rec)).unwrap();
    let users_list: &[usize] = if full { &[1, 8, 32] } else { &[1, 8] };
    println!(
        "\n{}: jobs/s and latency p50 / p99 (ms), batched vs one job at a time (NDIF's policy)",
        case.name
    );
    let rounds = if full { 3 } else { 1 };
    for &users in users_list {
        let per_user = if full { (case.jobs)(users) } else { 2 };
        // A and B interleaved, `rounds` times; medians.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            a.push(load(&batched.url(), &batched_key, &intervention, users, per_user));
            b.push(load(&ndif.url(), &ndif_key, &intervention, users, per_user));
        }
        let pick = |v: &[(f64, f64, f64)], i: usize| median(v.iter().map(|t| [t.0, t.1, t.2][i]).collect());
        let (ta, tb) = (pick(&a, 0), pick(&b, 0));
        println!(
            "  {users:>2} users: batched {ta:>7.1} jobs/s  p50 {:>7.1}  p99 {:>7.1} | one at a time {tb:>7.1} jobs/s  p50 {:>7.1}  p99 {:>7.1} | {:.2}x",
            pick(&a, 1),
            pick(&a, 2),
            pick(&b, 1),
            pick(&b, 2),
            ta / tb
        );
    }
    // Remote overhead: one user, one job at a time, against the same trace run here.
    let samples = if full { 40 } else { 3 };
    let client = Client::new(&batched.url(), &batched_key);
    let remote_ms: Vec<f64> = (0..samples)
        .map(|_| {
            let sent = Instant::now();
            client.submit("m", &intervention, &SubmitOptions::default()).unwrap().wait(false).unwrap();
            sent.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let local_ms: Vec<f64> = (0..samples).map(|_| local()).collect();
    let (r, l) = (median(remote_ms), median(local_ms));
    println!("  one job: remote {r:.2} ms, the same trace locally {l:.2} ms: overhead {:.2} ms", r - l);
    drop((batched, ndif));
    let _ = std::fs::remove_dir_all(&dir);
}

const PROMPT: [u32; 8] = [464, 412, 733, 417, 318, 287, 262, 1748];

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let tiny = nnsight_support::fixture_dir("tiny-gpt2");
    let case =
        Case { name: "tiny GPT-2", source: tiny.display().to_string(), jobs: |users| 320 / users.min(8) };
    let prompt: Vec<u32> = PROMPT.iter().map(|t| t % 500).collect();
    let local_lm: LanguageModel<Flex, <Gpt2 as Architecture>::Model<Flex>> =
        LanguageModel::from_pretrained(tiny.to_str().unwrap(), &Default::default()).unwrap();
    run::<Gpt2>(
        &case,
        full,
        |lm, rec| {
            let h = lm.trace(prompt.clone()).run(async |m| m.transformer.h[1].output().await)?;
            rec.save("h", &h)
        },
        || {
            let started = Instant::now();
            let h = local_lm.trace(prompt.clone()).run(async |m| m.transformer.h[1].output().await).unwrap();
            let _ = h.to_data();
            started.elapsed().as_secs_f64() * 1e3
        },
    );
    if !full {
        return;
    }
    let Some(path) = PackagedFile::SMOLLM2_135M_INSTRUCT.locate() else {
        println!("\nSmolLM2: not in the cache (run the quickstart once); skipped");
        return;
    };
    let case =
        Case { name: "SmolLM2-135M", source: path.display().to_string(), jobs: |users| (96 / users).max(3) };
    let prompt: Vec<u32> = PROMPT.to_vec();
    let local_lm: LanguageModel<Flex, <Llama as Architecture>::Model<Flex>> =
        LanguageModel::from_gguf(&path, &Default::default()).unwrap();
    run::<Llama>(
        &case,
        full,
        |lm, rec| {
            let h = lm.trace(prompt.clone()).run(async |m| m.model.layers[20].output().await)?;
            rec.save("h", &h)
        },
        || {
            let started = Instant::now();
            let h = local_lm.trace(prompt.clone()).run(async |m| m.model.layers[20].output().await).unwrap();
            let _ = h.to_data();
            started.elapsed().as_secs_f64() * 1e3
        },
    );
}
