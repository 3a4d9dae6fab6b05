//! The async driver of a pipeline's run engine: feeds it what the shards
//! send and the manual decisions the API asks for, commits every batch the
//! engine returns, and only then announces it.
//!
//! **Commit before announce.** A batch (run states, window results,
//! transitions and their outbox rows) is stored in one transaction. If the
//! storage fails, the same batch is retried with backoff until it commits —
//! the engine waits, the shards' queues fill up and ingest is refused with a
//! retryable error, and `/readyz` reports the problem — so no transition is
//! lost and none is announced before it is durable. Announcing is a log line
//! and a wake-up of the exporters' delivery workers, which read the outbox.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};

use crate::clock::SharedClock;
use crate::retry::Backoff;
use crate::storage::{Commit, Health, RunStore};
use crate::telemetry;

use super::engine::{Engine, ManualAction, ManualError};
use crate::model::{EngineInput, RunRecord, SeriesKey};

/// A manual decision or reset, routed through the engine that owns the run.
#[derive(Debug)]
pub struct Command {
    /// What to do.
    pub action: ManualAction,
    /// Contract name.
    pub contract: String,
    /// Joined subject (`checkout/2.0.1`).
    pub subject: String,
    /// The user's reason (`manual: <reason>`).
    pub reason: Option<String>,
    /// The run afterwards, once committed.
    pub reply: oneshot::Sender<Result<RunRecord, ManualError>>,
}

/// Unleash applied a flag change (from an `unleash` exporter's worker).
#[derive(Debug, Clone, PartialEq)]
pub struct FlagAck {
    /// Full exporter id.
    pub exporter: String,
    /// The run whose flag it is.
    pub run_id: String,
    /// The change applied.
    pub change_id: String,
    /// When Unleash answered.
    pub at: crate::model::UnixNanos,
}

/// Everything the engine task needs.
#[derive(Debug)]
pub struct EngineTask {
    /// Pipeline name (logs, checkpoints).
    pub pipeline: String,
    /// The engine.
    pub engine: Engine,
    /// From the shards.
    pub input: mpsc::Receiver<EngineInput>,
    /// From the API.
    pub commands: mpsc::Receiver<Command>,
    /// From the `unleash` exporters' workers.
    pub acks: mpsc::Receiver<FlagAck>,
    /// Where batches are committed.
    pub store: Arc<dyn RunStore>,
    /// Storage health for `/readyz`.
    pub health: Arc<Health>,
    /// Delivery workers to wake, by exporter id.
    pub workers: HashMap<String, Arc<Notify>>,
    /// Wall clock.
    pub clock: SharedClock,
    /// In a cluster, the leader's claim on the pipeline: every commit goes
    /// through it (`None`: the only engine on its storage).
    pub claim: Option<LeaderClaim>,
}

/// A cluster leader's claim on a pipeline's judging (see
/// `storage::cluster`): commits carry the judged mark and fail, writing
/// nothing, once another instance has claimed the pipeline.
#[derive(Debug)]
pub struct LeaderClaim {
    /// The shared database.
    pub store: Arc<crate::storage::SqlStore>,
    /// The claim.
    pub claim: crate::storage::cluster::Claim,
    /// The last window judged; the next commit moves the mark here.
    pub judged: crate::model::UnixNanos,
    /// Set when a commit found the claim taken: this instance leads no
    /// more, and the batch was not stored.
    pub fenced: std::sync::atomic::AtomicBool,
}

/// Longest wait between two commit attempts while the storage fails.
const MAX_COMMIT_BACKOFF: Duration = Duration::from_secs(5);

/// Retired runs stay listed this long, then go with their windows, so
/// one-shot subjects (user ids, build numbers) do not pile up in storage.
pub const RETIRED_RETENTION: Duration = Duration::from_secs(3600);

/// Shard messages handled and committed together at most: a burst of new
/// series is stored in a few transactions, while a manual decision still
/// waits for at most one such batch.
const MESSAGES_PER_COMMIT: usize = 1024;

/// How often the task purges retired runs.
const PURGE_EVERY: Duration = Duration::from_secs(60);

impl EngineTask {
    /// Runs until every shard has hung up, then writes the final checkpoint.
    pub async fn run(mut self) {
        // The restored image, in this process's shard layout.
        let slots = self.engine.checkpoint(true);
        self.save_checkpoint(&slots, true).await;
        let mut purged = self.clock.now();
        loop {
            tokio::select! {
                biased;
                // Manual decisions first: a person is waiting for the answer.
                Some(cmd) = self.commands.recv() => self.command(cmd).await,
                // A flag change applied: its step's hold starts now, before
                // the next window is judged.
                Some(ack) = self.acks.recv() => self.acked(ack).await,
                msg = self.input.recv() => {
                    let Some(msg) = msg else { break };
                    let mut msgs = vec![msg];
                    while msgs.len() < MESSAGES_PER_COMMIT {
                        match self.input.try_recv() {
                            Ok(more) => msgs.push(more),
                            Err(_) => break,
                        }
                    }
                    self.handle_all(msgs, &mut purged).await;
                }
            }
        }
        // Every shard has drained its queue and sent its last snapshot.
        let slots = self.engine.checkpoint(true);
        self.save_checkpoint(&slots, true).await;
        tracing::info!(pipeline = %self.pipeline, "Open windows checkpointed.");
    }

    /// Handles the messages the shards have queued, in order, as one
    /// commit: their unknown series looked up in one call, their changes
    /// stored in one transaction. A burst of new series (a deploy of many
    /// services, a new attribute in `subject_by`) would otherwise cost a
    /// lookup and a transaction per series, and the shards, blocked on a
    /// full queue to this task, would take in no samples meanwhile — those
    /// accepted just before a window's close deadline would be recorded
    /// after it, as late. A snapshot commits what came before it, so the
    /// checkpoint that follows it never runs ahead of the stored runs.
    async fn handle_all(&mut self, msgs: Vec<EngineInput>, purged: &mut crate::model::UnixNanos) {
        self.resolve_all(msgs.iter().filter_map(|msg| match msg {
            EngineInput::SeriesSeen { series, .. } | EngineInput::Rejected { series, .. } => {
                Some(series)
            }
            EngineInput::Closed(cw) => Some(&cw.series),
            _ => None,
        }))
        .await;
        let mut batch = Vec::new();
        for msg in msgs {
            let snapshot = matches!(msg, EngineInput::Snapshot { .. });
            let now = self.clock.now();
            if matches!(msg, EngineInput::Watermark { .. })
                && now >= purged.saturating_add(crate::model::nanos(PURGE_EVERY))
            {
                *purged = now;
                self.purge_retired().await;
            }
            batch.extend(self.engine.handle(msg, self.clock.now()));
            if snapshot {
                self.commit(std::mem::take(&mut batch)).await;
                let slots = self.engine.checkpoint(false);
                self.save_checkpoint(&slots, false).await;
            }
        }
        self.commit(batch).await;
    }

    /// Deletes runs retired more than [`RETIRED_RETENTION`] ago. A failure
    /// is only logged: the next round tries again.
    pub(super) async fn purge_retired(&self) {
        let before = self
            .clock
            .now()
            .saturating_sub(crate::model::nanos(RETIRED_RETENTION));
        match self.store.purge_retired(before).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pipeline = %self.pipeline, runs = n, "Retired runs purged."),
            Err(err) => {
                tracing::warn!(pipeline = %self.pipeline, error = %err, "Could not purge retired runs.")
            }
        }
    }

    /// Before data for series the engine does not hold is handled, looks
    /// for their runs in storage: a run leaves memory when it goes idle, and
    /// a final run must stay final when its subject comes back (never a new
    /// run for it). One storage call per contract for all the series the
    /// engine does not hold (a window of new series would otherwise cost a
    /// round trip per series). Retried while the storage fails, like
    /// commits.
    pub(super) async fn resolve_all<'a>(
        &mut self,
        series: impl IntoIterator<Item = &'a SeriesKey>,
    ) {
        let mut unknown: HashMap<u32, HashMap<&str, &SeriesKey>> = HashMap::new();
        for s in series.into_iter().filter(|s| !self.engine.knows(s)) {
            unknown
                .entry(s.contract)
                .or_default()
                .insert(s.subject.joined(), s);
        }
        for (index, by_subject) in unknown {
            let Some(contract) = self.engine.contract_name(index).map(str::to_string) else {
                continue;
            };
            let subjects: Vec<&str> = by_subject.keys().copied().collect();
            let runs = self
                .retrying("Could not look up runs; retrying.", || {
                    self.store.current_of(&contract, &subjects)
                })
                .await;
            for run in runs {
                if let Some(s) = by_subject.get(run.subject.joined()) {
                    self.engine.adopt(s, run, self.clock.now());
                }
            }
        }
    }

    /// What `call` answers once the storage does, retrying (with backoff,
    /// reported through `/readyz`) while it fails.
    async fn retrying<'a, T>(
        &'a self,
        what: &'static str,
        call: impl Fn() -> crate::storage::StoreFuture<'a, T>,
    ) -> T {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: MAX_COMMIT_BACKOFF,
        };
        let mut failures = 0u32;
        loop {
            match call().await {
                Ok(v) => {
                    self.health.ok(&self.source());
                    return v;
                }
                Err(err) => {
                    failures = failures.saturating_add(1);
                    tracing::error!(pipeline = %self.pipeline, error = %err, "{what}");
                    self.health.failed(&self.source(), err.to_string());
                    tokio::time::sleep(backoff.delay(failures)).await;
                }
            }
        }
    }

    /// The current run of `contract` for the joined `subject` in storage,
    /// retrying while the storage fails.
    async fn lookup(&self, contract: &str, subject: &str) -> Option<RunRecord> {
        self.retrying("Could not look up a run; retrying.", || {
            self.store.current(contract, subject)
        })
        .await
    }

    pub(super) async fn command(&mut self, cmd: Command) {
        // A run that left memory (idle) is still the subject's run.
        if let Some(index) = self.engine.contract_index(&cmd.contract) {
            if !self.engine.knows_joined(index, &cmd.subject) {
                if let Some(run) = self.lookup(&cmd.contract, &cmd.subject).await {
                    let series = SeriesKey {
                        contract: index,
                        subject: run.subject.clone(),
                    };
                    self.engine.adopt(&series, run, self.clock.now());
                }
            }
        }
        let result = self.engine.manual(
            cmd.action,
            &cmd.contract,
            &cmd.subject,
            cmd.reason.as_deref(),
            self.clock.now(),
        );
        let answer = match result {
            Ok((batch, run)) => {
                self.commit(batch).await;
                if self.fenced() {
                    // Nothing was stored, and the next leader cannot
                    // derive a person's decision from the data: the caller
                    // must hear that it did not happen, and send it again.
                    Err(ManualError::NotLeader(
                        "leadership moved to another instance while this decision was being \
                         stored; it was not stored: send it again (to the new leader, see \
                         GET /api/v1/cluster)"
                            .into(),
                    ))
                } else {
                    Ok(run)
                }
            }
            Err(e) => Err(e),
        };
        // The caller may have given up; the decision stands either way.
        let _ = cmd.reply.send(answer);
    }

    /// Whether a commit found this leader's claim taken: nothing it
    /// commits is stored any more.
    pub(super) fn fenced(&self) -> bool {
        self.claim
            .as_ref()
            .is_some_and(|c| c.fenced.load(std::sync::atomic::Ordering::SeqCst))
    }

    /// Commits `batch` (retrying until it is stored), then announces it.
    /// A leader's batch also moves the judged mark (even when empty, once a
    /// window was judged); one whose claim was taken is dropped unannounced.
    pub(super) async fn commit(&self, batch: Vec<Commit>) {
        if batch.is_empty() && self.claim.is_none() {
            return;
        }
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: MAX_COMMIT_BACKOFF,
        };
        for failures in 1u32.. {
            let stored = match &self.claim {
                None => self.store.commit(&batch, self.clock.now()).await,
                Some(c) => {
                    match c
                        .store
                        .commit_judged(&batch, &c.claim, c.judged, self.clock.now())
                        .await
                    {
                        Ok(judged) => {
                            self.late(&judged.late);
                            Ok(())
                        }
                        Err(crate::storage::cluster::JudgeError::Fenced(_)) => {
                            tracing::warn!(pipeline = %self.pipeline, "Another instance leads now; this one's last decisions were not stored and are left to it.");
                            c.fenced.store(true, std::sync::atomic::Ordering::SeqCst);
                            return;
                        }
                        Err(crate::storage::cluster::JudgeError::Store(e)) => Err(e),
                    }
                }
            };
            match stored {
                Ok(()) => {
                    self.health.ok(&self.source());
                    break;
                }
                Err(err) => {
                    tracing::error!(
                        pipeline = %self.pipeline,
                        error = %err,
                        retry_in = ?backoff.delay(failures),
                        "Could not commit run changes; retrying. Nothing is announced until they are stored."
                    );
                    self.health.failed(&self.source(), err.to_string());
                    tokio::time::sleep(backoff.delay(failures)).await;
                }
            }
        }
        for c in &batch {
            // Flag changes of the run's rollouts: their workers too.
            for rc in c.rollouts.iter().filter(|rc| rc.change.is_some()) {
                if let Some(n) = self.workers.get(&rc.rollout.exporter) {
                    n.notify_one();
                }
            }
            let Some(event) = &c.event else { continue };
            tracing::info!(
                contract = %event.run.contract,
                subject = %event.run.subject,
                run_id = %event.run.run_id,
                event_id = %event.event_id,
                state = event.run.state.as_str(),
                reason = %event.run.reason,
                "Run changed state."
            );
            metrics::counter!(telemetry::RUN_TRANSITIONS,
                "contract" => event.run.contract.clone(), "state" => event.run.state.as_str())
            .increment(1);
            for exporter in &c.outbox {
                if let Some(n) = self.workers.get(exporter) {
                    n.notify_one();
                }
            }
        }
    }

    /// Counts and reports partials that reached the database after their
    /// window was judged, by the instance that wrote them.
    fn late(&self, late: &std::collections::BTreeMap<String, u64>) {
        for (writer, n) in late {
            tracing::warn!(
                pipeline = %self.pipeline,
                writer = %writer,
                rows = n,
                "Partials arrived after their window was judged (their instance was taken for dead, \
                 or wrote them more than a minute after the close deadline); they count in no verdict."
            );
            metrics::counter!(telemetry::CLUSTER_LATE_PARTIALS,
                "pipeline" => self.pipeline.clone(), "writer" => writer.clone())
            .increment(*n);
        }
    }

    fn source(&self) -> String {
        format!("pipeline {}", self.pipeline)
    }

    /// Records that Unleash applied a flag change; a run that left memory
    /// has its stored rollout updated (so the API shows it applied).
    pub(super) async fn acked(&mut self, ack: FlagAck) {
        let rollout = match self.engine.acked(&ack.exporter, &ack.change_id, ack.at) {
            Some(r) => Some(r),
            None => match self.store.rollouts(&ack.run_id).await {
                Ok(list) => list
                    .into_iter()
                    .find(|r| r.exporter == ack.exporter && r.change_id == ack.change_id)
                    .filter(|r| r.acked_at.is_none())
                    .map(|mut r| {
                        r.acked_at = Some(ack.at);
                        r
                    }),
                Err(err) => {
                    // The acknowledgement is found again in the outbox at
                    // the next start; until then the step holds longer.
                    tracing::warn!(pipeline = %self.pipeline, error = %err, "Could not read a rollout.");
                    None
                }
            },
        };
        let Some(rollout) = rollout else { return };
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: MAX_COMMIT_BACKOFF,
        };
        for failures in 1u32..=10 {
            match self
                .store
                .save_rollouts(std::slice::from_ref(&rollout), self.clock.now())
                .await
            {
                Ok(()) => {
                    self.health.ok(&self.source());
                    return;
                }
                Err(err) => {
                    tracing::error!(pipeline = %self.pipeline, error = %err, "Could not store a rollout; retrying.");
                    self.health.failed(&self.source(), err.to_string());
                    tokio::time::sleep(backoff.delay(failures)).await;
                }
            }
        }
    }

    async fn save_checkpoint(&self, slots: &[(i64, String)], replace_all: bool) {
        // A failed checkpoint loses nothing now; it widens what a kill -9
        // could lose, so it is reported and the next one tries again.
        match self
            .store
            .save_checkpoint(&self.pipeline, slots, replace_all, self.clock.now())
            .await
        {
            Ok(()) => self.health.ok(&self.source()),
            Err(err) => {
                tracing::warn!(pipeline = %self.pipeline, error = %err, "Could not write the open-window checkpoint.");
                self.health.failed(&self.source(), err.to_string());
            }
        }
    }
}

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;
