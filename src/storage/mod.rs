//! The storage seam: everything verdict persists — runs, their window
//! history, transitions with their outbox rows, open-window checkpoints —
//! goes through [`RunStore`], so the backend is a matter of configuration
//! (`service.storage`): [`MemoryStore`] (`memory:`, tests) or [`SqlStore`]
//! (`sqlite://…`, the default, or `postgres://…`: the same SQL).
//!
//! # Why the seam is asynchronous, and the engine is not
//!
//! A database call waits on I/O, and the run engine is a pure, synchronous
//! state machine that is tested without a runtime. So the engine does not
//! call the store: it *returns* the [`Commit`]s it decided, and its async
//! driver (`runs::task`) awaits [`RunStore::commit`] for the whole batch in
//! one transaction and only then announces anything. Trait methods return
//! boxed futures ([`StoreFuture`]) so the store can be shared as
//! `Arc<dyn RunStore>` by the engine tasks, the delivery workers and the API.

pub(crate) mod batch;
pub(crate) mod checkpoint;
pub mod cluster;
pub(crate) mod codec;
pub(crate) mod memory;
pub(crate) mod postgres;
pub(crate) mod sql;
#[doc(hidden)]
pub mod testing;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;

use crate::config::StorageSpec;
use crate::model::UnixNanos;
use crate::model::{FlagChange, Rollout, RunRecord, VerdictEvent, WindowRecord};

pub use memory::MemoryStore;
pub use sql::SqlStore;

/// Window results kept per run; older ones are dropped first.
pub const MAX_WINDOWS_PER_RUN: usize = 1000;

/// What a store call returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be used right now (locked, disk full, gone…).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The storage could not be opened or prepared at start.
    #[error("cannot open storage {url}: {reason}")]
    Open {
        /// The configured storage URL.
        url: String,
        /// What went wrong, as a sentence.
        reason: String,
    },
    /// Stored data could not be read back.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// Another process runs as this instance now (this one was deposed
    /// while frozen, and the name was taken since): nothing more may be
    /// written under the name by this process.
    #[error("another verdict process runs as instance {0} now; this one must write nothing more")]
    Superseded(String),
}

/// Opens (and for a database, creates and migrates) the configured store.
pub async fn open(spec: &StorageSpec) -> Result<Arc<dyn RunStore>, StoreError> {
    Ok(match spec {
        StorageSpec::Memory => Arc::new(MemoryStore::new()),
        StorageSpec::Sqlite { url, path } => Arc::new(SqlStore::open_sqlite(url, path).await?),
        StorageSpec::Postgres(spec) => Arc::new(SqlStore::open_postgres(spec).await?),
    })
}

/// One unit the run engine decided: a run's new state, the window result
/// that was recorded, and the transition it caused with the exporters that
/// must deliver it. A batch of commits is stored atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// The run after the change.
    pub run: RunRecord,
    /// The window result recorded for the run, if any.
    pub window: Option<WindowRecord>,
    /// The transition, if the run changed state.
    pub event: Option<VerdictEvent>,
    /// Exporters (full ids) that get an outbox row for `event`.
    pub outbox: Vec<String>,
    /// The run's flag rollouts that changed, each with the flag change it
    /// decided (an outbox row of its exporter), if any.
    pub rollouts: Vec<RolloutCommit>,
}

/// A rollout as it is now, and the flag change that made it so.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutCommit {
    /// The rollout after the change.
    pub rollout: Rollout,
    /// The change to deliver, if the flag's value changed.
    pub change: Option<FlagChange>,
}

/// The JSON body of a flag change, as its outbox row keeps it.
pub fn change_body(change: &FlagChange) -> String {
    serde_json::to_string(change).unwrap_or_default()
}

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet; retried when due.
    Pending,
    /// Acknowledged by the target.
    Delivered,
    /// Given up (final 4xx, or retried until `max_elapsed`).
    Failed,
    /// A flag change replaced by a later change of the same flag before it
    /// was applied: the later one carries the value that counts.
    Superseded,
}

impl DeliveryState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Superseded => "superseded",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<DeliveryState> {
        match s {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "failed" => Some(DeliveryState::Failed),
            "superseded" => Some(DeliveryState::Superseded),
            _ => None,
        }
    }
}

/// One outbox row: an event to deliver to one exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The transition's stable id.
    pub event_id: String,
    /// Full exporter id.
    pub exporter: String,
    /// Where it stands.
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the transition was committed.
    pub created_at: UnixNanos,
    /// Last change of the row.
    pub updated_at: UnixNanos,
    /// When the next attempt is due (pending rows).
    pub next_attempt_at: UnixNanos,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The event's JSON, exactly as stored with the transition.
    pub event: String,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// The target acknowledged it.
    Delivered,
    /// It failed and is retried at `next_at`.
    Retry {
        /// When to try again.
        next_at: UnixNanos,
        /// What went wrong.
        error: String,
    },
    /// It failed for good.
    Failed {
        /// What went wrong.
        error: String,
    },
    /// Not delivered: a later row replaces it (flag changes only).
    Superseded {
        /// Why, naming the row that replaces it.
        note: String,
    },
}

impl Attempt {
    /// What the attempt makes of its outbox row: the new state, the next
    /// attempt time when it changes, and the error to keep (`None` clears it).
    pub fn outcome(&self) -> (DeliveryState, Option<UnixNanos>, Option<&str>) {
        match self {
            Attempt::Delivered => (DeliveryState::Delivered, None, None),
            Attempt::Retry { next_at, error } => {
                (DeliveryState::Pending, Some(*next_at), Some(error.as_str()))
            }
            Attempt::Failed { error } => (DeliveryState::Failed, None, Some(error.as_str())),
            Attempt::Superseded { note } => (DeliveryState::Superseded, None, Some(note.as_str())),
        }
    }
}

/// Where runs, their window history, transitions, the outbox and the
/// checkpoints live. See the module documentation for why it is async.
pub trait RunStore: Send + Sync + std::fmt::Debug {
    /// Stores a batch atomically: every run, window, transition and outbox
    /// row of `batch`, or none of it. Writing the same batch again (a retry
    /// after an error) changes nothing more.
    fn commit<'a>(&'a self, batch: &'a [Commit], now: UnixNanos) -> StoreFuture<'a, ()>;

    /// Every run, superseded ones included, newest first, at most `limit`.
    fn runs(&self, limit: usize) -> StoreFuture<'_, Vec<RunRecord>>;

    /// The current (not superseded, latest) run of a contract's subject.
    fn current<'a>(
        &'a self,
        contract: &'a str,
        subject: &'a str,
    ) -> StoreFuture<'a, Option<RunRecord>>;

    /// The current run of each of `subjects` (joined) of a contract that
    /// has one, in any order: what [`RunStore::current`] answers for each,
    /// in one call (a cluster's leader looks up every new series of a
    /// window at once).
    fn current_of<'a>(
        &'a self,
        contract: &'a str,
        subjects: &'a [&'a str],
    ) -> StoreFuture<'a, Vec<RunRecord>>;

    /// The current run of every subject of a contract, by subject.
    fn current_runs<'a>(&'a self, contract: &'a str) -> StoreFuture<'a, Vec<RunRecord>>;

    /// What `/metrics` shows of a contract: the current runs of its version
    /// `version` that are undecided or were decided at or after
    /// `decided_after`, each with its newest window result — in one query,
    /// so a scrape costs the live runs, not every run ever made.
    fn live_runs<'a>(
        &'a self,
        contract: &'a str,
        version: u32,
        decided_after: UnixNanos,
    ) -> StoreFuture<'a, Vec<(RunRecord, Option<WindowRecord>)>>;

    /// Deletes the runs retired before `before` (idle, without a verdict),
    /// their windows, and their transitions that no undelivered outbox row
    /// still needs; returns how many runs went.
    fn purge_retired(&self, before: UnixNanos) -> StoreFuture<'_, u64>;

    /// A run's window history, newest first, at most `limit`.
    fn windows<'a>(&'a self, run_id: &'a str, limit: usize) -> StoreFuture<'a, Vec<WindowRecord>>;

    /// A run's transitions as their event JSON, newest first, at most `limit`.
    fn transitions<'a>(&'a self, run_id: &'a str, limit: usize) -> StoreFuture<'a, Vec<String>>;

    /// The oldest pending deliveries of `exporter`, in commit order (due or
    /// not: the worker delivers in order and waits for the head).
    fn pending<'a>(&'a self, exporter: &'a str, limit: usize) -> StoreFuture<'a, Vec<Delivery>>;

    /// Records the outcome of an attempt.
    fn record_attempt<'a>(
        &'a self,
        exporter: &'a str,
        event_id: &'a str,
        attempt: &'a Attempt,
        now: UnixNanos,
    ) -> StoreFuture<'a, ()>;

    /// Deliveries in `states`, newest first, at most `limit`.
    fn deliveries<'a>(
        &'a self,
        states: &'a [DeliveryState],
        limit: usize,
    ) -> StoreFuture<'a, Vec<Delivery>>;

    /// Forgets delivered rows committed before `before` (their transition is
    /// kept); returns how many.
    fn purge_delivered(&self, before: UnixNanos) -> StoreFuture<'_, u64>;

    /// Writes checkpoint slots of a pipeline (one transaction), replacing the
    /// slots with the same number; `replace_all` first removes every slot.
    fn save_checkpoint<'a>(
        &'a self,
        pipeline: &'a str,
        slots: &'a [(i64, String)],
        replace_all: bool,
        now: UnixNanos,
    ) -> StoreFuture<'a, ()>;

    /// Every checkpoint slot of a pipeline.
    fn load_checkpoint<'a>(&'a self, pipeline: &'a str) -> StoreFuture<'a, Vec<(i64, String)>>;

    /// The flag rollouts of a run, by exporter id.
    fn rollouts<'a>(&'a self, run_id: &'a str) -> StoreFuture<'a, Vec<Rollout>>;

    /// Stores rollouts whose acknowledgement arrived (no change of value).
    fn save_rollouts<'a>(&'a self, rollouts: &'a [Rollout], now: UnixNanos) -> StoreFuture<'a, ()>;

    /// One outbox row, if it is still kept.
    fn delivery<'a>(
        &'a self,
        event_id: &'a str,
        exporter: &'a str,
    ) -> StoreFuture<'a, Option<Delivery>>;
}

/// The event JSON stored with a transition and delivered by every exporter.
pub fn event_body(event: &VerdictEvent) -> String {
    crate::proto::event_json(event).to_string()
}

/// Whether the storage is usable at run time, as last seen by each task
/// that uses it (a pipeline's engine, an exporter's worker); `/readyz`
/// answers 503 with the problem while any task has one.
#[derive(Debug, Default)]
pub struct Health {
    problems: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

impl Health {
    /// `source`'s last storage call succeeded.
    pub fn ok(&self, source: &str) {
        if let Ok(mut p) = self.problems.lock() {
            p.remove(source);
        }
    }

    /// `source`'s last storage call failed with `problem`.
    pub fn failed(&self, source: &str, problem: String) {
        if let Ok(mut p) = self.problems.lock() {
            p.insert(source.to_string(), problem);
        }
    }

    /// The current problems by source.
    pub fn problems(&self) -> std::collections::BTreeMap<String, String> {
        self.problems.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// The current problems, one sentence, if any.
    pub fn problem(&self) -> Option<String> {
        let p = self.problems.lock().ok()?;
        (!p.is_empty()).then(|| {
            p.iter()
                .map(|(source, problem)| format!("{source}: {problem}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}
