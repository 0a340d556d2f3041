//! Scale-out on NATS JetStream: API processes and workers on many machines share one broker.
//!
//! - a **work-queue stream** `NNSIGHT_JOBS`, one subject per model and key
//!   (`nnsight.jobs.<model>.<key>`, so that workers can take from keys in turn):
//!   a job is one message, taken by one worker with explicit acks, kept alive by in-progress acks
//!   while it runs, delivered again when its worker dies, and failed as `worker_crashed` after
//!   `max_deliver` deliveries;
//! - a **key-value bucket** `nnsight_jobs` for every job's record (state, full history, the
//!   cancel request) and each key's usage — what every API replica's status and event streams
//!   read, so it survives restarts of any of them;
//! - **object stores** for requests (`nnsight_requests`: the program and tensors, which may exceed
//!   a message), results (`nnsight_results`, kept for the results' time to live) and the hosted
//!   models' manifests and twins (`nnsight_models`: workers publish them, API processes serve them).
//!
//! [`Broker`] holds them; [`intake`] is the worker side.

pub mod intake;
pub mod records;

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};
use tokio::io::AsyncReadExt;

pub use records::{Record, Usage};

use crate::config::NatsConfig;

/// Why the broker failed.
#[derive(Debug, thiserror::Error)]
#[error("NATS: {0}")]
pub struct BrokerError(pub String);

impl BrokerError {
    fn of(error: impl std::fmt::Display) -> Self {
        BrokerError(error.to_string())
    }
}

/// The stream's name.
pub const STREAM: &str = "NNSIGHT_JOBS";

/// The shared state on NATS.
#[derive(Clone)]
pub struct Broker {
    /// JetStream.
    pub js: jetstream::Context,
    /// Job records and usage.
    pub kv: kv::Store,
    /// Requests (program + tensors).
    pub requests: object_store::ObjectStore,
    /// Results.
    pub results: object_store::ObjectStore,
    /// Hosted models' manifests and twins.
    pub models: object_store::ObjectStore,
    /// The job stream.
    pub stream: stream::Stream,
    /// Delivery settings.
    pub config: NatsConfig,
    /// How long results are kept, in ms.
    pub ttl_ms: u64,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("url", &self.config.url).finish_non_exhaustive()
    }
}

impl Broker {
    /// Connects to `config.url` and makes the stream and buckets if they are not there.
    ///
    /// # Errors
    /// [`BrokerError`] when the broker cannot be reached or JetStream is not enabled.
    pub async fn connect(config: &NatsConfig, ttl_s: u64) -> Result<Broker, BrokerError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .retry_on_initial_connect()
            .connect(&config.url)
            .await
            .map_err(|e| BrokerError(format!("cannot connect to {}: {e}", config.url)))?;
        let mut js = jetstream::new(client);
        // Processes starting together on a loaded machine make a file-backed broker slow to
        // answer its first requests: a generous timeout, and the setup retried when it times out.
        js.set_timeout(Duration::from_secs(20));
        let mut attempt = 1;
        loop {
            match Self::setup(&js, config, ttl_s).await {
                Err(error) if error.0.contains("timed out") && attempt < 4 => {
                    eprintln!(
                        "nnsight-server: the broker's setup timed out (attempt {attempt} of 4); retrying"
                    );
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                other => return other,
            }
        }
    }

    /// Makes the stream and buckets if they are not there (a process that loses a race to make one
    /// takes the winner's).
    async fn setup(js: &jetstream::Context, config: &NatsConfig, ttl_s: u64) -> Result<Broker, BrokerError> {
        let ttl = Duration::from_secs(ttl_s.max(1));
        let stream = js
            .get_or_create_stream(stream::Config {
                name: STREAM.to_owned(),
                subjects: vec!["nnsight.jobs.>".to_owned()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(BrokerError::of)?;
        // Processes starting together race to make each bucket: the loser takes the winner's.
        let kv = match js.get_key_value("nnsight_jobs").await {
            Ok(kv) => kv,
            Err(_) => {
                let made = js
                    .create_key_value(kv::Config {
                        bucket: "nnsight_jobs".to_owned(),
                        history: 1,
                        // A record outlives its result by a second time to live, as in memory.
                        max_age: ttl * 2,
                        storage: stream::StorageType::File,
                        ..Default::default()
                    })
                    .await;
                match made {
                    Ok(kv) => kv,
                    Err(error) => {
                        js.get_key_value("nnsight_jobs").await.map_err(|_| BrokerError::of(error))?
                    }
                }
            }
        };
        let bucket = |name: &str, max_age: Duration| object_store::Config {
            bucket: name.to_owned(),
            max_age,
            storage: stream::StorageType::File,
            ..Default::default()
        };
        let store = async |name: &str, max_age: Duration| match js.get_object_store(name).await {
            Ok(store) => Ok(store),
            Err(_) => match js.create_object_store(bucket(name, max_age)).await {
                Ok(store) => Ok(store),
                Err(error) => js.get_object_store(name).await.map_err(|_| BrokerError::of(error)),
            },
        };
        let requests = store("nnsight_requests", ttl * 2).await?;
        let results = store("nnsight_results", ttl).await?;
        let models = store("nnsight_models", Duration::ZERO).await?;
        Ok(Broker {
            js: js.clone(),
            kv,
            requests,
            results,
            models,
            stream,
            config: config.clone(),
            ttl_ms: ttl_s * 1000,
        })
    }

    /// The subject of `key`'s jobs on `model`.
    pub fn subject(model: &str, key: &str) -> String {
        format!("nnsight.jobs.{model}.{key}")
    }

    /// Jobs waiting (or held by workers, not yet acked) on `model`, per key.
    pub async fn waiting_per_key(&self, model: &str) -> Vec<(String, usize)> {
        use futures_util::StreamExt;
        let prefix = format!("nnsight.jobs.{model}.");
        let Ok(mut subjects) = self.stream.info_with_subjects(format!("{prefix}*")).await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        while let Some(Ok((subject, count))) = subjects.next().await {
            if let Some(key) = subject.strip_prefix(&prefix)
                && count > 0
            {
                out.push((key.to_owned(), count));
            }
        }
        out.sort();
        out
    }

    /// The keys with jobs waiting on `model`, in a fixed order.
    pub async fn waiting_keys(&self, model: &str) -> Vec<String> {
        self.waiting_per_key(model).await.into_iter().map(|(key, _)| key).collect()
    }

    /// Stores `bytes` as object `name` of `store`.
    ///
    /// # Errors
    /// The broker's.
    pub async fn put(store: &object_store::ObjectStore, name: &str, bytes: &[u8]) -> Result<(), BrokerError> {
        let mut reader = bytes;
        store.put(name, &mut reader).await.map(|_| ()).map_err(BrokerError::of)
    }

    /// [`get`](Self::get) within `limit`: a read that overlaps another process's put of the same
    /// name can wait for chunks that were purged meanwhile, and must not wait forever.
    ///
    /// # Errors
    /// The broker's, or a timeout.
    pub async fn get_within(
        store: &object_store::ObjectStore,
        name: &str,
        limit: Duration,
    ) -> Result<Option<Vec<u8>>, BrokerError> {
        tokio::time::timeout(limit, Self::get(store, name))
            .await
            .map_err(|_| BrokerError(format!("reading `{name}` timed out")))?
    }

    /// Object `name` of `store`, if it is there.
    ///
    /// # Errors
    /// The broker's (other than the object's absence).
    pub async fn get(store: &object_store::ObjectStore, name: &str) -> Result<Option<Vec<u8>>, BrokerError> {
        let mut object = match store.get(name).await {
            Ok(object) => object,
            Err(e) if e.kind() == object_store::GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BrokerError::of(e)),
        };
        let mut bytes = Vec::new();
        object.read_to_end(&mut bytes).await.map_err(BrokerError::of)?;
        Ok(Some(bytes))
    }
}

/// A request as the requests store holds it: the program's JSON length (8 bytes, little
/// endian), the JSON, the tensors.
pub fn pack_request(program: &[u8], tensors: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + program.len() + tensors.len());
    out.extend_from_slice(&(program.len() as u64).to_le_bytes());
    out.extend_from_slice(program);
    out.extend_from_slice(tensors);
    out
}

/// The program JSON and tensors of a packed request.
pub fn unpack_request(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let length = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let program = bytes.get(8..8usize.checked_add(length)?)?;
    Some((program, &bytes[8 + length..]))
}
