//! `nnsight-server`: hosts language models and runs the intervention programs clients send
//! (the IR of `nnsight-remote`: data, never code) with the same engine as local traces.
//!
//! - [`config`]: the config file — where to listen, the keys file, limits, default quota, models.
//! - [`keys`]: API keys, stored hashed, with per-key quotas and model lists.
//! - [`hosted`]: the hosted models — loaded by their workers, served as manifests and twins.
//! - [`queue`]: each model's queue, round-robin across keys.
//! - [`batch`]: compatible jobs of different users merged into one forward pass, and split back.
//! - [`jobs`]: every job's state, history and result (kept for a time to live).
//! - [`worker`]: threads that run jobs with the interpreter, stopping at the next site when
//!   cancelled or past the time limit.
//! - [`api`]: the HTTP endpoints (axum).
//! - [`metrics`]: the counters of `/metrics`.
//! - [`store`]: where the API keeps jobs — in memory, or on a NATS JetStream broker ([`nats`]:
//!   a work-queue stream per model, job records in a KV bucket, results in an object store).
//!
//! [`Server::bind`] starts one; the `nnsight-server` binary wraps it (`serve`, `keys`).

pub mod api;
pub mod batch;
pub mod config;
pub mod hosted;
pub mod jobs;
pub mod keys;
pub mod metrics;
pub mod nats;
pub mod queue;
pub mod store;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nnsight_remote::arch::{Gemma3, Gpt2, Llama};

use crate::api::App;
use crate::config::Config;
use crate::hosted::Models;
use crate::jobs::Jobs;
use crate::keys::KeyStore;
use crate::metrics::Metrics;
use crate::store::Store;

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The keys file.
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    /// A model's family.
    #[error("{0}")]
    Model(String),
    /// The address.
    #[error("cannot listen on {address}: {error}")]
    Listen {
        /// The address.
        address: String,
        /// Why.
        error: std::io::Error,
    },
}

/// What a process does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The API and the workers (the only role without a broker).
    All,
    /// The API only: workers elsewhere take its jobs from the broker.
    Api,
    /// Workers only (its address serves `/healthz`, `/readyz` and `/metrics`).
    Worker,
}

/// A started server: its API listening, its workers loading their models.
pub struct Server {
    app: Arc<App>,
    role: Role,
    listener: tokio::net::TcpListener,
    workers: Vec<std::thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("address", &self.listener.local_addr().ok()).finish_non_exhaustive()
    }
}

impl Server {
    /// [`start`](Self::start) with [`Role::All`].
    ///
    /// # Errors
    /// [`StartError`].
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        Self::start(config, Role::All).await
    }

    /// Binds `config.listen` and starts what `role` asks: with a broker configured
    /// (`config.nats`) jobs, state and results live there; without one, in this process (then
    /// only [`Role::All`]). Workers load their models in the background (`/readyz` says when).
    ///
    /// # Errors
    /// [`StartError`].
    pub async fn start(config: Config, role: Role) -> Result<Server, StartError> {
        let keys = KeyStore::open(&config.keys)?;
        let families = config
            .models
            .iter()
            .map(hosted::family)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Model)?;
        let broker = match &config.nats {
            Some(nats) => Some(
                nats::Broker::connect(nats, config.results_ttl_s)
                    .await
                    .map_err(|e| StartError::Model(e.to_string()))?,
            ),
            None if role != Role::All => {
                return Err(StartError::Model(
                    "the api and worker roles need a broker: give --nats URL".to_owned(),
                ));
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|error| StartError::Listen { address: config.listen.clone(), error })?;
        let metrics = Arc::new(Metrics::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let models = Models::new(&config.models);
        // A broker's one reporter: its intakes hold the messages its workers ack.
        let nats_reporter = broker
            .as_ref()
            .map(|b| nats::intake::NatsReporter::new(b.clone(), tokio::runtime::Handle::current()));
        let (store, reporter): (Store, Arc<dyn worker::Reporter>) = match (&broker, &nats_reporter) {
            (Some(broker), Some(reporter)) => (Store::Nats(Arc::new(broker.clone())), reporter.clone()),
            _ => {
                let jobs = Arc::new(Jobs::new(config.results_ttl_s));
                (Store::Memory(jobs.clone()), jobs)
            }
        };
        let mut workers = Vec::new();
        let mut tasks = Vec::new();
        if role != Role::Api {
            let shared = worker::Shared {
                jobs: reporter.clone(),
                metrics: metrics.clone(),
                time_limit: Duration::from_secs(config.job_time_limit_s),
                batching: config.batching.clone(),
                stopping: stopping.clone(),
            };
            for (model, family) in config.models.iter().zip(families) {
                let slot = models.get(&model.key).cloned().expect("every configured model has a slot");
                workers.extend(match family {
                    "gpt2" => worker::start::<Gpt2>(slot.clone(), shared.clone()),
                    "gemma3" => worker::start::<Gemma3>(slot.clone(), shared.clone()),
                    _ => worker::start::<Llama>(slot.clone(), shared.clone()),
                });
                if let Some(reporter) = &nats_reporter {
                    let (reporter, stop) = (reporter.clone(), stopping.clone());
                    tasks.push(tokio::spawn(async move {
                        if let Err(error) = nats::intake::run(reporter, slot, stop).await {
                            eprintln!("nnsight-server: {error}");
                        }
                    }));
                }
            }
        } else if let Some(broker) = &broker {
            // The models as workers publish them.
            for (key, slot) in models.iter() {
                let (broker, key, slot) = (broker.clone(), key.clone(), slot.clone());
                tasks.push(tokio::spawn(async move {
                    while slot.ready().is_none() {
                        // Within a time limit: a read overlapping a worker's put can wait for
                        // chunks that were purged meanwhile; the next poll reads the new object.
                        if let Ok(Some(bytes)) =
                            nats::Broker::get_within(&broker.models, &key, Duration::from_secs(5)).await
                            && let Some(ready) = hosted::Ready::from_doc(&bytes)
                        {
                            slot.set_status(hosted::Status::Ready(Arc::new(ready)));
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }));
            }
        }
        let app = Arc::new(App { config, keys, models, store, metrics });
        Ok(Server { app, role, listener, workers, tasks, stopping })
    }

    /// The address it listens on.
    ///
    /// # Panics
    /// Never: a bound listener has an address.
    pub fn address(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `stop` resolves, then stops the workers (a running job finishes first; jobs
    /// a worker holds but has not started go back to the broker).
    ///
    /// # Errors
    /// The listener's.
    pub async fn run(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Server { app, role, listener, workers, tasks, stopping } = self;
        let sweeper = match &app.store {
            Store::Memory(jobs) => {
                let jobs = jobs.clone();
                Some(tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        jobs.sweep();
                    }
                }))
            }
            Store::Nats(_) => None,
        };
        let router =
            if role == Role::Worker { api::operations(app.clone()) } else { api::router(app.clone()) };
        // Small answers go out at once (no Nagle delay waiting for the client's ack).
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let served = axum::serve(listener, router).with_graceful_shutdown(stop).await;
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        stopping.store(true, Ordering::SeqCst);
        for task in tasks {
            // Intakes end by themselves (giving back what they hold); model pollers do not.
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        for (_, slot) in app.models.iter() {
            slot.queue.close();
        }
        tokio::task::spawn_blocking(move || {
            for worker in workers {
                let _ = worker.join();
            }
        })
        .await
        .ok();
        served
    }

    /// Starts it on a runtime of its own, in the background (for tests and embedding in
    /// synchronous code); dropping the handle stops it.
    ///
    /// # Errors
    /// As [`bind`](Self::bind).
    pub fn spawn(config: Config) -> Result<Running, StartError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|error| StartError::Listen { address: config.listen.clone(), error })?;
        let server = runtime.block_on(Server::bind(config))?;
        let address = server.address();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("nnsight-server".to_owned())
            .spawn(move || {
                let _ = runtime.block_on(server.run(async move {
                    let _ = stopped.await;
                }));
            })
            .map_err(|error| StartError::Listen { address: address.to_string(), error })?;
        Ok(Running { address, stop: Some(stop), thread: Some(thread) })
    }
}

/// A server started by [`Server::spawn`].
#[derive(Debug)]
pub struct Running {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Waits until every model is ready (or `timeout` passes); whether they are.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(mut stream) = std::net::TcpStream::connect(self.address) {
                use std::io::{Read, Write};
                let request =
                    format!("GET /readyz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.address);
                let mut answer = String::new();
                if stream.write_all(request.as_bytes()).is_ok() && stream.read_to_string(&mut answer).is_ok()
                {
                    if answer.starts_with("HTTP/1.1 200") {
                        return true;
                    }
                    if answer.contains("failed") {
                        return false;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
