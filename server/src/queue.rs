//! The in-memory queue of one model: jobs wait per key, and workers take them round-robin
//! across keys (one key's hundred jobs do not hold back another key's one), never more at once
//! for a key than its quota's `max_running`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use nnsight_remote::ir::Program;

/// A validated job, waiting for a worker.
#[derive(Debug)]
pub struct Task {
    /// The job's id.
    pub id: String,
    /// The key that sent it.
    pub key: String,
    /// The program (validated against the model's manifest).
    pub program: Program,
    /// Its tensors (a safetensors file; empty for none).
    pub tensors: Vec<u8>,
    /// Run alone, never batched.
    pub exclusive: bool,
    /// The most bytes its result may have.
    pub max_result_bytes: u64,
    /// The key's `max_running`.
    pub max_running: usize,
    /// The jobs it may share a forward pass with (`None`: it runs alone).
    pub class: Option<crate::batch::Class>,
    /// Its rows and longest prompt (what it adds to a batch's padded positions).
    pub footprint: (usize, usize),
}

#[derive(Default)]
struct Inner {
    /// Waiting tasks per key.
    waiting: BTreeMap<String, VecDeque<Task>>,
    /// Keys with waiting tasks, in the order they get their next turn.
    turns: VecDeque<String>,
    /// Tasks running per key.
    running: BTreeMap<String, usize>,
    closed: bool,
}

/// One model's queue.
#[derive(Default)]
pub struct Queue {
    inner: Mutex<Inner>,
    ready: Condvar,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("waiting", &self.len()).finish()
    }
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many waiting tasks the round-robin would take before one more of `key`.
    pub fn ahead(&self, key: &str) -> usize {
        let inner = self.lock();
        let index = inner.waiting.get(key).map_or(0, VecDeque::len);
        // Keys whose turn comes before `key`'s (all of them, if `key` has none waiting) get one
        // turn more than those after it.
        let mut before = index;
        let mut ahead_in_turn = true;
        for other in &inner.turns {
            if other == key {
                ahead_in_turn = false;
                continue;
            }
            let len = inner.waiting.get(other).map_or(0, VecDeque::len);
            before += len.min(index + usize::from(ahead_in_turn));
        }
        before
    }

    /// Adds `task`.
    pub fn push(&self, task: Task) {
        let mut inner = self.lock();
        let key = task.key.clone();
        inner.waiting.entry(key.clone()).or_default().push_back(task);
        if !inner.turns.contains(&key) {
            inner.turns.push_back(key);
        }
        drop(inner);
        self.ready.notify_one();
    }

    /// Waits up to `timeout` for the next task whose key may run one more; counts it running.
    pub fn pop(&self, timeout: Duration) -> Option<Task> {
        let deadline = std::time::Instant::now() + timeout;
        let mut inner = self.lock();
        loop {
            if inner.closed {
                return None;
            }
            if let Some(task) = take(&mut inner) {
                return Some(task);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            inner = self.ready.wait_timeout(inner, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Up to `max` more waiting tasks for which `fits` holds (asked in round-robin order, one
    /// task of a key per turn, each key's oldest first; `fits` may count what it accepts), each
    /// counted running: the rest of a batch.
    pub fn take_matching(&self, max: usize, mut fits: impl FnMut(&Task) -> bool) -> Vec<Task> {
        let mut inner = self.lock();
        let mut taken = Vec::new();
        loop {
            let before = taken.len();
            for _ in 0..inner.turns.len() {
                if taken.len() == max {
                    return taken;
                }
                let Some(key) = inner.turns.pop_front() else { break };
                let running = inner.running.get(&key).copied().unwrap_or(0);
                let Some(list) = inner.waiting.get_mut(&key) else { continue };
                let eligible = list.front().is_some_and(|t| running < t.max_running.max(1) && fits(t));
                if !eligible {
                    inner.turns.push_back(key);
                    continue;
                }
                let task = list.pop_front().expect("the front task exists");
                if list.is_empty() {
                    inner.waiting.remove(&key);
                } else {
                    inner.turns.push_back(key.clone());
                }
                *inner.running.entry(key).or_default() += 1;
                taken.push(task);
            }
            if taken.len() == before {
                return taken;
            }
        }
    }

    /// Waits until a task is pushed or `timeout` passes.
    pub fn wait(&self, timeout: Duration) {
        let inner = self.lock();
        let _ = self.ready.wait_timeout(inner, timeout);
    }

    /// A task of `key` has ended: its key may run another.
    pub fn done(&self, key: &str) {
        let mut inner = self.lock();
        if let Some(n) = inner.running.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.running.remove(key);
            }
        }
        drop(inner);
        self.ready.notify_all();
    }

    /// Removes the waiting task `id` of `key`; whether it was waiting.
    pub fn remove(&self, key: &str, id: &str) -> bool {
        let mut inner = self.lock();
        let Some(list) = inner.waiting.get_mut(key) else { return false };
        let before = list.len();
        list.retain(|t| t.id != id);
        let removed = list.len() != before;
        if list.is_empty() {
            inner.waiting.remove(key);
            inner.turns.retain(|k| k != key);
        }
        removed
    }

    /// Tasks waiting.
    pub fn len(&self) -> usize {
        self.lock().waiting.values().map(VecDeque::len).sum()
    }

    /// Whether no task waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tasks of `key` waiting.
    pub fn waiting_of(&self, key: &str) -> usize {
        self.lock().waiting.get(key).map_or(0, VecDeque::len)
    }

    /// Tasks running.
    pub fn running(&self) -> usize {
        self.lock().running.values().sum()
    }

    /// Wakes every worker to stop: `pop` returns `None` from now on.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }
}

/// The next task in round-robin order whose key is below its `max_running`, counted running.
fn take(inner: &mut Inner) -> Option<Task> {
    for _ in 0..inner.turns.len() {
        let key = inner.turns.pop_front()?;
        let running = inner.running.get(&key).copied().unwrap_or(0);
        let list = inner.waiting.get_mut(&key)?;
        let eligible = list.front().is_some_and(|t| running < t.max_running.max(1));
        if !eligible {
            inner.turns.push_back(key);
            continue;
        }
        let task = list.pop_front()?;
        if list.is_empty() {
            inner.waiting.remove(&key);
        } else {
            inner.turns.push_back(key.clone());
        }
        *inner.running.entry(key).or_default() += 1;
        return Some(task);
    }
    None
}
