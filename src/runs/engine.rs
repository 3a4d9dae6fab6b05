//! The run engine of one pipeline: the pure core between the aggregator's
//! shards and the exporters.
//!
//! Shards emit closed windows per series and, after every tick, a watermark
//! ("every window whose deadline is ≤ t has been emitted"). The engine buffers
//! closed windows until the slowest shard's watermark passes a window's
//! deadline, then judges that window for every run in order — so each run
//! sees its windows exactly once, in time order, empty ones included.
//!
//! The engine does no I/O. Every call returns the [`Commit`]s it decided —
//! run states, window results, transitions with their outbox targets — and
//! its driver (`runs::task`) stores each batch in one transaction before
//! anything is announced. The engine also keeps the image of the pipeline's
//! open windows that checkpoints persist: the shards' latest snapshots plus
//! the closed windows not judged yet (see [`Engine::checkpoint`]).

use std::collections::{BTreeMap, HashMap};

use super::deadlines::{self, Deadlines};
use crate::config::{ContractSpec, WindowSpec};
use crate::config::{Decision, OnIdle, Source};
use crate::contracts::evaluate_window;
use crate::contracts::evidence::{self, Reference};
use crate::model::{Accum, EngineInput, Figures, OpenWindows, RejectionTally};
use crate::model::{SeriesKey, Subject, UnixNanos, Window};
use crate::storage::checkpoint;
use crate::storage::{Commit, RolloutCommit};

use super::machine::{self, Transition};
use super::rollout::Stepper;
use crate::model::{Rollout, RunRecord, RunState, VerdictEvent, WindowRecord};

/// An exporter that delivers verdict events, and which ones it wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscriber {
    /// Full exporter id (`webhook/promote`, `log`).
    pub exporter: String,
    /// States whose transitions it delivers.
    pub on: Vec<RunState>,
    /// It triggers something (a webhook): `dry_run` events are not for it.
    pub triggers: bool,
}

impl Subscriber {
    fn wants(&self, event: &VerdictEvent) -> bool {
        self.on.contains(&event.run.state) && !(self.triggers && event.dry_run)
    }
}

/// A manual decision (design §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManualAction {
    /// PENDING/VALIDATING → PROMOTED.
    Promote,
    /// PENDING/VALIDATING → ROLLED_BACK.
    Rollback,
    /// Supersede the current run and start a new PENDING one.
    Reset,
}

/// Why a manual decision was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ManualError {
    /// No such contract in this pipeline, or no run for the subject.
    #[error("{0}")]
    NotFound(String),
    /// This instance does not lead the cluster: another one decides.
    #[error("{0}")]
    NotLeader(String),
    /// The run is final already.
    #[error("run {run_id} is {} already; reset it to start a new run", state.as_str())]
    Final {
        /// The run.
        run_id: String,
        /// Its final state.
        state: RunState,
    },
}

/// What a pipeline's engine resumes from.
#[derive(Debug, Default)]
pub struct EngineSeed {
    /// Current runs found in storage, of any contract version: the current
    /// version's resume, an earlier version's only mark their subject as
    /// replaced (its new run counts the windows the old one did not judge).
    pub runs: Vec<RunRecord>,
    /// The last window result of each run, by run id.
    pub last_windows: HashMap<String, WindowRecord>,
    /// Checkpointed windows whose deadline has passed: judged at the first
    /// watermark, in order.
    pub closed: OpenWindows,
    /// Checkpointed windows still open, as restored into each shard.
    pub open: Vec<OpenWindows>,
    /// The flag rollouts of the current runs.
    pub rollouts: Vec<Rollout>,
}

/// The engine of one pipeline.
#[derive(Debug)]
pub struct Engine {
    contracts: Vec<ContractSpec>,
    subscribers: Vec<Subscriber>,
    size: u64,
    lateness: u64,
    /// Current run of every series that has one (final runs included: their
    /// windows are still recorded for observation).
    runs: HashMap<SeriesKey, RunRecord>,
    /// Last window result of each run (`observed` of a timeout or a manual
    /// decision).
    last_windows: HashMap<String, WindowRecord>,
    /// Closed windows waiting for the watermark, by window start.
    buffered: BTreeMap<UnixNanos, HashMap<SeriesKey, Accum>>,
    watermarks: Vec<UnixNanos>,
    next_window: Window,
    /// Each shard's open windows as of its last snapshot, minus the windows
    /// it closed since.
    images: Vec<OpenWindows>,
    /// Shards whose image changed since the last checkpoint.
    dirty: Vec<bool>,
    /// Each shard's encoded stream table, sent as it stopped: written
    /// with the final checkpoint only.
    streams: Vec<Option<String>>,
    /// Recent windows of each baseline series (runs fix their reference p95
    /// from them), with the end of the newest.
    references: HashMap<SeriesKey, (Reference, UnixNanos)>,
    /// Series whose stored run was replaced (an earlier contract version, or
    /// counts that could not be read): their new run counts only windows
    /// that start at or after the given time.
    counts_from: HashMap<SeriesKey, UnixNanos>,
    /// When each run next needs attention without data.
    deadlines: Deadlines,
    ids: EventIds,
    /// Undecided runs of an earlier contract version, superseded at start
    /// and committed with the first input.
    replaced: Vec<RunRecord>,
    /// Items rejected at the edge for the series of runs held in memory
    /// (never more series than [`MAX_TALLIED`], a bounded tally each): a
    /// run without samples says why in its reason.
    rejections: HashMap<SeriesKey, Tallied>,
    /// The pipeline's `unleash` exporters.
    steppers: Vec<Stepper>,
    /// The flag rollouts of runs held in memory, by run id.
    rollouts: HashMap<String, Vec<Rollout>>,
    /// Rollout changes decided for the run being committed next.
    staged: Vec<RolloutCommit>,
}

/// Most series whose rejections the engine tallies. Runs are bounded by
/// `max_series` already (only subjects holding a place get one); this
/// bounds the tallies even so.
pub const MAX_TALLIED: usize = 100_000;

/// The reasons of a run that has no samples because what was sent for it
/// was rejected (see [`explain`]).
const NO_SAMPLES: [&str; 2] = ["no latency samples: ", "no samples: "];

/// Items rejected for one run's series since this engine started.
#[derive(Debug, Default)]
struct Tallied {
    /// Everything, for the run's reason.
    total: RejectionTally,
    /// Since the run's last judged window, for the next one's notes.
    window: RejectionTally,
    /// Counted since the run's reason was last refreshed.
    dirty: bool,
    /// When the last rejection arrived: a run is not idle while what is
    /// sent for it keeps being rejected.
    last: UnixNanos,
}

/// `no latency samples: 412 points of validation.score rejected, unit "1"
/// is not s, ms or us` (`no samples: …` for a contract on spans).
pub fn no_samples_reason(spec: &ContractSpec, tally: &RejectionTally) -> String {
    let prefix = match spec.source {
        Source::Metrics => NO_SAMPLES[0],
        Source::Spans => NO_SAMPLES[1],
    };
    format!("{prefix}{}", tally.describe())
}

/// Sets the reason of an undecided run from its rejections while it has no
/// samples, and puts the usual reason back once it has some. Returns
/// whether the reason changed.
fn explain(run: &mut RunRecord, spec: &ContractSpec, tally: Option<&RejectionTally>) -> bool {
    if run.state.is_final() || run.superseded {
        return false;
    }
    let reason = match tally.filter(|t| run.cumulative.samples == 0 && !t.is_empty()) {
        Some(t) => no_samples_reason(spec, t),
        // Samples at last (a reason kept from before a restart, with no
        // tally, stays until then).
        None if run.cumulative.samples > 0
            && NO_SAMPLES.iter().any(|p| run.reason.starts_with(p)) =>
        {
            match run.state {
                RunState::Pending => "waiting for the first sample".to_string(),
                _ => "first sample received".to_string(),
            }
        }
        None => return false,
    };
    if run.reason == reason {
        return false;
    }
    run.reason = reason;
    true
}

/// Monotonic ULIDs for event ids, so the outbox (ordered by id) delivers a
/// pipeline's events in the order they happened even within a millisecond.
struct EventIds(ulid::Generator);

impl std::fmt::Debug for EventIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventIds")
    }
}

impl EventIds {
    fn next(&mut self) -> String {
        // The generator only fails when a millisecond's random space is
        // exhausted; a plain ULID is still unique.
        self.0
            .generate()
            .unwrap_or_else(|_| ulid::Ulid::new())
            .to_string()
    }
}

/// The start of the first window a run of an earlier contract version has
/// not judged: the end of its last judged window, or its own `counts_from`
/// (a reset) when later. Its subject's new run counts from there, so the
/// samples of the windows open at a version bump (a reload or a restart)
/// count for the new run instead of for none; `None` when the old run
/// judged nothing, so every window left counts.
fn unjudged_from(run: &RunRecord) -> Option<UnixNanos> {
    run.last_window_end.max(run.counts_from)
}

/// Names the attributes of a run whose stored subject came back as bare
/// values (see the store), after the contract's `subject_by`, so its key is
/// the one the subject's samples arrive under.
fn name_attributes(run: &mut RunRecord, spec: &ContractSpec) {
    let attrs = run.subject.attributes();
    if attrs.is_empty()
        || attrs.len() != spec.subject_by.len()
        || attrs.iter().any(|(name, _)| !name.is_empty())
    {
        return;
    }
    run.subject = Subject::new(
        spec.subject_by
            .iter()
            .zip(attrs)
            .map(|(name, (_, value))| (name.clone(), value.clone()))
            .collect(),
    );
}

impl Engine {
    /// Builds the engine and resumes the runs of `seed` (runs of another
    /// contract version are left alone: a new version starts new runs).
    pub fn new(
        contracts: Vec<ContractSpec>,
        window: &WindowSpec,
        shards: usize,
        subscribers: Vec<Subscriber>,
        seed: EngineSeed,
        now: UnixNanos,
    ) -> Engine {
        let timing = window.timing();
        let (size, lateness) = (timing.size, timing.lateness);
        let shards = shards.max(1);
        let mut runs = HashMap::new();
        let mut counts_from = HashMap::new();
        let mut replaced = Vec::new();
        for mut run in seed.runs {
            let Some(i) = contracts.iter().position(|c| c.name == run.contract) else {
                continue;
            };
            name_attributes(&mut run, &contracts[i]);
            let key = SeriesKey {
                contract: i as u32,
                subject: run.subject.clone(),
            };
            if contracts[i].version == run.contract_version && run.counts_unreadable {
                if !run.state.is_final() {
                    // Its counts are lost: it cannot be judged on them, so
                    // it leaves and the subject's next data starts afresh.
                    let mut run = run;
                    machine::abandon_unreadable(&mut run, now);
                    replaced.push(run);
                    counts_from.insert(key, now);
                } else {
                    runs.insert(key, run);
                }
            } else if contracts[i].version == run.contract_version {
                runs.insert(key, run);
            } else if !run.superseded {
                if let Some(from) = unjudged_from(&run) {
                    counts_from.insert(key, from);
                }
                if !run.state.is_final() {
                    // Its contract is gone: it can never be decided, so it
                    // leaves now rather than showing VALIDATING forever.
                    let mut run = run;
                    machine::replace(&mut run, &contracts[i], now);
                    replaced.push(run);
                }
            }
        }
        let mut buffered: BTreeMap<UnixNanos, HashMap<SeriesKey, Accum>> = BTreeMap::new();
        for (key, windows) in seed.closed {
            for (start, acc) in windows {
                buffered.entry(start).or_default().insert(key.clone(), acc);
            }
        }
        let mut deadlines = Deadlines::default();
        for (key, run) in &runs {
            deadlines.schedule(key, run, &contracts[key.contract as usize]);
        }
        let mut images = seed.open;
        images.resize_with(shards, HashMap::new);
        let mut rollouts: HashMap<String, Vec<Rollout>> = HashMap::new();
        for r in seed.rollouts {
            rollouts.entry(r.run_id.clone()).or_default().push(r);
        }
        Engine {
            contracts,
            subscribers,
            size,
            lateness,
            runs,
            last_windows: seed.last_windows,
            buffered,
            watermarks: vec![0; shards],
            // The oldest window that can still be open at start.
            next_window: Window::containing(now.saturating_sub(lateness + size), size),
            images,
            dirty: vec![true; shards],
            streams: vec![None; shards],
            references: HashMap::new(),
            counts_from,
            deadlines,
            ids: EventIds(ulid::Generator::new()),
            replaced,
            rejections: HashMap::new(),
            steppers: Vec::new(),
            rollouts,
            staged: Vec::new(),
        }
    }

    /// The engine, stepping the flags of the pipeline's `unleash` exporters.
    pub fn with_steppers(mut self, mut steppers: Vec<Stepper>) -> Engine {
        for s in &mut steppers {
            s.timing = (self.size, self.lateness);
        }
        for r in self.rollouts.values_mut().flatten() {
            if let Some(s) = steppers.iter().find(|s| s.exporter == r.exporter) {
                s.refresh(r);
            }
        }
        self.steppers = steppers;
        self
    }

    /// Unleash applied the change `change_id` of `exporter` at `at`: the
    /// rollout's hold starts. Returns the rollout to store, or `None` when
    /// the change is not the latest of a rollout held here.
    pub fn acked(&mut self, exporter: &str, change_id: &str, at: UnixNanos) -> Option<Rollout> {
        let stepper = self.steppers.iter().find(|s| s.exporter == exporter)?;
        let r = self
            .rollouts
            .values_mut()
            .flatten()
            .find(|r| r.exporter == exporter && r.change_id == change_id)?;
        stepper.acked(r, at);
        Some(r.clone())
    }

    /// Handles one input; returns what to commit (and then announce).
    pub fn handle(&mut self, input: EngineInput, now: UnixNanos) -> Vec<Commit> {
        let mut out: Vec<Commit> = std::mem::take(&mut self.replaced)
            .into_iter()
            .map(|run| self.commit(run, None, None, now))
            .collect();
        match input {
            EngineInput::SeriesSeen { series, ts } => {
                if !series.subject.is_pseudo() && (series.contract as usize) < self.contracts.len()
                {
                    self.first_sample(&series, ts, now, &mut out);
                }
            }
            EngineInput::Rejected { series, tally } => {
                if !series.subject.is_pseudo() && (series.contract as usize) < self.contracts.len()
                {
                    self.rejected(series, &tally, now, &mut out);
                }
            }
            EngineInput::Closed(cw) => {
                // The closed window supersedes its partial copy in the
                // shard's last snapshot.
                let shard = cw.series.shard(self.images.len());
                if let Some(image) = self.images.get_mut(shard) {
                    if let Some(windows) = image.get_mut(&cw.series) {
                        windows.remove(&cw.window.start);
                    }
                }
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
                // Windows older than the next one come from a checkpoint, or
                // from a shard that raced its own close; judge them first, in
                // order.
                while let Some((&start, _)) = self.buffered.first_key_value() {
                    if start >= self.next_window.start {
                        break;
                    }
                    let w = Window::containing(start, self.size);
                    self.judge_window(w, now, &mut out);
                }
                while self.next_window.deadline(self.lateness) <= watermark {
                    let w = self.next_window;
                    self.next_window = w.next();
                    self.judge_window(w, now, &mut out);
                }
                self.timeouts(now, &mut out);
            }
            EngineInput::Snapshot { shard, series } => {
                if let Some(image) = self.images.get_mut(shard) {
                    *image = series;
                    self.dirty[shard] = true;
                }
            }
            EngineInput::Streams { shard, table } => {
                if let Some(slot) = self.streams.get_mut(shard) {
                    *slot = Some(table);
                }
            }
        }
        out
    }

    /// A manual decision or a reset of `contract`'s run for `subject` (the
    /// joined subject). Returns what to commit and the run afterwards.
    pub fn manual(
        &mut self,
        action: ManualAction,
        contract: &str,
        subject: &str,
        reason: Option<&str>,
        now: UnixNanos,
    ) -> Result<(Vec<Commit>, RunRecord), ManualError> {
        let Some(index) = self.contracts.iter().position(|c| c.name == contract) else {
            return Err(ManualError::NotFound(format!(
                "unknown contract {contract:?}"
            )));
        };
        let Some((key, run)) = self
            .runs
            .iter_mut()
            .find(|(k, _)| k.contract as usize == index && k.subject.joined() == subject)
        else {
            return Err(ManualError::NotFound(format!(
                "contract {contract:?} has no run for {subject:?}"
            )));
        };
        let spec = &self.contracts[index];
        match action {
            ManualAction::Reset => {
                // The old run is kept as it was, marked superseded, and
                // nothing is announced.
                let mut old = run.clone();
                old.superseded = true;
                let mut fresh = RunRecord::new(&spec.name, spec.version, key.subject.clone(), now);
                // Windows open at the reset hold the data that decided the
                // old run: the new one starts afresh.
                fresh.counts_from = Some(now);
                *run = fresh.clone();
                self.last_windows.remove(&old.run_id);
                let key = key.clone();
                // The new run starts afresh, its reason too.
                self.rejections.remove(&key);
                self.deadlines.schedule(&key, &fresh, spec);
                let out = vec![
                    self.commit(old, None, None, now),
                    self.commit(fresh.clone(), None, None, now),
                ];
                Ok((out, fresh))
            }
            ManualAction::Promote | ManualAction::Rollback => {
                if run.state.is_final() {
                    return Err(ManualError::Final {
                        run_id: run.run_id.clone(),
                        state: run.state,
                    });
                }
                let to = if action == ManualAction::Promote {
                    RunState::Promoted
                } else {
                    RunState::RolledBack
                };
                let why = reason.map(str::trim).filter(|r| !r.is_empty());
                let t = Transition {
                    to,
                    reason: format!("manual: {}", why.unwrap_or("decided through the API")),
                    failures: Vec::new(),
                };
                let last = self.last_windows.get(&run.run_id).cloned();
                let event = transition(&mut self.ids, run, &t, last, now, spec.dry_run);
                let after = run.clone();
                Ok((
                    vec![self.commit(after.clone(), None, Some(event), now)],
                    after,
                ))
            }
        }
    }

    /// The checkpoint slots to write: every shard whose image changed since
    /// the last call (all of them with `full`) and the closed windows not
    /// judged yet, as stored text.
    pub fn checkpoint(&mut self, full: bool) -> Vec<(i64, String)> {
        let mut slots = Vec::new();
        for shard in 0..self.images.len() {
            if full || self.dirty[shard] {
                self.dirty[shard] = false;
                let series = self.images[shard]
                    .iter()
                    .map(|(k, w)| (k, w.iter().map(|(s, a)| (*s, a)).collect()));
                slots.push((shard as i64, self.encode(series)));
            }
        }
        let mut pending: HashMap<&SeriesKey, Vec<(UnixNanos, &Accum)>> = HashMap::new();
        for (start, series) in &self.buffered {
            for (key, acc) in series {
                pending.entry(key).or_default().push((*start, acc));
            }
        }
        slots.push((checkpoint::PENDING_SLOT, self.encode(pending)));
        if full {
            // The stream tables the shards sent as they stopped (none at
            // the first checkpoint of a start: a full checkpoint replaces
            // every slot, so tables are read back once, never after a
            // later crash, when they would be stale).
            for (shard, table) in self.streams.iter_mut().enumerate() {
                if let Some(table) = table.take() {
                    slots.push((checkpoint::streams_slot(shard), table));
                }
            }
        }
        slots
    }

    fn encode<'a>(
        &'a self,
        series: impl IntoIterator<Item = (&'a SeriesKey, Vec<(UnixNanos, &'a Accum)>)>,
    ) -> String {
        checkpoint::encode(
            Some(self.size),
            series.into_iter().filter_map(|(key, windows)| {
                let spec = self.contracts.get(key.contract as usize)?;
                Some(checkpoint::SeriesWindows {
                    contract: &spec.name,
                    subject: &key.subject,
                    windows,
                })
            }),
        )
    }

    fn commit(
        &mut self,
        run: RunRecord,
        window: Option<WindowRecord>,
        event: Option<VerdictEvent>,
        now: UnixNanos,
    ) -> Commit {
        let mut rollouts = std::mem::take(&mut self.staged);
        let dry_run = self
            .contracts
            .iter()
            .find(|c| c.name == run.contract)
            .is_none_or(|c| c.dry_run);
        if let Some(e) = event.as_ref().filter(|e| !dry_run && !e.run.superseded) {
            for stepper in &self.steppers {
                let list = self.rollouts.entry(run.run_id.clone()).or_default();
                let current = list.iter().position(|r| r.exporter == stepper.exporter);
                let ids = &mut self.ids;
                let decided =
                    stepper.on_transition(current.map(|i| &list[i]), e, || ids.next(), now);
                if let Some(rc) = decided {
                    match current {
                        Some(i) => list[i] = rc.rollout.clone(),
                        None => list.push(rc.rollout.clone()),
                    }
                    rollouts.retain(|c| c.rollout.exporter != stepper.exporter);
                    rollouts.push(rc);
                }
            }
        }
        let outbox = event
            .as_ref()
            .map(|e| {
                self.subscribers
                    .iter()
                    .filter(|s| s.wants(e))
                    .map(|s| s.exporter.clone())
                    .collect()
            })
            .unwrap_or_default();
        Commit {
            run,
            window,
            event,
            outbox,
            rollouts,
        }
    }

    /// Tallies items rejected for `series` at the edge. A subject with no
    /// run gets one, PENDING, whose reason says why it has no samples (so
    /// a release whose every point is rejected shows it in the API rather
    /// than nothing); an undecided run with no samples has its reason
    /// refreshed when a window is judged. A final run is left alone.
    fn rejected(
        &mut self,
        series: SeriesKey,
        tally: &RejectionTally,
        now: UnixNanos,
        out: &mut Vec<Commit>,
    ) {
        let spec = &self.contracts[series.contract as usize];
        let created = !self.runs.contains_key(&series);
        let run = self.runs.entry(series.clone()).or_insert_with(|| {
            let mut run = RunRecord::new(&spec.name, spec.version, series.subject.clone(), now);
            run.counts_from = self.counts_from.get(&series).copied();
            run
        });
        if run.state.is_final() {
            return;
        }
        let room = self.rejections.len() < MAX_TALLIED || self.rejections.contains_key(&series);
        if room {
            let t = self.rejections.entry(series.clone()).or_default();
            t.total.merge(tally);
            t.window.merge(tally);
            t.last = now;
            t.dirty = !created;
        }
        if created {
            let total = self.rejections.get(&series).map_or(tally, |t| &t.total);
            explain(run, spec, Some(total));
            let run = run.clone();
            self.deadlines.schedule_from(&series, &run, spec, now);
            out.push(self.commit(run, None, None, now));
        } else {
            self.deadlines.schedule_from(&series, run, spec, now);
        }
    }

    /// Creates the run of a new subject, and moves a PENDING run to VALIDATING.
    fn first_sample(
        &mut self,
        series: &SeriesKey,
        ts: UnixNanos,
        now: UnixNanos,
        out: &mut Vec<Commit>,
    ) {
        let spec = &self.contracts[series.contract as usize];
        let from = self.counts_from.get(series).copied();
        let run = self.runs.entry(series.clone()).or_insert_with(|| {
            let mut run = RunRecord::new(&spec.name, spec.version, series.subject.clone(), now);
            // Windows the replaced run judged do not count again; those it
            // never judged (open at a version bump) count for this one.
            run.counts_from = from;
            run
        });
        if run
            .counts_from
            .is_some_and(|from| Window::containing(ts, self.size).start < from)
        {
            let run = run.clone();
            self.deadlines.schedule(series, &run, spec);
            return;
        }
        if let Some(t) = machine::on_first_sample(run) {
            run.first_sample_at = Some(ts);
            let event = transition(&mut self.ids, run, &t, None, now, spec.dry_run);
            let run = run.clone();
            self.deadlines.schedule(series, &run, spec);
            out.push(self.commit(run, None, Some(event), now));
        }
    }

    /// Judges window `w` for every run.
    fn judge_window(&mut self, w: Window, now: UnixNanos, out: &mut Vec<Commit>) {
        let data = self.buffered.remove(&w.start).unwrap_or_default();
        // Subjects with data but no run (e.g. reset while their series
        // stayed open in a shard) start one now.
        let mut seen: Vec<&SeriesKey> = data
            .keys()
            .filter(|k| !k.subject.is_pseudo() && (k.contract as usize) < self.contracts.len())
            .filter(|k| {
                self.runs.get(k).is_none_or(|r| {
                    r.state == RunState::Pending && r.counts_from.is_none_or(|from| w.start >= from)
                })
            })
            .collect();
        seen.sort();
        for key in seen {
            self.first_sample(key, w.start, now, out);
        }
        // Each baseline series' figures, once for all the runs compared
        // with it.
        let baselines: HashMap<&SeriesKey, Figures> = data
            .iter()
            .filter(|(k, _)| k.subject.is_baseline())
            .map(|(k, acc)| (k, Figures::of(acc)))
            .collect();
        let no_reference = Reference::default();
        // Only runs with data in the window: an empty window changes no
        // evidence and no streak, and writing a row for every run every
        // window would grow with every run ever made.
        let mut keys: Vec<&SeriesKey> = data
            .keys()
            .filter(|k| !k.subject.is_pseudo() && self.runs.contains_key(*k))
            .collect();
        keys.sort();
        for key in keys {
            let Some(run) = self.runs.get_mut(key) else {
                continue;
            };
            let spec = &self.contracts[key.contract as usize];
            let Some(acc) = data.get(key) else {
                continue;
            };
            if run.state == RunState::Pending
                || run.counts_from.is_some_and(|from| w.start < from)
                // Judged already: a checkpoint older than the last commit
                // restored it (kill -9). Counting it again would double it.
                || run.last_window_end.is_some_and(|end| w.end <= end)
            {
                continue;
            }
            let figures = Figures::of(acc);
            let base_key = spec.baseline_of(&key.subject).map(|subject| SeriesKey {
                contract: key.contract,
                subject,
            });
            let baseline = base_key.as_ref().and_then(|k| baselines.get(k));
            let outcome = evaluate_window(spec, acc, &figures, baseline);
            let mut record = WindowRecord {
                window: w,
                figures,
                result: outcome.verdict,
                failures: outcome.failures.clone(),
                notes: outcome.notes.clone(),
                checks: Vec::new(),
            };
            let tallied = self.rejections.get_mut(key);
            if let Some(t) = tallied.as_ref().filter(|t| !t.window.is_empty()) {
                // What was rejected since the run's previous window.
                record.notes.push(t.window.describe());
            }
            let mut event = None;
            run.last_window_end = Some(w.end);
            if !run.state.is_final() {
                run.cumulative.merge(acc);
                if acc.samples > 0 {
                    run.latency_bound = run.latency_bound.worst(figures.bound());
                }
                run.windows += 1;
                // The evidence is kept in both modes; it decides only in
                // sequential mode.
                let base = base_key.as_ref().and_then(|k| data.get(k));
                let reference = base_key
                    .as_ref()
                    .and_then(|k| self.references.get(k))
                    .map_or(&no_reference, |(r, _)| r);
                evidence::tally(spec, &mut run.evidence.baseline, acc, base, reference);
                let verdict = evidence::look(spec, &mut run.evidence, &run.cumulative);
                record.checks = run.evidence.checks.clone();
                let decided = match spec.decision {
                    Decision::Windows => machine::on_window(run, spec, &outcome),
                    Decision::Sequential => machine::on_evidence(run, spec, &verdict),
                };
                let flags = Flags {
                    steppers: &self.steppers,
                    rollouts: &mut self.rollouts,
                    ids: &mut self.ids,
                    staged: &mut self.staged,
                };
                let waiting = flags.step(run, spec, &record, now);
                let decided = match (decided, waiting) {
                    (Some(t), Some(waiting)) if t.to == RunState::Promoted => {
                        run.reason = format!("{}; promotion waits: {waiting}", t.reason);
                        None
                    }
                    (decided, _) => decided,
                };
                if let Some(t) = decided {
                    event = Some(transition(
                        &mut self.ids,
                        run,
                        &t,
                        Some(record.clone()),
                        now,
                        spec.dry_run,
                    ));
                }
            }
            let total = tallied.map(|t| {
                t.window = RejectionTally::default();
                t.dirty = false;
                &t.total
            });
            explain(run, spec, total);
            self.last_windows.insert(run.run_id.clone(), record.clone());
            let run = run.clone();
            self.deadlines.schedule(key, &run, spec);
            out.push(self.commit(run, Some(record), event, now));
        }
        // Runs whose items were rejected since the last window and that had
        // no data of their own in it: their reason says how many now (once
        // a window, not at every rejection).
        let mut refreshed: Vec<&SeriesKey> = Vec::new();
        for (key, t) in self.rejections.iter_mut().filter(|(_, t)| t.dirty) {
            t.dirty = false;
            if let Some(run) = self.runs.get_mut(key) {
                if explain(run, &self.contracts[key.contract as usize], Some(&t.total)) {
                    refreshed.push(key);
                }
            }
        }
        refreshed.sort();
        let refreshed: Vec<RunRecord> = refreshed
            .into_iter()
            .filter_map(|k| self.runs.get(k).cloned())
            .collect();
        for run in refreshed {
            out.push(self.commit(run, None, None, now));
        }
        // The baseline's window joins the references only now: a run's
        // reference comes from windows before the one it is judged on.
        for (key, acc) in data.iter().filter(|(k, _)| k.subject.is_baseline()) {
            let (reference, last) = self.references.entry(key.clone()).or_default();
            reference.push(acc);
            *last = w.end;
        }
        // A baseline gone quiet for its contract's idle timeout is gone:
        // its reference leaves memory with it.
        let contracts = &self.contracts;
        self.references.retain(|key, (_, last)| {
            contracts.get(key.contract as usize).is_some_and(|spec| {
                last.saturating_add(crate::model::nanos(spec.run_idle_timeout)) > w.end
            })
        });
    }

    /// Handles the runs whose deadline has come: `max_duration` decides an
    /// undecided run (`on_timeout`); a run idle for `run_idle_timeout` is
    /// retired without a verdict (or decided, with `on_idle: timeout`) and
    /// leaves memory, as does a final run once idle. Only due runs are
    /// looked at.
    fn timeouts(&mut self, now: UnixNanos, out: &mut Vec<Commit>) {
        while let Some(key) = self.deadlines.pop_due(now) {
            let Some(run) = self.runs.get_mut(&key) else {
                continue;
            };
            let spec = &self.contracts[key.contract as usize];
            // Items still being rejected for it keep a run from idling.
            let rejected_at = self.rejections.get(&key).map_or(0, |t| t.last);
            let idle = deadlines::idle_at(run, spec)
                .max(rejected_at.saturating_add(crate::model::nanos(spec.run_idle_timeout)))
                <= now;
            let decided = machine::on_timeout(run, spec, now).or_else(|| {
                (idle && spec.on_idle == OnIdle::Timeout)
                    .then(|| machine::on_idle(run, spec))
                    .flatten()
            });
            if let Some(t) = decided {
                // `observed` of a timeout is the last closed window.
                let last = self.last_windows.get(&run.run_id).cloned();
                let event = transition(&mut self.ids, run, &t, last, now, spec.dry_run);
                let run = run.clone();
                out.push(self.commit(run, None, Some(event), now));
            } else if idle && !run.state.is_final() {
                machine::retire(run, spec, now);
                let run = run.clone();
                out.push(self.commit(run, None, None, now));
            }
            let Some(run) = self.runs.get(&key) else {
                continue;
            };
            if idle {
                // Out of memory: a final run is found again in storage if
                // its subject comes back (see `adopt`); a retired one is
                // replaced by a new run. Its rollouts are in storage.
                self.last_windows.remove(&run.run_id);
                self.rollouts.remove(&run.run_id);
                self.runs.remove(&key);
                self.rejections.remove(&key);
            } else {
                let spec = &self.contracts[key.contract as usize];
                self.deadlines.schedule_from(&key, run, spec, rejected_at);
            }
        }
    }

    /// Whether the engine holds the run of `series` (the driver looks a
    /// run up in storage before data for an unknown series is handled).
    pub fn knows(&self, series: &SeriesKey) -> bool {
        series.subject.is_pseudo() || self.runs.contains_key(series)
    }

    /// The contract `name`'s name and index, if it is one of this engine's.
    pub fn contract_index(&self, name: &str) -> Option<u32> {
        self.contracts
            .iter()
            .position(|c| c.name == name)
            .map(|i| i as u32)
    }

    /// The contract of index `i`'s name.
    pub fn contract_name(&self, i: u32) -> Option<&str> {
        self.contracts.get(i as usize).map(|c| c.name.as_str())
    }

    /// Whether the engine holds a run of contract index `contract` for the
    /// joined subject `subject`.
    pub fn knows_joined(&self, contract: u32, subject: &str) -> bool {
        self.runs
            .keys()
            .any(|k| k.contract == contract && k.subject.joined() == subject)
    }

    /// Takes back a run found in storage for `series` (one that left
    /// memory when it went idle): a final run stays final, and its new
    /// data is observed, never judged into a new run.
    pub fn adopt(&mut self, series: &SeriesKey, run: RunRecord, now: UnixNanos) {
        let Some(spec) = self.contracts.get(series.contract as usize) else {
            return;
        };
        if run.superseded || self.runs.contains_key(series) {
            return;
        }
        if run.contract != spec.name || run.contract_version != spec.version {
            if let Some(from) = unjudged_from(&run) {
                self.counts_from.insert(series.clone(), from);
            }
            return;
        }
        // Its subject is back: idle counts from now.
        self.deadlines.schedule_from(series, &run, spec, now);
        self.runs.insert(series.clone(), run);
    }

    /// The next window this engine judges.
    pub fn next_window(&self) -> Window {
        self.next_window
    }

    /// Goes on judging after the window that starts at `judged` (a leader
    /// resuming where the cluster's judging stands): that window and those
    /// before it are never judged again.
    pub fn resume_after(&mut self, judged: UnixNanos) {
        self.next_window = Window::containing(judged, self.size).next();
        self.buffered.retain(|start, _| *start > judged);
    }

    /// The flag changes of rollouts held here that are not acknowledged
    /// yet, as (exporter, run id, change id).
    pub fn unacked(&self) -> Vec<(String, String, String)> {
        self.rollouts
            .values()
            .flatten()
            .filter(|r| r.acked_at.is_none() && !r.change_id.is_empty())
            .map(|r| (r.exporter.clone(), r.run_id.clone(), r.change_id.clone()))
            .collect()
    }

    /// Runs held in memory.
    #[cfg(test)]
    pub fn runs_held(&self) -> usize {
        self.runs.len()
    }

    /// Series whose rejections are tallied.
    #[cfg(test)]
    pub fn tallied(&self) -> usize {
        self.rejections.len()
    }
}

/// The engine's flag rollouts, borrowed apart from its runs.
struct Flags<'a> {
    steppers: &'a [Stepper],
    rollouts: &'a mut HashMap<String, Vec<Rollout>>,
    ids: &'a mut EventIds,
    staged: &'a mut Vec<RolloutCommit>,
}

impl Flags<'_> {
    /// Counts a judged window of `run` toward each of its flags' next step;
    /// raises (and the new counts) are staged for the run's commit. Returns
    /// what a promotion still waits for, or `None` when every flag has held
    /// its last step.
    fn step(
        self,
        run: &RunRecord,
        spec: &ContractSpec,
        record: &WindowRecord,
        now: UnixNanos,
    ) -> Option<String> {
        if spec.dry_run || self.steppers.is_empty() {
            return None;
        }
        let list = self.rollouts.entry(run.run_id.clone()).or_default();
        let mut waiting = Vec::new();
        for stepper in self.steppers {
            let Some(r) = list.iter_mut().find(|r| r.exporter == stepper.exporter) else {
                waiting.push(format!("{} has not set the flag yet", stepper.exporter));
                continue;
            };
            let ids = &mut *self.ids;
            let decided = stepper.on_window(r, run, record, spec.decision, || ids.next(), now);
            match decided {
                Some(raise) => {
                    *r = raise.rollout.clone();
                    self.staged.push(raise);
                }
                None => self.staged.push(RolloutCommit {
                    rollout: r.clone(),
                    change: None,
                }),
            }
            if !stepper.complete(r) {
                waiting.push(format!(
                    "flag {} is at {}% (step {} of {}, {}/{} windows{})",
                    r.flag,
                    r.percent,
                    r.step + 1,
                    stepper.steps.len(),
                    r.counted,
                    stepper.step_windows,
                    if r.acked_at.is_none() {
                        ", not yet applied by Unleash"
                    } else {
                        ""
                    }
                ));
            }
        }
        (!waiting.is_empty()).then(|| waiting.join("; "))
    }
}

/// Applies a transition and builds its event. Event ids are monotonic ULIDs,
/// so the outbox delivers a pipeline's events in the order they happened.
fn transition(
    ids: &mut EventIds,
    run: &mut RunRecord,
    t: &Transition,
    window: Option<WindowRecord>,
    now: UnixNanos,
    dry_run: bool,
) -> VerdictEvent {
    let previous_state = run.state;
    machine::apply(run, t, now);
    VerdictEvent {
        event_id: ids.next(),
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
pub(crate) mod tests;
