//! The worker side of the broker: an intake per model pulls jobs from its stream into the
//! worker process's local queue (where they are ordered round-robin by key and batched as in one
//! process), keeps every message it holds alive with in-progress acks, and acks a job only once
//! its outcome is stored. A delivery of a job that already ended, or whose result is already
//! stored (its worker died between storing and acking), is only acked. A job that `max_deliver`
//! workers started and died running is failed as `worker_crashed` at its next delivery — counted
//! by its starts, not its deliveries, since the jobs a dying worker only held come back too and
//! must not pay for it; the stream's own `MaxDeliver` is a backstop above that.
//!
//! [`NatsReporter`] is where the workers of such a process report.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::{AckKind, Message};
use futures_util::StreamExt;
use nnsight_remote::api::EventKind;
use nnsight_remote::canonical;
use serde::{Deserialize, Serialize};

use super::{Broker, BrokerError, Record};
use crate::hosted::{Ready, Slot};
use crate::keys::now_ms;
use crate::queue::Task;
use crate::worker::Reporter;

/// A job's message: what a worker needs besides the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The job.
    pub id: String,
    /// Its key.
    pub key: String,
    /// Run alone.
    pub exclusive: bool,
    /// The most bytes its result may have.
    pub max_result_bytes: u64,
    /// The key's `max_running`.
    pub max_running: usize,
}

/// A hosted model as workers publish it (`nnsight_models` object store).
#[derive(Serialize, Deserialize)]
pub struct ModelDoc {
    /// Its listing.
    pub info: nnsight_remote::api::ModelInfo,
    /// Its manifest's JSON.
    pub manifest_json: String,
    /// Its twin.
    pub twin: nnsight_remote::api::Twin,
}

/// Where a worker process dies on purpose, for the fault tests: `NNSIGHT_FAILPOINT` is
/// `exit-after-result-stored` (after storing a result, before recording and acking it) or
/// `exit-on-save:<name>` (when a job that saves `<name>` starts: a job that kills every worker
/// that takes it).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failpoint {
    None,
    AfterResultStored,
    OnSave(String),
}

impl Failpoint {
    fn from_env() -> Failpoint {
        match std::env::var("NNSIGHT_FAILPOINT").as_deref() {
            Ok("exit-after-result-stored") => Failpoint::AfterResultStored,
            Ok(other) => other
                .strip_prefix("exit-on-save:")
                .map_or(Failpoint::None, |n| Failpoint::OnSave(n.to_owned())),
            Err(_) => Failpoint::None,
        }
    }
}

/// What a worker process shares between its intakes and its workers.
pub struct NatsReporter {
    broker: Broker,
    failpoint: Failpoint,
    /// Jobs that meet the `exit-on-save` failpoint.
    poison: Mutex<std::collections::HashSet<String>>,
    runtime: tokio::runtime::Handle,
    /// Messages taken and not acked yet, by job.
    held: Mutex<HashMap<String, Message>>,
    /// Running jobs' cancel watchers.
    watchers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for NatsReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsReporter").finish_non_exhaustive()
    }
}

impl NatsReporter {
    /// A reporter on `broker`, running its NATS calls on `runtime`.
    pub fn new(broker: Broker, runtime: tokio::runtime::Handle) -> Arc<Self> {
        Arc::new(NatsReporter {
            broker,
            failpoint: Failpoint::from_env(),
            poison: Mutex::default(),
            runtime,
            held: Mutex::default(),
            watchers: Mutex::default(),
        })
    }

    fn block<T>(&self, future: impl Future<Output = Result<T, BrokerError>>) -> Option<T> {
        match self.runtime.block_on(future) {
            Ok(value) => Some(value),
            Err(error) => {
                eprintln!("nnsight-server worker: {error}");
                None
            }
        }
    }

    /// Jobs held (taken from the stream, not acked).
    fn held(&self) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Reporter for NatsReporter {
    fn start(&self, id: &str, worker: &str, batch: usize) -> Option<Arc<AtomicBool>> {
        let ttl = self.broker.ttl_ms;
        let kind = EventKind::Running { worker: worker.to_owned(), batch };
        // Queued, or Running on a worker that died: it runs (again).
        let started = self.block(self.broker.change_record(id, |r: &mut Record| {
            if r.state.is_final() {
                return None;
            }
            r.push(kind.clone(), ttl);
            Some((r.key.clone(), r.cancel))
        }))??;
        let (key, cancelled) = started;
        if self.poison.lock().unwrap_or_else(|p| p.into_inner()).contains(id) {
            eprintln!("nnsight-server worker: failpoint: exiting as job {id} starts");
            std::process::exit(101);
        }
        let _ = self.block(self.broker.dequeued(&key, id));
        let flag = Arc::new(AtomicBool::new(cancelled));
        let (broker, watched, job) = (self.broker.clone(), flag.clone(), id.to_owned());
        let watcher = self.runtime.spawn(async move {
            let Ok(mut watch) = broker.kv.watch(format!("job.{job}")).await else { return };
            // A cancel asked between the read above and the watch.
            if broker.record(&job).await.ok().flatten().is_some_and(|r| r.cancel) {
                watched.store(true, Ordering::SeqCst);
            }
            while let Some(Ok(entry)) = watch.next().await {
                if serde_json::from_slice::<Record>(&entry.value).is_ok_and(|r| r.cancel) {
                    watched.store(true, Ordering::SeqCst);
                    return;
                }
            }
        });
        self.watchers.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), watcher);
        Some(flag)
    }

    fn event(&self, id: &str, kind: EventKind) {
        let _ = self.block(self.broker.event(id, kind));
    }

    fn complete(&self, id: &str, result: Vec<u8>) {
        let bytes = result.len() as u64;
        let expires_ms = now_ms().saturating_add(self.broker.ttl_ms);
        let stored = self.block(async {
            Broker::put(&self.broker.results, id, &result).await?;
            if self.failpoint == Failpoint::AfterResultStored {
                eprintln!("nnsight-server worker: failpoint: exiting after storing the result of {id}");
                std::process::exit(101);
            }
            self.broker.event(id, EventKind::Completed { result_bytes: bytes, expires_ms }).await?;
            if let Some(record) = self.broker.record(id).await? {
                self.broker.kept(&record.key, id, bytes, expires_ms).await?;
            }
            Ok(())
        });
        if stored.is_none() {
            // Not acked: it is delivered again, and the stored result (if any) found then.
            self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        }
    }

    fn done(&self, id: &str) {
        if let Some(watcher) = self.watchers.lock().unwrap_or_else(|p| p.into_inner()).remove(id) {
            watcher.abort();
        }
        let message = self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        if let Some(message) = message {
            let _ = self.runtime.block_on(message.double_ack());
        }
    }

    fn ready(&self, model: &str, ready: &Ready) {
        let doc = ModelDoc {
            info: ready.info.clone(),
            manifest_json: ready.manifest_json.clone(),
            twin: ready.twin.clone(),
        };
        let Ok(bytes) = serde_json::to_vec(&doc) else { return };
        // Every worker process publishes its models as they become ready, often at the same
        // moment; an object store keeps one version of a name, and a put that overlaps another
        // can leave a reader waiting for chunks the other purged. So each publisher reads back
        // what an API process will read (within a time limit), and puts again (after a pause that
        // grows) until it is whole.
        for attempt in 1..=10u64 {
            self.block(Broker::put(&self.broker.models, model, &bytes));
            std::thread::sleep(Duration::from_millis(50 * attempt));
            let read = self.block(Broker::get_within(&self.broker.models, model, Duration::from_secs(5)));
            if read.flatten().is_some_and(|got| Ready::from_doc(&got).is_some()) {
                return;
            }
            eprintln!(
                "nnsight-server worker: model `{model}` read back incomplete after publishing it (attempt {attempt}); again"
            );
        }
    }
}

/// Pulls `slot`'s jobs into its local queue until `stop` is set; then gives back the jobs it
/// holds but has not started (another worker takes them at once).
///
/// Each key's jobs have their own subject and durable consumer (shared by every worker process),
/// and the intake takes from the keys with waiting jobs in turn — so that the stream's order is
/// not FIFO across keys: a key with one job waits behind the jobs the workers already hold and
/// one turn per other key, not behind another key's backlog.
///
/// # Errors
/// The broker's, when a consumer cannot be made.
pub async fn run(
    reporter: Arc<NatsReporter>,
    slot: Arc<Slot>,
    stop: Arc<AtomicBool>,
) -> Result<(), BrokerError> {
    let broker = reporter.broker.clone();
    let model = slot.config.key.clone();
    let ack_wait = Duration::from_secs(broker.config.ack_wait_s.max(1));
    // In-progress acks for every message held, well within the ack wait.
    let keepalive = {
        let reporter = reporter.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ack_wait / 3).await;
                let held: Vec<Message> =
                    reporter.held.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
                for message in held {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
        })
    };
    let mut known: HashMap<String, async_nats::jetstream::consumer::Consumer<pull::Config>> = HashMap::new();
    let mut turn = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let room = broker.config.prefetch.saturating_sub(reporter.held());
        if room == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let keys = broker.waiting_keys(&model).await;
        if keys.is_empty() {
            tokio::time::sleep(Duration::from_millis(25)).await;
            continue;
        }
        // Each key with waiting jobs gets its share of the room, in turn from the one after the
        // key that began the last pass.
        let share = (room / keys.len()).max(1);
        let mut left = room;
        let mut took = false;
        for k in 0..keys.len() {
            if left == 0 {
                break;
            }
            let key = &keys[(turn + k) % keys.len()];
            if !known.contains_key(key) {
                let name = format!("workers-{model}-{key}");
                let consumer = broker
                    .stream
                    .get_or_create_consumer(
                        &name,
                        pull::Config {
                            durable_name: Some(name.clone()),
                            filter_subject: Broker::subject(&model, key),
                            ack_policy: AckPolicy::Explicit,
                            ack_wait,
                            max_deliver: backstop(broker.config.max_deliver),
                            // A key gone quiet for a day leaves no consumer behind.
                            inactive_threshold: Duration::from_secs(86_400),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(BrokerError::of)?;
                known.insert(key.clone(), consumer);
            }
            let consumer = &known[key];
            let Ok(mut messages) = consumer.fetch().max_messages(share.min(left)).messages().await else {
                continue;
            };
            while let Some(Ok(message)) = messages.next().await {
                left = left.saturating_sub(1);
                took = true;
                if let Err(error) = admit(&reporter, &slot, message).await {
                    eprintln!("nnsight-server worker: {error}");
                }
            }
        }
        turn = turn.wrapping_add(1);
        if !took {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    keepalive.abort();
    // Jobs held but not started go back to the stream for others.
    for task in std::iter::from_fn(|| slot.queue.pop(Duration::ZERO)) {
        slot.queue.done(&task.key);
        let message = reporter.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&task.id);
        if let Some(message) = message {
            let _ = message.ack_with(AckKind::Nak(None)).await;
        }
    }
    Ok(())
}

/// The stream's delivery cap for a job cap of `max_deliver` starts: deliveries of jobs that
/// were only held by dying workers come on top.
fn backstop(max_deliver: i64) -> i64 {
    max_deliver.saturating_mul(5).saturating_add(10)
}

/// Takes one delivered job into the local queue, or settles it at once.
async fn admit(reporter: &NatsReporter, slot: &Slot, message: Message) -> Result<(), BrokerError> {
    let broker = &reporter.broker;
    let Ok(header) = serde_json::from_slice::<Header>(&message.payload) else {
        // Not a job: nothing could ever run it.
        let _ = message.ack_with(AckKind::Term).await;
        return Ok(());
    };
    let id = header.id.clone();
    let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
    let Some(record) = broker.record(&id).await? else {
        let _ = message.ack().await;
        return Ok(());
    };
    if record.state.is_final() {
        message.double_ack().await.map_err(BrokerError::of)?;
        return Ok(());
    }
    if let Ok(info) = broker.results.info(&id).await {
        // Its worker stored the result and died before recording it: only recorded and acked.
        let expires_ms = now_ms().saturating_add(broker.ttl_ms);
        broker.event(&id, EventKind::Completed { result_bytes: info.size as u64, expires_ms }).await?;
        broker.kept(&record.key, &id, info.size as u64, expires_ms).await?;
        message.double_ack().await.map_err(BrokerError::of)?;
        return Ok(());
    }
    let starts = record.history.iter().filter(|e| matches!(e.kind, EventKind::Running { .. })).count();
    if starts as i64 >= broker.config.max_deliver || delivered >= backstop(broker.config.max_deliver) {
        let message_text = format!(
            "started {starts} times (delivered {delivered}): each worker that ran it stopped before finishing it \
             (it may crash workers)"
        );
        broker
            .event(&id, EventKind::Failed { code: "worker_crashed".to_owned(), message: message_text })
            .await?;
        broker.dequeued(&record.key, &id).await?;
        message.double_ack().await.map_err(BrokerError::of)?;
        return Ok(());
    }
    let request = Broker::get(&broker.requests, &id).await?;
    let Some((program, tensors)) = request.as_deref().and_then(super::unpack_request) else {
        broker
            .event(
                &id,
                EventKind::Failed {
                    code: "bad_request".to_owned(),
                    message: "its request is gone".to_owned(),
                },
            )
            .await?;
        message.double_ack().await.map_err(BrokerError::of)?;
        return Ok(());
    };
    let program = canonical::decode(program, usize::MAX).map_err(BrokerError::of)?;
    let class = if header.exclusive { None } else { crate::batch::class(&program) };
    let footprint = crate::batch::footprint(&program);
    let task = Task {
        id: id.clone(),
        key: header.key,
        program,
        tensors: tensors.to_vec(),
        exclusive: header.exclusive,
        max_result_bytes: header.max_result_bytes,
        max_running: header.max_running,
        class,
        footprint,
    };
    if let Failpoint::OnSave(name) = &reporter.failpoint {
        let saves = task.program.traces.iter().flat_map(|t| &t.invokes).flat_map(|i| &i.nodes);
        if saves
            .into_iter()
            .any(|n| matches!(&n.op, nnsight_remote::ir::Op::Save { name: s, .. } if s == name))
        {
            reporter.poison.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone());
        }
    }
    reporter.held.lock().unwrap_or_else(|p| p.into_inner()).insert(id, message);
    slot.queue.push(task);
    Ok(())
}
