//! Where the API keeps jobs: in this process ([`Jobs`] and each model's [`Queue`](crate::queue::Queue)),
//! or on a NATS broker shared with other API processes and workers. One set of operations
//! for the handlers, whichever it is.

use std::collections::VecDeque;
use std::sync::Arc;

use futures_util::StreamExt;
use nnsight_remote::api::{Event, JobView};

use crate::hosted::Models;
use crate::jobs::{Jobs, OverQuota, ResultError};
use crate::nats::intake::Header;
use crate::nats::{Broker, BrokerError};
use crate::queue::Task;

/// A stream of a job's events.
pub type Events = crate::nats::records::Events;

/// The job store.
#[derive(Clone, Debug)]
pub enum Store {
    /// One process: jobs in memory, queues in memory.
    Memory(Arc<Jobs>),
    /// A NATS JetStream broker.
    Nats(Arc<Broker>),
}

/// Why a submission was not queued.
#[derive(Debug)]
pub enum Refusal {
    /// A quota.
    Quota(OverQuota),
    /// The broker.
    Broker(BrokerError),
}

impl Store {
    /// Claims an idempotency key for job `id` (see [`Jobs::claim`]).
    ///
    /// # Errors
    /// The broker's.
    pub async fn claim(
        &self,
        key: &str,
        idem: &str,
        digest: &str,
        id: &str,
    ) -> Result<Result<Option<String>, String>, BrokerError> {
        match self {
            Store::Memory(jobs) => Ok(jobs.claim(key, idem, digest, id)),
            Store::Nats(broker) => broker.claim(key, idem, digest, id).await,
        }
    }

    /// Gives back a claim whose job was not queued.
    pub async fn release(&self, key: &str, idem: &str) {
        match self {
            Store::Memory(jobs) => jobs.release(key, idem),
            Store::Nats(broker) => {
                let _ = broker.release(key, idem).await;
            }
        }
    }

    /// Checks `task`'s key's quotas, charges its compute, and queues it on `model`; its position.
    ///
    /// # Errors
    /// [`Refusal`].
    #[allow(clippy::too_many_arguments)]
    pub async fn admit(
        &self,
        models: &Models,
        model: &str,
        task: Task,
        positions: u64,
        quota: &crate::config::Quota,
        result_bytes: u64,
        program_json: &[u8],
    ) -> Result<usize, Refusal> {
        match self {
            Store::Memory(jobs) => {
                let slot = models
                    .get(model)
                    .ok_or_else(|| Refusal::Broker(BrokerError("the model went away".into())))?;
                let queued: usize = models.iter().map(|(_, s)| s.queue.waiting_of(&task.key)).sum();
                if queued >= quota.max_queued {
                    let what = format!("this key has {queued} jobs queued, its most (wait for some to run)");
                    return Err(Refusal::Quota(OverQuota { what, retry_after: 1 }));
                }
                jobs.charge(
                    &task.key,
                    positions,
                    quota.compute_per_day,
                    result_bytes,
                    quota.max_result_bytes,
                )
                .map_err(Refusal::Quota)?;
                let position = slot.queue.ahead(&task.key);
                jobs.create(&task.id, &task.key, model, position);
                slot.queue.push(task);
                Ok(position)
            }
            Store::Nats(broker) => {
                broker
                    .charge(
                        &task.key,
                        &task.id,
                        quota.max_queued,
                        positions,
                        quota.compute_per_day,
                        result_bytes,
                        quota.max_result_bytes,
                    )
                    .await
                    .map_err(Refusal::Broker)?
                    .map_err(Refusal::Quota)?;
                let position = broker.ahead(model, &task.key).await;
                let header = Header {
                    id: task.id.clone(),
                    key: task.key.clone(),
                    exclusive: task.exclusive,
                    max_result_bytes: task.max_result_bytes,
                    max_running: task.max_running,
                };
                let request = crate::nats::pack_request(program_json, &task.tensors);
                broker.submit(model, position, request, &header).await.map_err(Refusal::Broker)?;
                Ok(position)
            }
        }
    }

    /// Job `id` if `key` owns it.
    ///
    /// # Errors
    /// The broker's.
    pub async fn view(&self, id: &str, key: &str) -> Result<Option<JobView>, BrokerError> {
        match self {
            Store::Memory(jobs) => Ok(jobs.view(id, key)),
            Store::Nats(broker) => broker.view(id, key).await,
        }
    }

    /// Cancels job `id` of `key` (see the API's `DELETE`).
    ///
    /// # Errors
    /// The broker's.
    pub async fn cancel(&self, models: &Models, id: &str, key: &str) -> Result<Option<JobView>, BrokerError> {
        match self {
            Store::Memory(jobs) => {
                let Some((model, _)) = jobs.owned(id, key) else { return Ok(None) };
                let removed = models.get(&model).is_some_and(|slot| slot.queue.remove(key, id));
                Ok(jobs.cancel(id, key, removed))
            }
            Store::Nats(broker) => broker.cancel(id, key).await,
        }
    }

    /// Job `id`'s result.
    ///
    /// # Errors
    /// The broker's; `Ok(Err(..))` when there is none to give.
    pub async fn result(
        &self,
        id: &str,
        key: &str,
    ) -> Result<Result<Arc<Vec<u8>>, ResultError>, BrokerError> {
        match self {
            Store::Memory(jobs) => Ok(jobs.result(id, key)),
            Store::Nats(broker) => Ok(broker.result(id, key).await?.map(Arc::new)),
        }
    }

    /// Job `id`'s events from number `from`, as they happen, until it ends.
    ///
    /// # Errors
    /// The broker's; `Ok(None)` if `key` does not own it.
    pub async fn follow(&self, id: &str, key: &str, from: u64) -> Result<Option<Events>, BrokerError> {
        match self {
            Store::Memory(jobs) => Ok(follow_memory(jobs.clone(), id, key, from)),
            Store::Nats(broker) => broker.follow(id, key, from).await,
        }
    }
}

/// The events of an in-memory job.
fn follow_memory(jobs: Arc<Jobs>, id: &str, key: &str, from: u64) -> Option<Events> {
    let (_, _, receiver) = jobs.follow(id, key, from)?;
    let state = (jobs, id.to_owned(), key.to_owned(), from, VecDeque::<Event>::new(), receiver, false);
    let stream = futures_util::stream::unfold(
        state,
        |(jobs, id, key, mut next, mut pending, mut receiver, mut done)| async move {
            loop {
                if let Some(event) = pending.pop_front() {
                    next = event.id + 1;
                    return Some((event, (jobs, id, key, next, pending, receiver, done)));
                }
                if done {
                    return None;
                }
                receiver.borrow_and_update();
                // A job forgotten (its time to live) while followed: the stream ends.
                let (events, ended, _) = jobs.follow(&id, &key, next)?;
                if events.is_empty() {
                    if ended || receiver.changed().await.is_err() {
                        return None;
                    }
                    continue;
                }
                done = ended;
                pending.extend(events);
            }
        },
    );
    Some(stream.boxed())
}
