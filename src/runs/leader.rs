//! The run engine of a cluster's leader: every instance runs this task per
//! pipeline, and it drives an engine only while the instance leads.
//!
//! A leadership (a *term*) starts by claiming the pipeline (its fencing
//! token in `cluster_judged`) and reading where the judging stands; the
//! engine is built from the runs in storage and resumes after the last
//! judged window. At every tick it judges each window whose close deadline
//! plus `service.postgres.grace` has passed: the partials every instance
//! wrote for it are merged per series and fed to the engine as closed
//! windows, and the results are committed with the judged mark in one
//! transaction (`LeaderClaim`). A term ends when the lock is lost or a
//! commit finds the claim taken; what it had not committed is judged again
//! by the next leader, from the same partials. A window is therefore judged
//! once, and only a leader's committed decisions are ever announced.
//!
//! Followers answer manual decisions with [`ManualError::NotLeader`],
//! naming the leader's API; flag acknowledgements are read from the outbox,
//! whichever instance delivered the change.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::engine::{Engine, EngineSeed, ManualError};
use super::task::{Command, EngineTask, FlagAck, LeaderClaim};
use crate::clock::SharedClock;
use crate::config::PipelineSpec;
use crate::model::{ClosedWindow, EngineInput, SeriesKey, UnixNanos, Window, WindowTiming};
use crate::retry::Backoff;
use crate::storage::cluster::{Claim, DEAD_AFTER};
use crate::storage::{DeliveryState, Health, RunStore, SqlStore, StoreError};

/// Builds a pipeline's engine from what storage holds.
pub type BuildEngine = Box<dyn Fn(EngineSeed, UnixNanos) -> Engine + Send + Sync>;

/// How often the purge of retired runs runs.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Instances heard from within this long may only look dead because the
/// database was away: the leader waits for them for [`DEAD_AFTER`] after
/// a term starts or the database was found unwritable.
const FORGOTTEN_AFTER: Duration = Duration::from_secs(600);

/// Longest a window waits after its deadline for an instance that
/// heartbeats but does not write its partials.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// A pipeline's leader task (see the module documentation).
pub struct LeaderTask {
    /// This instance in the cluster: its name and since when its
    /// heartbeats reach the database.
    pub member: Arc<crate::cluster::Member>,
    /// The pipeline.
    pub pipeline: PipelineSpec,
    /// Builds its engine at the start of each term.
    pub build: BuildEngine,
    /// The shared database.
    pub store: Arc<SqlStore>,
    /// Whether this instance leads.
    pub leading: watch::Receiver<bool>,
    /// A fresh fencing token per term.
    pub next_term: Arc<dyn Fn() -> String + Send + Sync>,
    /// Wait after a window's close deadline for partials in flight.
    pub grace: Duration,
    /// How often windows are looked at.
    pub tick: Duration,
    /// From the API.
    pub commands: mpsc::Receiver<Command>,
    /// From this instance's `unleash` workers.
    pub acks: mpsc::Receiver<FlagAck>,
    /// Storage health for `/readyz`.
    pub health: Arc<Health>,
    /// This instance's delivery workers, by exporter id.
    pub workers: HashMap<String, Arc<Notify>>,
    /// Wall clock.
    pub clock: SharedClock,
    /// Ends the task.
    pub stop: CancellationToken,
}

impl std::fmt::Debug for LeaderTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderTask")
            .field("pipeline", &self.pipeline.name)
            .finish_non_exhaustive()
    }
}

/// The runs a pipeline's engine resumes with: the current runs of its
/// contracts, each one's last window result and its flag rollouts (an
/// acknowledgement that arrived while no engine held the run is taken from
/// the outbox).
pub async fn seed_runs(
    store: &dyn RunStore,
    pipeline: &PipelineSpec,
) -> Result<EngineSeed, StoreError> {
    let mut seed = EngineSeed::default();
    for c in &pipeline.contracts {
        for run in store.current_runs(&c.name).await? {
            if run.contract_version != c.version {
                // The engine only notes its subject: a new version's run
                // for it counts the windows this one did not judge.
                seed.runs.push(run);
                continue;
            }
            if let Some(w) = store.windows(&run.run_id, 1).await?.into_iter().next() {
                seed.last_windows.insert(run.run_id.clone(), w);
            }
            for mut r in store.rollouts(&run.run_id).await? {
                if r.acked_at.is_none() {
                    // Applied while verdict was stopping (or just before a
                    // crash): the outbox row says when.
                    if let Some(d) = store.delivery(&r.change_id, &r.exporter).await? {
                        if d.state == DeliveryState::Delivered {
                            r.acked_at = Some(d.updated_at);
                        }
                    }
                }
                seed.rollouts.push(r);
            }
            seed.runs.push(run);
        }
    }
    Ok(seed)
}

/// The last window an engine starting at `now` would count as judged: the
/// one before the oldest window that can still be open.
fn initial_mark(timing: &WindowTiming, now: UnixNanos) -> UnixNanos {
    Window::containing(
        now.saturating_sub(timing.lateness + timing.size),
        timing.size,
    )
    .start
    .saturating_sub(timing.size)
}

impl LeaderTask {
    /// Follows, and leads whenever this instance holds the lock, until
    /// stopped.
    pub async fn run(mut self) {
        loop {
            // Following.
            while !*self.leading.borrow() {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    changed = self.leading.changed() => if changed.is_err() { return },
                    Some(cmd) = self.commands.recv() => self.refuse(cmd).await,
                    // The leader reads acknowledgements from the outbox.
                    Some(_) = self.acks.recv() => {}
                }
            }
            self.lead().await;
            if self.stop.is_cancelled() {
                return;
            }
            // A term that ended on a fenced commit while the lock still
            // shows held waits for the lock to go before leading again.
            if *self.leading.borrow() {
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    /// A manual decision sent to a follower: refused, naming the leader.
    async fn refuse(&self, cmd: Command) {
        let leader = match self.store.instances().await {
            Ok(list) => list.into_iter().find(|i| i.leader).map(|i| {
                format!(
                    "instance {} leads; send it to its API at {}",
                    i.instance, i.api
                )
            }),
            Err(_) => None,
        };
        let _ = cmd.reply.send(Err(ManualError::NotLeader(format!(
            "this instance does not lead the cluster, so it does not decide runs: {}",
            leader.unwrap_or_else(|| "no instance leads right now; retry shortly".into())
        ))));
    }

    fn lost(&self) -> bool {
        !*self.leading.borrow() || self.stop.is_cancelled()
    }

    /// One term: claim, resume, judge until the lock or the claim is lost.
    async fn lead(&mut self) {
        let name = self.pipeline.name.clone();
        let timing = self.pipeline.window.timing();
        let claim = Claim {
            pipeline: name.clone(),
            leader: (self.next_term)(),
        };
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let mut failures = 0;
        let (judged, seed) = loop {
            if self.lost() {
                return;
            }
            let now = self.clock.now();
            let ready = async {
                let judged = self
                    .store
                    .claim(&claim, initial_mark(&timing, now), now)
                    .await?;
                let seed = seed_runs(self.store.as_ref(), &self.pipeline).await?;
                Ok::<_, StoreError>((judged, seed))
            };
            match ready.await {
                Ok(r) => break r,
                Err(err) => {
                    failures += 1;
                    tracing::error!(pipeline = %name, error = %err, "Cannot take up the pipeline's judging; retrying.");
                    self.health
                        .failed(&format!("pipeline {name}"), err.to_string());
                    tokio::time::sleep(backoff.delay(failures)).await;
                }
            }
        };
        let now = self.clock.now();
        let mut engine = (self.build)(seed, now);
        // A cluster that stood still for long starts at the oldest window
        // that still has partials, not at every empty window since.
        let start_at = initial_mark(&timing, now);
        let resume = if judged >= start_at {
            judged
        } else {
            match self.first_pending(judged).await {
                Some(before) => before.min(start_at).max(judged),
                None => start_at,
            }
        };
        engine.resume_after(resume);
        let mut judged_at = Window::containing(resume, timing.size);
        tracing::info!(pipeline = %name, next_window = engine.next_window().start, "Judging the pipeline's windows.");
        let (_, input) = mpsc::channel(1);
        let (_, commands) = mpsc::channel(1);
        let (_, acks) = mpsc::channel(1);
        let mut task = EngineTask {
            pipeline: name.clone(),
            engine,
            input,
            commands,
            acks,
            store: self.store.clone(),
            health: self.health.clone(),
            workers: self.workers.clone(),
            clock: self.clock.clone(),
            claim: Some(LeaderClaim {
                store: self.store.clone(),
                claim,
                judged: judged_at.start,
                fenced: Default::default(),
            }),
        };
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut purged = self.clock.now();
        // Since when (database clock) the leader has seen the database
        // writable: an instance's silence counts only from here.
        let mut writable: Option<UnixNanos> = None;
        loop {
            tokio::select! {
                biased;
                () = self.stop.cancelled() => return,
                changed = self.leading.changed() => {
                    if changed.is_err() || !*self.leading.borrow() {
                        tracing::warn!(pipeline = %name, "Leadership lost; following.");
                        return;
                    }
                }
                Some(cmd) = self.commands.recv() => task.command(cmd).await,
                Some(ack) = self.acks.recv() => task.acked(ack).await,
                _ = tick.tick() => {
                    self.poll_acks(&mut task).await;
                    let grace = crate::model::nanos(self.grace);
                    loop {
                        let w = task.engine.next_window();
                        if self.clock.now() < w.deadline(timing.lateness).saturating_add(grace) || self.lost() {
                            break;
                        }
                        if !self.written(w.deadline(timing.lateness), &mut writable).await {
                            break;
                        }
                        let (series, read, lookup) = self.feed(&mut task, w).await;
                        if let Some(c) = task.claim.as_mut() {
                            c.judged = w.start;
                        }
                        let judging = std::time::Instant::now();
                        let batch = task.engine.handle(
                            EngineInput::Watermark { shard: 0, now: w.deadline(timing.lateness) },
                            self.clock.now(),
                        );
                        let (judge, commits) = (judging.elapsed(), batch.len());
                        let committing = std::time::Instant::now();
                        task.commit(batch).await;
                        if task.fenced() {
                            return;
                        }
                        // Where a window's time to its verdict goes.
                        tracing::debug!(
                            pipeline = %name, window = w.start, series, commits,
                            read_ms = read.as_millis() as u64, lookup_ms = lookup.as_millis() as u64,
                            judge_ms = judge.as_millis() as u64,
                            commit_ms = committing.elapsed().as_millis() as u64,
                            "Window judged."
                        );
                        judged_at = w;
                    }
                    // Timeouts and idle runs, without a window.
                    let batch = task.engine.handle(
                        EngineInput::Watermark { shard: 0, now: judged_at.deadline(timing.lateness) },
                        self.clock.now(),
                    );
                    if !batch.is_empty() {
                        task.commit(batch).await;
                    }
                    if task.fenced() {
                        return;
                    }
                    let now = self.clock.now();
                    if now >= purged.saturating_add(crate::model::nanos(PURGE_EVERY)) {
                        purged = now;
                        task.purge_retired().await;
                    }
                }
            }
            if task.fenced() {
                return;
            }
        }
    }

    /// Whether every instance that may still hold partials of windows
    /// closing at `deadline` has written them: those heard from within
    /// [`FORGOTTEN_AFTER`] that have not been silent for [`DEAD_AFTER`]
    /// while the database was writable. Heartbeats and this check use the
    /// database's clock. Silence counts from the later of the instance's
    /// last heartbeat and `writable` — since when this leader has seen the
    /// database writable (its term's first check, its own heartbeats
    /// getting through without a gap, this read not waiting): after
    /// PostgreSQL stalled for everyone, every instance gets [`DEAD_AFTER`]
    /// to write what it held. An instance silent for longer is dead (what
    /// it had not written is lost: the documented bound). Past [`MAX_WAIT`]
    /// after the deadline the window is judged regardless, so an instance
    /// that heartbeats but cannot write holds no verdict for ever.
    async fn written(&self, deadline: UnixNanos, writable: &mut Option<UnixNanos>) -> bool {
        let now = self.clock.now();
        if now >= deadline.saturating_add(crate::model::nanos(MAX_WAIT)) {
            tracing::warn!(pipeline = %self.pipeline.name, "Judging a window although an instance has not written its partials for it.");
            return true;
        }
        let reading = std::time::Instant::now();
        let Ok(progress) = self.store.progress(&self.pipeline.name).await else {
            // Silence measured across a storage error says nothing.
            *writable = None;
            return false;
        };
        let db_now = progress.now;
        let gap = crate::model::nanos(crate::cluster::WRITE_GAP);
        let own = progress
            .instances
            .iter()
            .find(|(name, _, _)| name == self.member.instance())
            .map_or(0, |(_, heartbeat, _)| *heartbeat);
        if reading.elapsed() > crate::cluster::WRITE_GAP || db_now.saturating_sub(own) > gap {
            // The read waited, or this instance's own heartbeat is not
            // getting through: the database is not (yet) writable for all.
            *writable = Some(db_now);
            return false;
        }
        let since = (*writable.get_or_insert(db_now))
            .max(self.member.writable_since.load(Ordering::SeqCst));
        let dead = crate::model::nanos(DEAD_AFTER);
        let forgotten = db_now.saturating_sub(crate::model::nanos(FORGOTTEN_AFTER));
        let mut missing = Vec::new();
        for (name, heartbeat, through) in &progress.instances {
            if *through >= deadline || *heartbeat <= forgotten {
                continue;
            }
            if db_now.saturating_sub((*heartbeat).max(since)) < dead {
                return false;
            }
            if heartbeat.saturating_add(dead) >= deadline {
                missing.push(name.as_str());
            }
        }
        if !missing.is_empty() {
            tracing::warn!(
                pipeline = %self.pipeline.name,
                window_deadline = deadline,
                instances = ?missing,
                "Judging a window without the partials of instances that were alive at its deadline and then stopped heartbeating; what they accepted for it is not counted."
            );
        }
        true
    }

    /// The oldest window after `judged` that has partials, if any.
    async fn first_pending(&self, judged: UnixNanos) -> Option<UnixNanos> {
        let pending = self
            .store
            .next_partial_window(&self.pipeline.name, judged)
            .await
            .ok()??;
        Some(pending.saturating_sub(1))
    }

    /// Hands the engine window `w`'s partials, merged over the instances
    /// (retried while the storage fails). Returns the series handed, and
    /// how long reading the partials and looking up their runs took.
    async fn feed(&self, task: &mut EngineTask, w: Window) -> (usize, Duration, Duration) {
        let reading = std::time::Instant::now();
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        let source = format!("pipeline {}", self.pipeline.name);
        let mut failures = 0;
        let merged = loop {
            match self
                .store
                .merged_partials(&self.pipeline.name, w.start)
                .await
            {
                Ok(m) => break m,
                Err(err) => {
                    failures += 1;
                    tracing::error!(pipeline = %self.pipeline.name, error = %err, "Cannot read window partials; retrying.");
                    self.health.failed(&source, err.to_string());
                    if self.lost() {
                        return (0, reading.elapsed(), Duration::ZERO);
                    }
                    tokio::time::sleep(backoff.delay(failures)).await;
                }
            }
        };
        let read = reading.elapsed();
        let looking = std::time::Instant::now();
        let merged: Vec<(SeriesKey, crate::model::Accum)> = merged
            .into_iter()
            .filter_map(|m| {
                let contract = task.engine.contract_index(&m.contract)?;
                let series = SeriesKey {
                    contract,
                    subject: m.subject,
                };
                Some((series, m.accum))
            })
            .collect();
        let series: Vec<SeriesKey> = merged.iter().map(|(s, _)| s.clone()).collect();
        task.resolve_all(&series).await;
        let lookup = looking.elapsed();
        for (series, accum) in merged {
            let replaced = task.engine.handle(
                EngineInput::Closed(ClosedWindow {
                    series,
                    window: w,
                    accum,
                }),
                self.clock.now(),
            );
            if !replaced.is_empty() {
                task.commit(replaced).await;
            }
        }
        (series.len(), read, lookup)
    }

    /// Flag changes delivered by any instance: their acknowledgement, read
    /// from the outbox, starts the step's hold.
    async fn poll_acks(&self, task: &mut EngineTask) {
        for (exporter, run_id, change_id) in task.engine.unacked() {
            let Ok(Some(d)) = self.store.delivery(&change_id, &exporter).await else {
                continue;
            };
            if d.state == DeliveryState::Delivered {
                task.acked(FlagAck {
                    exporter,
                    run_id,
                    change_id,
                    at: d.updated_at,
                })
                .await;
            }
        }
    }
}
