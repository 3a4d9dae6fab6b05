//! The partials task of a pipeline: every instance writes what its shards
//! aggregated, per (contract, subject, window), to the shared database —
//! the windows still open at every checkpoint interval (only those that
//! changed), the windows that closed right after they close. The shards
//! never wait on PostgreSQL: they hand their windows over a channel, and
//! this task writes them in the background.
//!
//! While PostgreSQL cannot be written, the task retries with backoff,
//! `/readyz` reports why, and the pipeline's [`IngestGate`] refuses new
//! requests with a retryable error (what was accepted stays in memory
//! and is written once the database is back); the gate opens again after
//! the first successful write.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Member;
use crate::aggregator::IngestGate;
use crate::clock::SharedClock;
use crate::model::{Accum, EngineInput, SeriesKey, UnixNanos, WindowTiming};
use crate::retry::Backoff;
use crate::storage::cluster::Partial;
use crate::storage::Health;

/// A partial as staged for the next write.
/// A partial write not confirmed within this long closes the ingest gate
/// (well within the 5 s after which the leader stops waiting for a silent
/// instance, so what was accepted before is written in time).
const SLOW_WRITE: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Staged {
    accum: Accum,
    /// The window closed in its shard: it will not change again.
    closed: bool,
}

/// Writes a pipeline's partials.
#[derive(Debug)]
pub struct PartialTask {
    /// Pipeline name.
    pub pipeline: String,
    /// Contract names by index (`SeriesKey::contract`).
    pub contracts: Vec<String>,
    /// From the shards.
    pub input: mpsc::Receiver<EngineInput>,
    /// This instance.
    pub member: Arc<Member>,
    /// Storage health for `/readyz`.
    pub health: Arc<Health>,
    /// Closed while writes fail.
    pub gate: Arc<IngestGate>,
    /// Wall clock (the write's sequence number).
    pub clock: SharedClock,
    /// The pipeline's shard count and window timing: how far everything is
    /// written follows the slowest shard's close ticks.
    pub shards: usize,
    /// The pipeline's windows.
    pub timing: WindowTiming,
}

/// A cheap fingerprint of an accumulation, to skip rewriting a window
/// that did not change since its last write.
fn fingerprint(a: &Accum) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (a.samples, a.errors, a.conversions, a.latency.count()).hash(&mut h);
    a.latency.sum().to_bits().hash(&mut h);
    h.finish()
}

impl PartialTask {
    /// Runs until every shard has hung up, then writes what is left.
    pub async fn run(mut self) {
        let mut staged: HashMap<(SeriesKey, UnixNanos), Staged> = HashMap::new();
        let mut written: HashMap<(SeriesKey, UnixNanos), u64> = HashMap::new();
        let mut closed_since_write = false;
        // The shards' stream tables, sent as they stop.
        let mut tables: Vec<(i64, String)> = Vec::new();
        // Each shard's last close tick, and how far the written partials
        // were last published to the leader.
        let mut marks: Vec<UnixNanos> = vec![0; self.shards.max(1)];
        let mut published: UnixNanos = self.clock.now();
        // This process holds nothing of the windows closed before it
        // started (what it had of open ones is restored into its shards).
        if let Err(err) = self
            .member
            .store
            .set_progress(&self.pipeline, self.member.instance(), published, true)
            .await
        {
            tracing::warn!(pipeline = %self.pipeline, error = %err, "Cannot record how far partials are written.");
        }
        while let Some(msg) = self.input.recv().await {
            if let EngineInput::Watermark { shard, now } = &msg {
                if let Some(m) = marks.get_mut(*shard) {
                    *m = (*m).max(*now);
                }
            }
            let write_now = match msg {
                // Stored once the last partials are written.
                EngineInput::Streams { shard, table } => {
                    tables.push((crate::storage::checkpoint::streams_slot(shard), table));
                    false
                }
                EngineInput::Closed(cw) => {
                    staged.insert(
                        (cw.series, cw.window.start),
                        Staged {
                            accum: cw.accum,
                            closed: true,
                        },
                    );
                    closed_since_write = true;
                    false
                }
                EngineInput::Snapshot { series, .. } => {
                    for (key, windows) in series {
                        for (start, accum) in windows {
                            let k = (key.clone(), start);
                            if written.get(&k) == Some(&fingerprint(&accum)) {
                                continue;
                            }
                            if staged.get(&k).is_some_and(|s| s.closed) {
                                continue;
                            }
                            staged.insert(
                                k,
                                Staged {
                                    accum,
                                    closed: false,
                                },
                            );
                        }
                    }
                    true
                }
                // A shard's close tick: the windows it closed go now, so
                // the leader has them well within the grace.
                EngineInput::Watermark { .. } => closed_since_write,
                // The leader learns of series from their partials.
                EngineInput::SeriesSeen { .. } | EngineInput::Rejected { .. } => false,
            };
            self.member
                .pending
                .store(staged.len() as u64, Ordering::Relaxed);
            if write_now && !staged.is_empty() {
                self.write(&mut staged, &mut written).await;
                closed_since_write = false;
            }
            // Every window a shard closed before its last tick has been
            // handed over; with none of them left unwritten, everything up
            // to the slowest shard's tick is in the database.
            if !staged.values().any(|s| s.closed) {
                let through = marks.iter().copied().min().unwrap_or(0);
                if self.crossed(published, through) {
                    self.until_stored("record how far partials are written", || {
                        self.member.store.set_progress(
                            &self.pipeline,
                            self.member.instance(),
                            through,
                            false,
                        )
                    })
                    .await;
                    published = through;
                }
            }
        }
        if !staged.is_empty() {
            self.write(&mut staged, &mut written).await;
        }
        // Leaving: everything is written, the leader need not wait for it.
        let _ = self
            .member
            .store
            .set_progress(
                &self.pipeline,
                self.member.instance(),
                i64::MAX as u64,
                false,
            )
            .await;
        tracing::info!(pipeline = %self.pipeline, "Window partials written.");
        // The stream tables, for this instance's next start (a graceful
        // restart goes on from each cumulative stream's last point).
        if !tables.is_empty() {
            let key = crate::storage::checkpoint::instance_streams_key(
                &self.pipeline,
                self.member.instance(),
            );
            let store: &dyn crate::storage::RunStore = self.member.store.as_ref();
            if let Err(err) = store
                .save_checkpoint(&key, &tables, true, self.clock.now())
                .await
            {
                tracing::warn!(pipeline = %self.pipeline, error = %err, "Cannot store the metric stream tables; cumulative streams start again at the next start.");
            }
        }
    }

    /// Runs `op` until it succeeds. While it fails, ingest is refused
    /// (retryably) and `/readyz` says why: what this instance accepts must
    /// reach the database, and the leader waits for it.
    async fn until_stored<F, Fut>(&self, what: &str, op: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), crate::storage::StoreError>>,
    {
        let source = format!("pipeline {} partials", self.pipeline);
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        for failures in 1u32.. {
            let attempt = op();
            tokio::pin!(attempt);
            let done = tokio::select! {
                done = &mut attempt => done,
                () = tokio::time::sleep(SLOW_WRITE) => {
                    // A path to PostgreSQL that hangs (a partition) fails
                    // a statement only after the pool's timeouts; what is
                    // accepted meanwhile may never be written in time, so
                    // ingest stops now and resumes once the write lands.
                    let why = format!("PostgreSQL has not confirmed a write of window partials for {}", humantime::format_duration(SLOW_WRITE));
                    tracing::error!(pipeline = %self.pipeline, error = %why, "Ingest is refused (retryably) until PostgreSQL answers.");
                    self.health.failed(&source, why.clone());
                    self.gate.close(why);
                    attempt.await
                }
            };
            match done {
                Ok(()) => {
                    self.health.ok(&source);
                    self.gate.open();
                    return;
                }
                Err(err @ crate::storage::StoreError::Superseded(_)) => {
                    // Not retried: this process is no longer the instance
                    // (its election task stops the server). Nothing more
                    // is taken in meanwhile.
                    let why = err.to_string();
                    tracing::error!(pipeline = %self.pipeline, error = %why, "Window partials not written: this process is no longer the instance.");
                    self.health.failed(&source, why.clone());
                    self.gate.close(why);
                    return;
                }
                Err(err) => {
                    let why = format!("cannot {what}: {err}");
                    if failures == 1 {
                        tracing::error!(pipeline = %self.pipeline, error = %why, "Ingest is refused (retryably) until PostgreSQL is back.");
                    }
                    self.health.failed(&source, why.clone());
                    self.gate.close(why);
                    tokio::time::sleep(backoff.delay(failures)).await;
                }
            }
        }
    }

    /// Whether `through` passed a window's close deadline that `published`
    /// had not: the leader waits for that, so it is published once per
    /// window, not at every tick.
    fn crossed(&self, published: UnixNanos, through: UnixNanos) -> bool {
        let period =
            |t: UnixNanos| t.saturating_sub(self.timing.lateness) / self.timing.size.max(1);
        through > published && period(through) > period(published)
    }

    /// Writes every staged partial, retrying (and holding ingest) until it
    /// is stored.
    async fn write(
        &self,
        staged: &mut HashMap<(SeriesKey, UnixNanos), Staged>,
        written: &mut HashMap<(SeriesKey, UnixNanos), u64>,
    ) {
        let rows: Vec<Partial> = staged
            .iter()
            .filter_map(|((key, start), s)| {
                Some(Partial {
                    contract: self.contracts.get(key.contract as usize)?.clone(),
                    subject: key.subject.clone(),
                    window_start: *start,
                    accum: s.accum.clone(),
                })
            })
            .collect();
        self.until_stored("write window partials", || {
            self.member.store.upsert_partials(
                &self.pipeline,
                (self.member.instance(), &self.member.incarnation),
                self.clock.now(),
                &rows,
            )
        })
        .await;
        for (k, s) in staged.drain() {
            if s.closed {
                written.remove(&k);
            } else {
                written.insert(k, fingerprint(&s.accum));
            }
        }
        self.member.pending.store(0, Ordering::Relaxed);
    }
}
