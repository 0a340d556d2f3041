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
//!
//! [`Server::bind`] starts one; the `nnsight-server` binary wraps it (`serve`, `keys`).

pub mod api;
pub mod batch;
pub mod config;
pub mod hosted;
pub mod jobs;
pub mod keys;
pub mod metrics;
pub mod queue;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nnsight_remote::arch::{Gpt2, Llama};

use crate::api::App;
use crate::config::Config;
use crate::hosted::Models;
use crate::jobs::Jobs;
use crate::keys::KeyStore;
use crate::metrics::Metrics;

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

/// A started server: its API listening, its workers loading their models.
pub struct Server {
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    workers: Vec<std::thread::JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("address", &self.listener.local_addr().ok()).finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `config.listen` and starts the workers of every model (they load in the
    /// background: `/readyz` says when all are ready).
    ///
    /// # Errors
    /// [`StartError`].
    pub async fn bind(config: Config) -> Result<Server, StartError> {
        let keys = KeyStore::open(&config.keys)?;
        let families = config
            .models
            .iter()
            .map(hosted::family)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Model)?;
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|error| StartError::Listen { address: config.listen.clone(), error })?;
        let jobs = Arc::new(Jobs::new(config.results_ttl_s));
        let metrics = Arc::new(Metrics::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let models = Models::new(&config.models);
        let shared = worker::Shared {
            jobs: jobs.clone(),
            metrics: metrics.clone(),
            time_limit: Duration::from_secs(config.job_time_limit_s),
            batching: config.batching.clone(),
            stopping: stopping.clone(),
        };
        let mut workers = Vec::new();
        for (model, family) in config.models.iter().zip(families) {
            let slot = models.get(&model.key).cloned().expect("every configured model has a slot");
            workers.extend(match family {
                "gpt2" => worker::start::<Gpt2>(slot, shared.clone()),
                _ => worker::start::<Llama>(slot, shared.clone()),
            });
        }
        let app = Arc::new(App { config, keys, models, jobs, metrics });
        Ok(Server { app, listener, workers, stopping })
    }

    /// The address it listens on.
    ///
    /// # Panics
    /// Never: a bound listener has an address.
    pub fn address(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `stop` resolves, then stops the workers (a running job finishes first).
    ///
    /// # Errors
    /// The listener's.
    pub async fn run(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Server { app, listener, workers, stopping } = self;
        let sweeper = {
            let jobs = app.jobs.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    jobs.sweep();
                }
            })
        };
        let served = axum::serve(listener, api::router(app.clone())).with_graceful_shutdown(stop).await;
        sweeper.abort();
        stopping.store(true, Ordering::SeqCst);
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
