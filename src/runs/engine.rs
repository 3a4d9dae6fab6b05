//! The run engine of one pipeline: the pure core between the aggregator's
//! shards and the exporters.
//!
//! Shards emit closed windows per series and, after every tick, a watermark
//! ("every window whose deadline is ≤ t has been emitted"). The engine buffers
//! closed windows until the slowest shard's watermark passes a window's
//! deadline, then judges that window for every run in order — so each run
//! sees its windows exactly once, in time order, empty ones included — and
//! commits each result and transition to the store before returning the
//! events to announce.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::aggregator::state::{Accum, ClosedWindow};
use crate::config::{ContractSpec, WindowSpec};
use crate::contracts::{evaluate_window, Figures};
use crate::model::series::BASELINE_SUBJECT;
use crate::model::{SeriesKey, Subject, UnixNanos, Window};

use super::machine::{self, Transition};
use super::record::{RunRecord, RunState, VerdictEvent, WindowRecord};
use super::store::{RunStore, StoreError};

/// What the shards tell the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineInput {
    /// A series got its first sample in its shard (ts = the sample's time).
    SeriesSeen {
        /// The series.
        series: SeriesKey,
        /// The sample's timestamp.
        ts: UnixNanos,
    },
    /// A window closed for one series.
    Closed(ClosedWindow),
    /// Shard `shard` has emitted every window whose deadline is ≤ `now`.
    Watermark {
        /// Shard index.
        shard: usize,
        /// The shard's close time.
        now: UnixNanos,
    },
}

/// The engine of one pipeline.
#[derive(Debug)]
pub struct Engine {
    contracts: Vec<ContractSpec>,
    size: u64,
    lateness: u64,
    store: Arc<dyn RunStore>,
    /// Current run of every series that has one (final runs included: their
    /// windows are still recorded for observation).
    runs: HashMap<SeriesKey, RunRecord>,
    /// Closed windows waiting for the watermark, by window start.
    buffered: BTreeMap<UnixNanos, HashMap<SeriesKey, Accum>>,
    watermarks: Vec<UnixNanos>,
    next_window: Window,
}

impl Engine {
    /// Builds the engine and resumes the current runs found in the store
    /// (runs of another contract version are left alone: a new version
    /// starts new runs).
    pub fn new(
        contracts: Vec<ContractSpec>,
        window: &WindowSpec,
        shards: usize,
        store: Arc<dyn RunStore>,
        now: UnixNanos,
    ) -> Result<Engine, StoreError> {
        let size = (window.size.as_nanos() as u64).max(1);
        let lateness = window.allowed_lateness.as_nanos() as u64;
        let mut runs = HashMap::new();
        for (i, c) in contracts.iter().enumerate() {
            for run in store.current_runs(&c.name)? {
                if run.contract_version == c.version {
                    let key = SeriesKey {
                        contract: i as u32,
                        subject: run.subject.clone(),
                    };
                    runs.insert(key, run);
                }
            }
        }
        Ok(Engine {
            contracts,
            size,
            lateness,
            store,
            runs,
            buffered: BTreeMap::new(),
            watermarks: vec![0; shards.max(1)],
            // The oldest window that can still be open at start.
            next_window: Window::containing(now.saturating_sub(lateness + size), size),
        })
    }

    /// The contracts, indexed like `SeriesKey::contract`.
    pub fn contracts(&self) -> &[ContractSpec] {
        &self.contracts
    }

    /// Handles one input; returns the transitions to announce, already
    /// committed to the store.
    pub fn handle(
        &mut self,
        input: EngineInput,
        now: UnixNanos,
    ) -> Result<Vec<VerdictEvent>, StoreError> {
        let mut events = Vec::new();
        match input {
            EngineInput::SeriesSeen { series, ts } => {
                if !series.subject.is_pseudo() && (series.contract as usize) < self.contracts.len()
                {
                    self.first_sample(&series, ts, now, &mut events)?;
                }
            }
            EngineInput::Closed(cw) => {
                let slot = self.buffered.entry(cw.window.start).or_default();
                match slot.get_mut(&cw.series) {
                    Some(acc) => acc.merge(&cw.accum),
                    None => {
                        slot.insert(cw.series, cw.accum);
                    }
                }
            }
            EngineInput::Watermark { shard, now: at } => {
                if let Some(w) = self.watermarks.get_mut(shard) {
                    *w = (*w).max(at);
                }
                let watermark = self.watermarks.iter().copied().min().unwrap_or(0);
                // Windows older than the next one can only come from a shard
                // that raced its own close; judge them first, in order.
                while let Some((&start, _)) = self.buffered.first_key_value() {
                    if start >= self.next_window.start {
                        break;
                    }
                    let w = Window::containing(start, self.size);
                    self.judge_window(w, now, &mut events)?;
                }
                while self.next_window.deadline(self.lateness) <= watermark {
                    let w = self.next_window;
                    self.next_window = w.next();
                    self.judge_window(w, now, &mut events)?;
                }
                self.timeouts(now, &mut events)?;
            }
        }
        Ok(events)
    }

    /// Creates the run of a new subject, and moves a PENDING run to VALIDATING.
    fn first_sample(
        &mut self,
        series: &SeriesKey,
        ts: UnixNanos,
        now: UnixNanos,
        events: &mut Vec<VerdictEvent>,
    ) -> Result<(), StoreError> {
        let spec = &self.contracts[series.contract as usize];
        let run = self.runs.entry(series.clone()).or_insert_with(|| {
            RunRecord::new(&spec.name, spec.version, series.subject.clone(), now)
        });
        if let Some(t) = machine::on_first_sample(run) {
            run.first_sample_at = Some(ts);
            let dry_run = spec.dry_run;
            let event = transition(run, &t, None, now, dry_run);
            self.store.commit(run, None, Some(&event))?;
            events.push(event);
        }
        Ok(())
    }

    /// Judges window `w` for every run.
    fn judge_window(
        &mut self,
        w: Window,
        now: UnixNanos,
        events: &mut Vec<VerdictEvent>,
    ) -> Result<(), StoreError> {
        let data = self.buffered.remove(&w.start).unwrap_or_default();
        // Subjects with data but no run (e.g. reset while their series
        // stayed open in a shard) start one now.
        let mut seen: Vec<&SeriesKey> = data
            .keys()
            .filter(|k| !k.subject.is_pseudo() && (k.contract as usize) < self.contracts.len())
            .filter(|k| {
                self.runs
                    .get(k)
                    .is_none_or(|r| r.state == RunState::Pending)
            })
            .collect();
        seen.sort();
        for key in seen {
            self.first_sample(key, w.start, now, events)?;
        }
        let baselines: Vec<Option<Figures>> = (0..self.contracts.len())
            .map(|i| {
                let key = SeriesKey {
                    contract: i as u32,
                    subject: Subject::named(BASELINE_SUBJECT),
                };
                data.get(&key).map(Figures::of)
            })
            .collect();
        let mut keys: Vec<SeriesKey> = self.runs.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let Some(run) = self.runs.get_mut(&key) else {
                continue;
            };
            let spec = &self.contracts[key.contract as usize];
            let acc = data.get(&key);
            let before_first = run
                .first_sample_at
                .is_none_or(|t| w.end <= Window::containing(t, self.size).start);
            if run.state == RunState::Pending
                || (acc.is_none() && (before_first || run.state.is_final()))
            {
                // No windows before a run's first sample, and a final run
                // records only windows that had data.
                continue;
            }
            let empty = Accum::default();
            let acc = acc.unwrap_or(&empty);
            let figures = Figures::of(acc);
            let baseline = baselines.get(key.contract as usize).copied().flatten();
            let outcome = evaluate_window(spec, &figures, baseline.as_ref());
            let record = WindowRecord {
                window: w,
                figures,
                result: outcome.verdict,
                failures: outcome.failures.clone(),
            };
            let mut event = None;
            if !run.state.is_final() {
                run.cumulative.merge(acc);
                if acc.samples > 0 {
                    run.latency_bound = run.latency_bound.worst(figures.bound());
                }
                run.windows += 1;
                run.last_window_end = Some(w.end);
                if let Some(t) = machine::on_window(run, spec, &outcome) {
                    event = Some(transition(run, &t, Some(record.clone()), now, spec.dry_run));
                }
            }
            self.store.commit(run, Some(&record), event.as_ref())?;
            events.extend(event);
        }
        Ok(())
    }

    /// Decides runs that reached `max_duration`.
    fn timeouts(
        &mut self,
        now: UnixNanos,
        events: &mut Vec<VerdictEvent>,
    ) -> Result<(), StoreError> {
        let mut keys: Vec<SeriesKey> = self.runs.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let Some(run) = self.runs.get_mut(&key) else {
                continue;
            };
            let spec = &self.contracts[key.contract as usize];
            if let Some(t) = machine::on_timeout(run, spec, now) {
                // `observed` of a timeout is the last closed window.
                let last = self.store.windows(&run.run_id, 1)?.into_iter().next();
                let event = transition(run, &t, last, now, spec.dry_run);
                self.store.commit(run, None, Some(&event))?;
                events.push(event);
            }
        }
        Ok(())
    }
}

/// Applies a transition and builds its event.
fn transition(
    run: &mut RunRecord,
    t: &Transition,
    window: Option<WindowRecord>,
    now: UnixNanos,
    dry_run: bool,
) -> VerdictEvent {
    let previous_state = run.state;
    machine::apply(run, t, now);
    VerdictEvent {
        event_id: ulid::Ulid::new().to_string(),
        emitted_at: now,
        run: run.clone(),
        previous_state,
        window,
        failures: t.failures.clone(),
        dry_run,
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
