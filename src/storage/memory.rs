//! [`MemoryStore`]: the store in process memory (`service.storage: memory:`),
//! for tests and throwaway runs. Same contract as the database store — one
//! lock makes every batch atomic — but everything is lost on exit.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use indexmap::IndexMap;

use crate::model::UnixNanos;
use crate::model::{Rollout, RunRecord, WindowRecord};

use super::{
    change_body, event_body, Attempt, Commit, Delivery, DeliveryState, RunStore, StoreError,
    StoreFuture, MAX_WINDOWS_PER_RUN,
};

/// Transitions kept in memory (oldest dropped first, with their deliveries).
const MAX_TRANSITIONS: usize = 10_000;

#[derive(Debug, Default)]
struct Inner {
    /// Runs by id, in creation order.
    runs: IndexMap<String, RunRecord>,
    /// `(contract, subject)` → id of the current run.
    current: HashMap<(String, String), String>,
    /// Window results by run, oldest first.
    windows: HashMap<String, BTreeMap<UnixNanos, WindowRecord>>,
    /// `(run_id, event_id, body)`, oldest first.
    transitions: VecDeque<(String, String, String)>,
    /// `(event_id, exporter)` → row, in commit order.
    outbox: IndexMap<(String, String), Delivery>,
    /// `(pipeline, slot)` → state.
    checkpoints: BTreeMap<(String, i64), String>,
    /// `(run_id, exporter)` → rollout.
    rollouts: BTreeMap<(String, String), Rollout>,
}

/// Runs kept in process memory: lost on restart.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))
    }

    /// Runs `f` under the lock as an immediately ready future.
    fn with<T: Send + 'static>(&self, f: impl FnOnce(&mut Inner) -> T) -> StoreFuture<'_, T> {
        let out = self.lock().map(|mut inner| f(&mut inner));
        Box::pin(std::future::ready(out))
    }
}

/// A new outbox row, due at once.
fn pending_row(event_id: &str, exporter: &str, now: UnixNanos, event: String) -> Delivery {
    Delivery {
        event_id: event_id.to_string(),
        exporter: exporter.to_string(),
        state: DeliveryState::Pending,
        attempts: 0,
        created_at: now,
        updated_at: now,
        next_attempt_at: now,
        last_error: None,
        event,
    }
}

impl Inner {
    fn commit_one(&mut self, c: &Commit, now: UnixNanos) {
        let run = &c.run;
        let key = (run.contract.clone(), run.subject.joined().to_string());
        if run.superseded {
            if self.current.get(&key) == Some(&run.run_id) {
                self.current.remove(&key);
            }
        } else {
            self.current.insert(key, run.run_id.clone());
        }
        self.runs.insert(run.run_id.clone(), run.clone());
        if let Some(w) = &c.window {
            let list = self.windows.entry(run.run_id.clone()).or_default();
            list.insert(w.window.start, w.clone());
            while list.len() > MAX_WINDOWS_PER_RUN {
                list.pop_first();
            }
        }
        for rc in &c.rollouts {
            let r = &rc.rollout;
            self.rollouts
                .insert((r.run_id.clone(), r.exporter.clone()), r.clone());
            if let Some(change) = &rc.change {
                let key = (change.change_id.clone(), change.exporter.clone());
                self.outbox.entry(key).or_insert_with(|| {
                    pending_row(
                        &change.change_id,
                        &change.exporter,
                        now,
                        change_body(change),
                    )
                });
            }
        }
        if let Some(e) = &c.event {
            if self.transitions.iter().any(|(_, id, _)| id == &e.event_id) {
                return;
            }
            if self.transitions.len() >= MAX_TRANSITIONS {
                if let Some((_, old, _)) = self.transitions.pop_front() {
                    self.outbox.retain(|(id, _), _| id != &old);
                }
            }
            let body = event_body(e);
            self.transitions
                .push_back((run.run_id.clone(), e.event_id.clone(), body.clone()));
            for exporter in &c.outbox {
                self.outbox.insert(
                    (e.event_id.clone(), exporter.clone()),
                    pending_row(&e.event_id, exporter, now, body.clone()),
                );
            }
        }
    }
}

impl RunStore for MemoryStore {
    fn commit<'a>(&'a self, batch: &'a [Commit], now: UnixNanos) -> StoreFuture<'a, ()> {
        self.with(|inner| {
            for c in batch {
                inner.commit_one(c, now);
            }
        })
    }

    fn runs(&self, limit: usize) -> StoreFuture<'_, Vec<RunRecord>> {
        self.with(move |inner| {
            let mut runs: Vec<RunRecord> = inner.runs.values().cloned().collect();
            runs.sort_by(|a, b| (b.started_at, &b.run_id).cmp(&(a.started_at, &a.run_id)));
            runs.truncate(limit);
            runs
        })
    }

    fn current<'a>(
        &'a self,
        contract: &'a str,
        subject: &'a str,
    ) -> StoreFuture<'a, Option<RunRecord>> {
        self.with(move |inner| {
            let id = inner
                .current
                .get(&(contract.to_string(), subject.to_string()));
            id.and_then(|id| inner.runs.get(id)).cloned()
        })
    }

    fn current_of<'a>(
        &'a self,
        contract: &'a str,
        subjects: &'a [&'a str],
    ) -> StoreFuture<'a, Vec<RunRecord>> {
        self.with(move |inner| {
            subjects
                .iter()
                .filter_map(|s| inner.current.get(&(contract.to_string(), s.to_string())))
                .filter_map(|id| inner.runs.get(id).cloned())
                .collect()
        })
    }

    fn current_runs<'a>(&'a self, contract: &'a str) -> StoreFuture<'a, Vec<RunRecord>> {
        self.with(move |inner| {
            let mut runs: Vec<RunRecord> = inner
                .current
                .iter()
                .filter(|((c, _), _)| c == contract)
                .filter_map(|(_, id)| inner.runs.get(id).cloned())
                .collect();
            runs.sort_by(|a, b| a.subject.cmp(&b.subject));
            runs
        })
    }

    fn live_runs<'a>(
        &'a self,
        contract: &'a str,
        version: u32,
        decided_after: UnixNanos,
    ) -> StoreFuture<'a, Vec<(RunRecord, Option<WindowRecord>)>> {
        self.with(move |inner| {
            let mut runs: Vec<(RunRecord, Option<WindowRecord>)> = inner
                .current
                .iter()
                .filter(|((c, _), _)| c == contract)
                .filter_map(|(_, id)| inner.runs.get(id))
                .filter(|r| r.contract_version == version)
                .filter(|r| r.decided_at.is_none_or(|d| d >= decided_after))
                .map(|r| {
                    let last = inner
                        .windows
                        .get(&r.run_id)
                        .and_then(|l| l.values().next_back().cloned());
                    (r.clone(), last)
                })
                .collect();
            runs.sort_by(|a, b| a.0.subject.cmp(&b.0.subject));
            runs
        })
    }

    fn purge_retired(&self, before: UnixNanos) -> StoreFuture<'_, u64> {
        self.with(move |inner| {
            let gone: Vec<String> = inner
                .runs
                .values()
                .filter(|r| r.retired_at.is_some_and(|t| t < before))
                .map(|r| r.run_id.clone())
                .collect();
            let needed: std::collections::HashSet<String> = inner
                .outbox
                .values()
                .filter(|d| d.state != DeliveryState::Delivered)
                .map(|d| d.event_id.clone())
                .collect();
            let mut purged = 0;
            for id in gone {
                inner.windows.remove(&id);
                inner
                    .transitions
                    .retain(|(run, event, _)| run != &id || needed.contains(event));
                if !inner.transitions.iter().any(|(run, _, _)| run == &id) {
                    inner.runs.shift_remove(&id);
                    inner.rollouts.retain(|(run, _), _| run != &id);
                    purged += 1;
                }
            }
            purged
        })
    }

    fn windows<'a>(&'a self, run_id: &'a str, limit: usize) -> StoreFuture<'a, Vec<WindowRecord>> {
        self.with(move |inner| {
            inner
                .windows
                .get(run_id)
                .map(|l| l.values().rev().take(limit).cloned().collect())
                .unwrap_or_default()
        })
    }

    fn transitions<'a>(&'a self, run_id: &'a str, limit: usize) -> StoreFuture<'a, Vec<String>> {
        self.with(move |inner| {
            inner
                .transitions
                .iter()
                .rev()
                .filter(|(r, _, _)| r == run_id)
                .take(limit)
                .map(|(_, _, body)| body.clone())
                .collect()
        })
    }

    fn pending<'a>(&'a self, exporter: &'a str, limit: usize) -> StoreFuture<'a, Vec<Delivery>> {
        self.with(move |inner| {
            inner
                .outbox
                .values()
                .filter(|d| d.exporter == exporter && d.state == DeliveryState::Pending)
                .take(limit)
                .cloned()
                .collect()
        })
    }

    fn record_attempt<'a>(
        &'a self,
        exporter: &'a str,
        event_id: &'a str,
        attempt: &'a Attempt,
        now: UnixNanos,
    ) -> StoreFuture<'a, ()> {
        self.with(move |inner| {
            let key = (event_id.to_string(), exporter.to_string());
            if let Some(d) = inner.outbox.get_mut(&key) {
                let (state, next_at, error) = attempt.outcome();
                d.attempts += 1;
                d.updated_at = now;
                d.state = state;
                d.next_attempt_at = next_at.unwrap_or(d.next_attempt_at);
                d.last_error = error.map(str::to_string);
            }
        })
    }

    fn deliveries<'a>(
        &'a self,
        states: &'a [DeliveryState],
        limit: usize,
    ) -> StoreFuture<'a, Vec<Delivery>> {
        self.with(move |inner| {
            inner
                .outbox
                .values()
                .rev()
                .filter(|d| states.contains(&d.state))
                .take(limit)
                .cloned()
                .collect()
        })
    }

    fn purge_delivered(&self, before: UnixNanos) -> StoreFuture<'_, u64> {
        self.with(move |inner| {
            let n = inner.outbox.len();
            inner
                .outbox
                .retain(|_, d| !(d.state == DeliveryState::Delivered && d.created_at < before));
            (n - inner.outbox.len()) as u64
        })
    }

    fn save_checkpoint<'a>(
        &'a self,
        pipeline: &'a str,
        slots: &'a [(i64, String)],
        replace_all: bool,
        _now: UnixNanos,
    ) -> StoreFuture<'a, ()> {
        self.with(move |inner| {
            if replace_all {
                inner.checkpoints.retain(|(p, _), _| p != pipeline);
            }
            for (slot, state) in slots {
                inner
                    .checkpoints
                    .insert((pipeline.to_string(), *slot), state.clone());
            }
        })
    }

    fn load_checkpoint<'a>(&'a self, pipeline: &'a str) -> StoreFuture<'a, Vec<(i64, String)>> {
        self.with(move |inner| {
            inner
                .checkpoints
                .iter()
                .filter(|((p, _), _)| p == pipeline)
                .map(|((_, slot), state)| (*slot, state.clone()))
                .collect()
        })
    }

    fn rollouts<'a>(&'a self, run_id: &'a str) -> StoreFuture<'a, Vec<Rollout>> {
        self.with(move |inner| {
            inner
                .rollouts
                .iter()
                .filter(|((run, _), _)| run == run_id)
                .map(|(_, r)| r.clone())
                .collect()
        })
    }

    fn save_rollouts<'a>(
        &'a self,
        rollouts: &'a [Rollout],
        _now: UnixNanos,
    ) -> StoreFuture<'a, ()> {
        self.with(move |inner| {
            for r in rollouts {
                inner
                    .rollouts
                    .insert((r.run_id.clone(), r.exporter.clone()), r.clone());
            }
        })
    }

    fn delivery<'a>(
        &'a self,
        event_id: &'a str,
        exporter: &'a str,
    ) -> StoreFuture<'a, Option<Delivery>> {
        self.with(move |inner| {
            inner
                .outbox
                .get(&(event_id.to_string(), exporter.to_string()))
                .cloned()
        })
    }
}
