//! Job records and key usage in the KV bucket, changed only by compare-and-set (an API process
//! and a worker may change one record at once; the loser reads again and retries), and what the
//! API does with them: submit, status, events, cancel, result, quotas, idempotency.

use std::pin::Pin;

use futures_util::{Stream, StreamExt};
use nnsight_remote::api::{Event, EventKind, JobView, State};
use serde::{Deserialize, Serialize};

use super::{Broker, BrokerError};
use crate::jobs::{OverQuota, ResultError};
use crate::keys::now_ms;

/// A job, as the KV bucket holds it (`job.<id>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The key that sent it.
    pub key: String,
    /// Its model.
    pub model: String,
    /// Where it is.
    pub state: State,
    /// Its history.
    pub history: Vec<Event>,
    /// Its message's sequence in the stream (to remove it while it waits).
    pub seq: Option<u64>,
    /// Its owner asked to cancel it (a running job's worker stops at the next site).
    pub cancel: bool,
    /// Its result's size, once it completed; `None` again once the result is deleted.
    pub result_bytes: Option<u64>,
    /// When its result goes.
    pub expires_ms: Option<u64>,
}

impl Record {
    /// Adds `kind` to the history, unless the job has ended; whether it did.
    pub fn push(&mut self, kind: EventKind, ttl_ms: u64) -> bool {
        if self.state.is_final() {
            return false;
        }
        let now = now_ms();
        self.state = kind.state();
        if let EventKind::Completed { result_bytes, expires_ms } = &kind {
            self.result_bytes = Some(*result_bytes);
            self.expires_ms = Some(*expires_ms);
        } else if self.state.is_final() {
            self.expires_ms = Some(now.saturating_add(ttl_ms));
        }
        self.history.push(Event { id: self.history.len() as u64, at_ms: now, kind });
        true
    }

    fn view(&self, id: &str) -> JobView {
        JobView {
            id: id.to_owned(),
            model: self.model.clone(),
            state: self.state,
            history: self.history.clone(),
        }
    }
}

/// What one key uses (`usage.<key>`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// The UTC day `compute` counts.
    pub day: u64,
    /// Positions charged that day.
    pub compute: u64,
    /// Results kept: (job, bytes, when it goes).
    pub kept: Vec<(String, u64, u64)>,
    /// Jobs waiting.
    pub queued: Vec<String>,
}

const DAY_MS: u64 = 86_400_000;

fn job_key(id: &str) -> String {
    format!("job.{id}")
}

fn usage_key(key: &str) -> String {
    format!("usage.{key}")
}

/// A stream of a job's events.
pub type Events = Pin<Box<dyn Stream<Item = Event> + Send>>;

impl Broker {
    /// The value at KV key `key` and its revision.
    async fn read<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<Option<(T, u64)>, BrokerError> {
        let Some(entry) = self.kv.entry(key).await.map_err(BrokerError::of)? else { return Ok(None) };
        if entry.value.is_empty() {
            return Ok(None);
        }
        let value = serde_json::from_slice(&entry.value).map_err(BrokerError::of)?;
        Ok(Some((value, entry.revision)))
    }

    /// Changes the value at `key` with `change` (given `None` when there is none; returning
    /// `None` changes nothing), compare-and-set, retried when another process changed it first.
    async fn change<T, R>(
        &self,
        key: &str,
        mut change: impl FnMut(Option<&mut T>) -> Option<(Option<T>, R)>,
    ) -> Result<Option<R>, BrokerError>
    where
        T: Serialize + for<'de> Deserialize<'de>,
    {
        for _ in 0..64 {
            let current = self.read::<T>(key).await?;
            let (mut value, revision) = match current {
                Some((value, revision)) => (Some(value), Some(revision)),
                None => (None, None),
            };
            let Some((replacement, result)) = change(value.as_mut()) else { return Ok(None) };
            let Some(new) = replacement.or(value) else { return Ok(Some(result)) };
            let bytes = serde_json::to_vec(&new).map_err(BrokerError::of)?.into();
            let written = match revision {
                Some(revision) => {
                    self.kv.update(key, bytes, revision).await.map(|_| ()).map_err(|e| e.to_string())
                }
                None => self.kv.create(key, bytes).await.map(|_| ()).map_err(|e| e.to_string()),
            };
            match written {
                Ok(()) => return Ok(Some(result)),
                // Another process wrote first: read again.
                Err(_) => tokio::task::yield_now().await,
            }
        }
        Err(BrokerError(format!("`{key}` kept changing under 64 attempts to update it")))
    }

    /// Job `id`'s record.
    ///
    /// # Errors
    /// The broker's.
    pub async fn record(&self, id: &str) -> Result<Option<Record>, BrokerError> {
        Ok(self.read::<Record>(&job_key(id)).await?.map(|(r, _)| r))
    }

    /// Changes job `id`'s record with `change` (returning `None` changes nothing), compare-and-set.
    ///
    /// # Errors
    /// The broker's.
    pub async fn change_record<R>(
        &self,
        id: &str,
        mut change: impl FnMut(&mut Record) -> Option<R>,
    ) -> Result<Option<R>, BrokerError> {
        self.change::<Record, R>(&job_key(id), |r| r.and_then(|r| change(r).map(|out| (None, out)))).await
    }

    /// Adds `kind` to job `id`'s history.
    ///
    /// # Errors
    /// The broker's.
    pub async fn event(&self, id: &str, kind: EventKind) -> Result<(), BrokerError> {
        let ttl = self.ttl_ms;
        self.change_record(id, |r| r.push(kind.clone(), ttl).then_some(())).await.map(|_| ())
    }

    /// Changes `key`'s usage.
    async fn change_usage<R>(
        &self,
        key: &str,
        mut change: impl FnMut(&mut Usage) -> R,
    ) -> Result<R, BrokerError> {
        let out = self
            .change::<Usage, R>(&usage_key(key), |u| match u {
                Some(u) => Some((None, change(u))),
                None => {
                    let mut fresh = Usage::default();
                    let out = change(&mut fresh);
                    Some((Some(fresh), out))
                }
            })
            .await?;
        out.ok_or_else(|| BrokerError(format!("the usage of `{key}` could not be written")))
    }

    /// Claims idempotency key `idem` of `key` for job `id`, atomically across API replicas
    /// (see [`Jobs::claim`](crate::jobs::Jobs::claim)).
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
        let name = format!("idem.{key}.{}", crate::keys::hash_token(idem));
        let value = serde_json::to_vec(&(id, digest)).map_err(BrokerError::of)?;
        for _ in 0..8 {
            if self.kv.create(&name, value.clone().into()).await.is_ok() {
                return Ok(Ok(None));
            }
            match self.read::<(String, String)>(&name).await? {
                Some(((job, d), _)) if d == digest => return Ok(Ok(Some(job))),
                Some(((job, _), _)) => return Ok(Err(job)),
                // Released between the two: try again.
                None => continue,
            }
        }
        Err(BrokerError(format!("the idempotency key of `{key}` kept changing")))
    }

    /// Gives back a claim whose job was not queued.
    ///
    /// # Errors
    /// The broker's.
    pub async fn release(&self, key: &str, idem: &str) -> Result<(), BrokerError> {
        let name = format!("idem.{key}.{}", crate::keys::hash_token(idem));
        self.kv.purge(name).await.map_err(BrokerError::of)
    }

    /// Charges compute and checks result room as [`Jobs::charge`](crate::jobs::Jobs::charge),
    /// and counts the job `id` as queued for `key` if it has room for one more of `max_queued`.
    ///
    /// # Errors
    /// `Ok(Err(..))` naming what is used up.
    #[allow(clippy::too_many_arguments)]
    pub async fn charge(
        &self,
        key: &str,
        id: &str,
        max_queued: usize,
        positions: u64,
        per_day: u64,
        result_bytes: u64,
        max_result_bytes: u64,
    ) -> Result<Result<(), OverQuota>, BrokerError> {
        self.change_usage(key, |u| {
            let now = now_ms();
            u.kept.retain(|(_, _, expires)| *expires > now);
            if u.day != now / DAY_MS {
                u.day = now / DAY_MS;
                u.compute = 0;
            }
            if u.queued.len() >= max_queued {
                let what = format!("this key has {} jobs queued, its most (wait for some to run)", u.queued.len());
                return Err(OverQuota { what, retry_after: 1 });
            }
            let kept: u64 = u.kept.iter().map(|(_, b, _)| b).sum();
            if kept.saturating_add(result_bytes) > max_result_bytes {
                let oldest = u.kept.iter().map(|(_, _, e)| *e).min();
                return Err(OverQuota {
                    what: format!("results kept: {kept} bytes held and up to {result_bytes} more asked, of {max_result_bytes}"),
                    retry_after: oldest.map_or(1, |t| t.saturating_sub(now).div_ceil(1000).max(1)),
                });
            }
            if u.compute.saturating_add(positions) > per_day {
                return Err(OverQuota {
                    what: format!("compute today: {} positions used and {positions} asked, of {per_day} per day", u.compute),
                    retry_after: ((u.day + 1) * DAY_MS).saturating_sub(now).div_ceil(1000).max(1),
                });
            }
            u.compute += positions;
            u.queued.push(id.to_owned());
            Ok(())
        })
        .await
    }

    /// Job `id` of `key` no longer waits.
    ///
    /// # Errors
    /// The broker's.
    pub async fn dequeued(&self, key: &str, id: &str) -> Result<(), BrokerError> {
        self.change_usage(key, |u| u.queued.retain(|q| q != id)).await
    }

    /// Job `id` of `key` keeps a result of `bytes` until `expires_ms`.
    ///
    /// # Errors
    /// The broker's.
    pub async fn kept(&self, key: &str, id: &str, bytes: u64, expires_ms: u64) -> Result<(), BrokerError> {
        self.change_usage(key, |u| {
            if !u.kept.iter().any(|(j, ..)| j == id) {
                u.kept.push((id.to_owned(), bytes, expires_ms));
            }
        })
        .await
    }

    /// Queues the job of `header` on `model` at `position`: its request stored, its record made,
    /// its message published.
    ///
    /// # Errors
    /// The broker's.
    pub async fn submit(
        &self,
        model: &str,
        position: usize,
        request: Vec<u8>,
        header: &super::intake::Header,
    ) -> Result<(), BrokerError> {
        let (id, key) = (header.id.as_str(), header.key.as_str());
        Self::put(&self.requests, id, &request).await?;
        let mut record = Record {
            key: key.to_owned(),
            model: model.to_owned(),
            state: State::Queued,
            history: Vec::new(),
            seq: None,
            cancel: false,
            result_bytes: None,
            expires_ms: None,
        };
        record.push(EventKind::Queued { position }, self.ttl_ms);
        let bytes = serde_json::to_vec(&record).map_err(BrokerError::of)?;
        self.kv.create(job_key(id), bytes.into()).await.map_err(BrokerError::of)?;
        let payload = serde_json::to_vec(header).map_err(BrokerError::of)?;
        let ack = self
            .js
            .publish(Self::subject(model, key), payload.into())
            .await
            .map_err(BrokerError::of)?
            .await
            .map_err(BrokerError::of)?;
        self.change_record(id, |r| {
            r.seq = Some(ack.sequence);
            Some(())
        })
        .await?;
        Ok(())
    }

    /// How many waiting jobs the workers' turns across keys take before one more of `key` on
    /// `model` (as the in-memory queue's [`ahead`](crate::queue::Queue::ahead) counts).
    pub async fn ahead(&self, model: &str, key: &str) -> usize {
        let waiting = self.waiting_per_key(model).await;
        let mine = waiting.iter().find(|(k, _)| k == key).map_or(0, |(_, n)| *n);
        mine + waiting.iter().filter(|(k, _)| k != key).map(|(_, n)| (*n).min(mine + 1)).sum::<usize>()
    }

    /// Job `id` if `key` owns it.
    ///
    /// # Errors
    /// The broker's.
    pub async fn view(&self, id: &str, key: &str) -> Result<Option<JobView>, BrokerError> {
        Ok(self.record(id).await?.filter(|r| r.key == key).map(|r| r.view(id)))
    }

    /// Cancels job `id` of `key` (as [`Jobs::cancel`](crate::jobs::Jobs::cancel)): a waiting
    /// job's message is removed from the stream; a running one's record asks its worker to stop;
    /// a finished one's result is deleted.
    ///
    /// # Errors
    /// The broker's.
    pub async fn cancel(&self, id: &str, key: &str) -> Result<Option<JobView>, BrokerError> {
        let Some(record) = self.record(id).await?.filter(|r| r.key == key) else { return Ok(None) };
        match record.state {
            State::Queued => {
                let removed = match record.seq {
                    Some(seq) => self.stream.delete_message(seq).await.unwrap_or(false),
                    None => false,
                };
                let ttl = self.ttl_ms;
                self.change_record(id, |r| {
                    if removed && r.state == State::Queued {
                        r.push(EventKind::Cancelled, ttl);
                    } else {
                        r.cancel = true;
                    }
                    Some(())
                })
                .await?;
                if removed {
                    self.dequeued(key, id).await?;
                }
            }
            State::Running => {
                self.change_record(id, |r| {
                    r.cancel = true;
                    Some(())
                })
                .await?;
            }
            _ => {
                if record.result_bytes.is_some() {
                    let _ = self.results.delete(id).await;
                    self.change_record(id, |r| r.result_bytes.take().map(|_| ())).await?;
                    self.change_usage(key, |u| u.kept.retain(|(j, ..)| j != id)).await?;
                }
            }
        }
        self.view(id, key).await
    }

    /// Job `id`'s result.
    ///
    /// # Errors
    /// `Ok(Err(..))` as [`Jobs::result`](crate::jobs::Jobs::result).
    pub async fn result(&self, id: &str, key: &str) -> Result<Result<Vec<u8>, ResultError>, BrokerError> {
        let Some(record) = self.record(id).await?.filter(|r| r.key == key) else {
            return Ok(Err(ResultError::NotFound));
        };
        Ok(match record.state {
            State::Completed if record.result_bytes.is_some() => match Self::get(&self.results, id).await? {
                Some(bytes) => Ok(bytes),
                None => Err(ResultError::Expired),
            },
            State::Completed => Err(ResultError::Expired),
            State::Failed | State::Cancelled => Err(match record.history.last().map(|e| &e.kind) {
                Some(EventKind::Failed { code, message }) => {
                    ResultError::NoResult(code.clone(), message.clone())
                }
                _ => ResultError::NoResult("cancelled".to_owned(), "the job was cancelled".to_owned()),
            }),
            state => Err(ResultError::NotFinished(state)),
        })
    }

    /// Job `id`'s events from number `from`, then each new one as its record changes, until it
    /// ends; `None` if `key` does not own it.
    ///
    /// # Errors
    /// The broker's.
    pub async fn follow(&self, id: &str, key: &str, from: u64) -> Result<Option<Events>, BrokerError> {
        // Watch first, read second: no change falls between them.
        let watch = self.kv.watch(job_key(id)).await.map_err(BrokerError::of)?;
        let Some(record) = self.record(id).await?.filter(|r| r.key == key) else { return Ok(None) };
        let pending: std::collections::VecDeque<Event> =
            record.history.iter().skip(from as usize).cloned().collect();
        let next = from.max(record.history.len() as u64);
        let state = (watch, pending, next, record.state.is_final());
        let stream =
            futures_util::stream::unfold(state, |(mut watch, mut pending, mut next, mut done)| async move {
                loop {
                    if let Some(event) = pending.pop_front() {
                        return Some((event, (watch, pending, next, done)));
                    }
                    if done {
                        return None;
                    }
                    let entry = watch.next().await?.ok()?;
                    let Ok(record) = serde_json::from_slice::<Record>(&entry.value) else { continue };
                    pending.extend(record.history.iter().skip(next as usize).cloned());
                    next = next.max(record.history.len() as u64);
                    done = record.state.is_final();
                }
            });
        Ok(Some(Box::pin(stream)))
    }
}
