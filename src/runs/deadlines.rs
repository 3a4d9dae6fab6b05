//! When each run in memory next needs the engine without new data: its
//! `max_duration`, or its idle timeout (`run_idle_timeout` after its last
//! sample). Kept in time order, so a watermark looks only at runs that are
//! due, never at every run.

use std::collections::{BTreeSet, HashMap};

use crate::config::ContractSpec;
use crate::model::{nanos, RunRecord, SeriesKey, UnixNanos};

/// The next deadline of every scheduled run.
#[derive(Debug, Default)]
pub(super) struct Deadlines {
    due: HashMap<SeriesKey, UnixNanos>,
    queue: BTreeSet<(UnixNanos, SeriesKey)>,
}

/// When the run last showed life: its newest window with data, its first
/// sample, or its creation.
pub(super) fn last_activity(run: &RunRecord) -> UnixNanos {
    run.started_at
        .max(run.first_sample_at.unwrap_or(0))
        .max(run.last_window_end.unwrap_or(0))
}

/// When the run goes idle.
pub(super) fn idle_at(run: &RunRecord, spec: &ContractSpec) -> UnixNanos {
    last_activity(run).saturating_add(nanos(spec.run_idle_timeout))
}

/// When an undecided run times out (`max_duration`).
pub(super) fn timeout_at(run: &RunRecord, spec: &ContractSpec) -> Option<UnixNanos> {
    spec.max_duration
        .filter(|_| !run.state.is_final())
        .map(|d| run.started_at.saturating_add(nanos(d)))
}

impl Deadlines {
    /// (Re)schedules `key` at the run's next deadline.
    pub(super) fn schedule(&mut self, key: &SeriesKey, run: &RunRecord, spec: &ContractSpec) {
        self.schedule_from(key, run, spec, 0);
    }

    /// [`Deadlines::schedule`], counting the run as active at `active` too.
    pub(super) fn schedule_from(
        &mut self,
        key: &SeriesKey,
        run: &RunRecord,
        spec: &ContractSpec,
        active: UnixNanos,
    ) {
        let mut at = idle_at(run, spec).max(active.saturating_add(nanos(spec.run_idle_timeout)));
        if let Some(t) = timeout_at(run, spec) {
            at = at.min(t);
        }
        if let Some(old) = self.due.insert(key.clone(), at) {
            if old == at {
                return;
            }
            self.queue.remove(&(old, key.clone()));
        }
        self.queue.insert((at, key.clone()));
    }

    /// The next run due at `now`, taken off the schedule.
    pub(super) fn pop_due(&mut self, now: UnixNanos) -> Option<SeriesKey> {
        let first = self.queue.first().filter(|(at, _)| *at <= now)?.clone();
        self.queue.remove(&first);
        self.due.remove(&first.1);
        Some(first.1)
    }
}
