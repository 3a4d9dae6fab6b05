//! The storage seam: everything the run engine persists goes through
//! [`RunStore`], so durable backends (SQLite, PostgreSQL) slot in behind the
//! same calls. [`MemoryStore`] is the in-process implementation.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use indexmap::IndexMap;

use super::record::{RunRecord, VerdictEvent, WindowRecord};

/// Window results kept per run; older ones are dropped first.
pub const MAX_WINDOWS_PER_RUN: usize = 1000;
/// Transition events kept in memory.
const MAX_EVENTS: usize = 10_000;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend cannot be used (poisoned lock, closed database…).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// Where runs, their window history and their transitions live.
pub trait RunStore: Send + Sync + std::fmt::Debug {
    /// Commits a run's new state together with the window that was recorded
    /// and the transition event it caused, atomically: either all of it is
    /// stored or none of it.
    fn commit(
        &self,
        run: &RunRecord,
        window: Option<&WindowRecord>,
        event: Option<&VerdictEvent>,
    ) -> Result<(), StoreError>;

    /// Every run, superseded ones included, newest first, at most `limit`.
    fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError>;

    /// The current (not superseded) run of a contract's subject.
    fn current(&self, contract: &str, subject: &str) -> Result<Option<RunRecord>, StoreError>;

    /// The current run of every subject of a contract.
    fn current_runs(&self, contract: &str) -> Result<Vec<RunRecord>, StoreError>;

    /// A run's window history, newest first, at most `limit`.
    fn windows(&self, run_id: &str, limit: usize) -> Result<Vec<WindowRecord>, StoreError>;

    /// Transition events, oldest first.
    fn events(&self) -> Result<Vec<VerdictEvent>, StoreError>;
}

#[derive(Debug, Default)]
struct Inner {
    /// Runs by id, in creation order.
    runs: IndexMap<String, RunRecord>,
    /// `(contract, subject)` → id of the current run.
    current: HashMap<(String, String), String>,
    windows: HashMap<String, VecDeque<WindowRecord>>,
    events: VecDeque<VerdictEvent>,
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
}

impl RunStore for MemoryStore {
    fn commit(
        &self,
        run: &RunRecord,
        window: Option<&WindowRecord>,
        event: Option<&VerdictEvent>,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        let key = (run.contract.clone(), run.subject.joined().to_string());
        if run.superseded {
            if inner.current.get(&key) == Some(&run.run_id) {
                inner.current.remove(&key);
            }
        } else {
            inner.current.insert(key, run.run_id.clone());
        }
        inner.runs.insert(run.run_id.clone(), run.clone());
        if let Some(w) = window {
            let list = inner.windows.entry(run.run_id.clone()).or_default();
            if list.len() >= MAX_WINDOWS_PER_RUN {
                list.pop_front();
            }
            list.push_back(w.clone());
        }
        if let Some(e) = event {
            if inner.events.len() >= MAX_EVENTS {
                inner.events.pop_front();
            }
            inner.events.push_back(e.clone());
        }
        Ok(())
    }

    fn runs(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let inner = self.lock()?;
        Ok(inner.runs.values().rev().take(limit).cloned().collect())
    }

    fn current(&self, contract: &str, subject: &str) -> Result<Option<RunRecord>, StoreError> {
        let inner = self.lock()?;
        let id = inner
            .current
            .get(&(contract.to_string(), subject.to_string()));
        Ok(id.and_then(|id| inner.runs.get(id)).cloned())
    }

    fn current_runs(&self, contract: &str) -> Result<Vec<RunRecord>, StoreError> {
        let inner = self.lock()?;
        let mut runs: Vec<RunRecord> = inner
            .current
            .iter()
            .filter(|((c, _), _)| c == contract)
            .filter_map(|(_, id)| inner.runs.get(id).cloned())
            .collect();
        runs.sort_by(|a, b| a.subject.cmp(&b.subject));
        Ok(runs)
    }

    fn windows(&self, run_id: &str, limit: usize) -> Result<Vec<WindowRecord>, StoreError> {
        let inner = self.lock()?;
        Ok(inner
            .windows
            .get(run_id)
            .map(|l| l.iter().rev().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    fn events(&self) -> Result<Vec<VerdictEvent>, StoreError> {
        Ok(self.lock()?.events.iter().cloned().collect())
    }
}
