//! What several instances on one PostgreSQL database share, beyond the
//! runs: each instance's partial window state per series, the mark of the
//! last window the leader judged (written with the judged window's results,
//! only by the instance that claimed it last), the instances' heartbeats,
//! and who delivers each exporter's outbox.
//!
//! **No deadlocks, no lost counts.** An instance writes its partials as
//! multi-row upserts of at most [`BATCH_ROWS`] rows, keys sorted, so two
//! writers that touch the same keys lock them in the same order and cannot
//! deadlock; a serialization failure or a deadlock that happens anyway
//! (a DBA's trigger, another tool) is retried. A partial is the instance's
//! *whole* accumulation of the window, replaced at each flush (never added
//! to), guarded by the flush's sequence number: retrying a write that did
//! commit changes nothing, and an older write cannot replace a newer one.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::{AnyConnection, Connection as _, Row};

use super::batch::{multi_row, write_batch};
use super::codec;
use super::postgres::is_retryable;
use super::sql::{int, uint, unavailable};
use super::{Commit, SqlStore, StoreError};
use crate::model::{Accum, Subject, UnixNanos};

/// How long an instance that stopped heartbeating without leaving (a
/// crash, a kill -9) stays listed by [`SqlStore::instances`].
pub const LISTED_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// An instance without a heartbeat for this long is dead: the API lists
/// it as gone, and the leader no longer waits for its partials.
pub const DEAD_AFTER: Duration = Duration::from_secs(5);

/// Every instance's liveness and partial writes of one pipeline, as the
/// leader reads them before judging a window.
#[derive(Debug, Default)]
pub struct Progress {
    /// The database's clock at the read.
    pub now: UnixNanos,
    /// Instance, last heartbeat (database clock), partials written through.
    pub instances: Vec<(String, UnixNanos, UnixNanos)>,
}

/// Rows per upsert statement.
pub const BATCH_ROWS: usize = 500;

/// Upserts partials: `$1` pipeline, `$2` instance, `$3` flush number.
const UPSERT_PARTIALS: &str = "INSERT INTO partials (pipeline, window_start, contract, subject, \
    instance, seq, samples, attributes, state) VALUES {rows} \
    ON CONFLICT (pipeline, window_start, contract, subject, instance) DO UPDATE SET \
    seq = excluded.seq, samples = excluded.samples, attributes = excluded.attributes, \
    state = excluded.state WHERE partials.seq <= excluded.seq";

/// One row of [`UPSERT_PARTIALS`] (window start, contract, subject,
/// attributes, samples, state).
const PARTIAL_ROW: (&str, usize) = ("($1, #1, #2, #3, $2, $3, #5, #4, #6)", 6);

/// Attempts of a batch that fails with a serialization failure or deadlock.
const RETRIES: u32 = 8;

/// One series' partial state of one window, as an instance writes it.
#[derive(Debug, Clone)]
pub struct Partial {
    /// Contract name.
    pub contract: String,
    /// The subject.
    pub subject: Subject,
    /// The window's start.
    pub window_start: UnixNanos,
    /// Everything the instance accumulated for it.
    pub accum: Accum,
}

/// A window's partials of every instance, merged per series.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    /// Contract name.
    pub contract: String,
    /// The subject.
    pub subject: Subject,
    /// The merged accumulation.
    pub accum: Accum,
}

/// The leader's claim on a pipeline's judging: only the latest claimant's
/// commits go through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Pipeline name.
    pub pipeline: String,
    /// This leadership, unique (`instance#incarnation#term`).
    pub leader: String,
}

/// One instance as its heartbeat says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Its name (`service.postgres.instance`).
    pub instance: String,
    /// Its API address.
    pub api: String,
    /// When it started.
    pub started_at: UnixNanos,
    /// Its last heartbeat (database clock).
    pub heartbeat_at: UnixNanos,
    /// The database's clock when this was read: what `heartbeat_at` is
    /// compared with.
    pub read_at: UnixNanos,
    /// Whether it said it leads.
    pub leader: bool,
    /// Partial rows it holds that are not written yet.
    pub partials_pending: u64,
    /// Partial rows it wrote after their window was judged.
    pub late_partials: u64,
}

/// The heartbeat an instance writes.
#[derive(Debug, Clone)]
pub struct Heartbeat<'a> {
    /// Its name.
    pub instance: &'a str,
    /// New at every start of the process.
    pub incarnation: &'a str,
    /// Its API address.
    pub api: &'a str,
    /// When it started.
    pub started_at: UnixNanos,
    /// Whether it leads.
    pub leader: bool,
    /// Partial rows not written yet.
    pub partials_pending: u64,
    /// The process's first heartbeat: it takes the instance's name over.
    pub first: bool,
}

/// What a leader's commit cleared from the partials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Judged {
    /// Partial rows of the windows judged by this commit.
    pub partials: u64,
    /// Late partial rows (of windows judged before), by writing instance.
    pub late: BTreeMap<String, u64>,
}

/// A pipeline's judging, as `GET /api/v1/cluster` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judging {
    /// Pipeline name.
    pub pipeline: String,
    /// The start of the last window judged, if any.
    pub judged: Option<UnixNanos>,
    /// Partial rows written and not judged yet.
    pub partials: u64,
    /// Partial rows that arrived after their window was judged.
    pub late_partials: u64,
}

/// Why a leader's commit did not go through.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// Another instance claimed the pipeline since: this one leads no more.
    #[error("another instance leads pipeline {0} now")]
    Fenced(String),
    /// The storage failed; the same commit may be retried.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SqlStore {
    /// Writes `rows` as instance `instance`'s partials of `pipeline`
    /// (flush number `seq`), in sorted batches of at most [`BATCH_ROWS`],
    /// each retried on serialization failures and deadlocks.
    ///
    /// Each batch is written only while `incarnation` is still the
    /// instance's (checked in the batch's transaction): a process deposed
    /// while frozen, whose name another process took since, gets
    /// [`StoreError::Superseded`] instead of overwriting that process's
    /// rows.
    pub async fn upsert_partials(
        &self,
        pipeline: &str,
        (instance, incarnation): (&str, &str),
        seq: u64,
        rows: &[Partial],
    ) -> Result<(), StoreError> {
        // Encoded once, sorted by the key's column order.
        let mut encoded: Vec<(i64, &str, &str, String, i64, String)> = rows
            .iter()
            .map(|p| {
                (
                    int(p.window_start),
                    p.contract.as_str(),
                    p.subject.joined(),
                    codec::subject_to_text(&p.subject),
                    int(p.accum.samples),
                    codec::accum_to_text(&p.accum),
                )
            })
            .collect();
        encoded.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        encoded.dedup_by(|later, first| (later.0, later.1, later.2) == (first.0, first.1, first.2));
        for chunk in encoded.chunks(BATCH_ROWS) {
            let sql = multi_row(UPSERT_PARTIALS, PARTIAL_ROW, chunk.len(), 3);
            let mut attempt = 0;
            loop {
                let mut q = sqlx::query(&sql)
                    .bind(pipeline)
                    .bind(instance)
                    .bind(int(seq));
                for (start, contract, subject, attributes, samples, state) in chunk {
                    q = q
                        .bind(*start)
                        .bind(*contract)
                        .bind(*subject)
                        .bind(attributes.as_str())
                        .bind(*samples)
                        .bind(state.as_str());
                }
                let written = async {
                    let mut tx = self.pool.begin().await?;
                    let holder: Option<String> = sqlx::query_scalar(
                        "SELECT incarnation FROM cluster_instances WHERE instance = $1",
                    )
                    .bind(instance)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if holder.as_deref().is_some_and(|h| h != incarnation) {
                        return Ok(false);
                    }
                    q.execute(&mut *tx).await?;
                    tx.commit().await?;
                    Ok::<bool, sqlx::Error>(true)
                }
                .await;
                match written {
                    Ok(true) => break,
                    Ok(false) => return Err(StoreError::Superseded(instance.to_string())),
                    Err(err) if is_retryable(&err) && attempt < RETRIES => {
                        attempt += 1;
                        tracing::debug!(error = %err, attempt, "Partials write retried.");
                        tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
                    }
                    Err(err) => return Err(unavailable(err)),
                }
            }
        }
        Ok(())
    }

    /// Every instance's partials of `pipeline`'s window at `window_start`,
    /// merged per series (sorted by contract and subject). A row that
    /// cannot be read is logged and left out.
    pub async fn merged_partials(
        &self,
        pipeline: &str,
        window_start: UnixNanos,
    ) -> Result<Vec<Merged>, StoreError> {
        let rows = sqlx::query(
            "SELECT contract, subject, attributes, state, instance, window_start FROM partials \
             WHERE pipeline = $1 AND window_start = $2 ORDER BY contract, subject, instance",
        )
        .bind(pipeline)
        .bind(int(window_start))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut merged: BTreeMap<(String, String), Merged> = BTreeMap::new();
        for (contract, subject, _, accum) in decode_rows(&rows) {
            match merged.entry((contract.clone(), subject.joined().to_string())) {
                std::collections::btree_map::Entry::Occupied(mut held) => {
                    held.get_mut().accum.merge(&accum)
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(Merged {
                        contract,
                        subject,
                        accum,
                    });
                }
            }
        }
        Ok(merged.into_values().collect())
    }

    /// Instance `instance`'s own partials of `pipeline` for windows that
    /// start at or after `from`: what it restores into its shards at start.
    pub async fn own_partials(
        &self,
        pipeline: &str,
        instance: &str,
        from: UnixNanos,
    ) -> Result<Vec<Partial>, StoreError> {
        let rows = sqlx::query(
            "SELECT contract, subject, attributes, state, window_start FROM partials \
             WHERE instance = $1 AND pipeline = $2 AND window_start >= $3",
        )
        .bind(instance)
        .bind(pipeline)
        .bind(int(from))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let starts: Vec<i64> = rows
            .iter()
            .map(|r| r.try_get::<i64, _>("window_start").unwrap_or(-1))
            .collect();
        Ok(rows
            .iter()
            .zip(starts)
            .filter(|(_, start)| *start >= 0)
            .filter_map(|(row, start)| {
                decode_rows(std::slice::from_ref(row))
                    .pop()
                    .map(|(contract, subject, _, accum)| Partial {
                        contract,
                        subject,
                        window_start: uint(start),
                        accum,
                    })
            })
            .collect())
    }

    /// The start of the oldest window of `pipeline` after `after` that has
    /// partials, if any.
    pub async fn next_partial_window(
        &self,
        pipeline: &str,
        after: UnixNanos,
    ) -> Result<Option<UnixNanos>, StoreError> {
        let row = sqlx::query(
            "SELECT MIN(window_start) AS w FROM partials WHERE pipeline = $1 AND window_start > $2",
        )
        .bind(pipeline)
        .bind(int(after))
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(row
            .try_get::<Option<i64>, _>("w")
            .map_err(unavailable)?
            .map(uint))
    }

    /// Claims `pipeline`'s judging for `claim`: from now on only its
    /// commits go through. Returns the start of the last window judged
    /// (`initial` for a pipeline never judged: it is recorded as judged).
    pub async fn claim(
        &self,
        claim: &Claim,
        initial: UnixNanos,
        now: UnixNanos,
    ) -> Result<UnixNanos, StoreError> {
        let row = sqlx::query(
            "INSERT INTO cluster_judged (pipeline, window_start, leader, judged_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (pipeline) DO UPDATE SET leader = excluded.leader \
             RETURNING window_start",
        )
        .bind(claim.pipeline.as_str())
        .bind(int(initial))
        .bind(claim.leader.as_str())
        .bind(int(now))
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(uint(
            row.try_get::<i64, _>("window_start").map_err(unavailable)?,
        ))
    }

    /// Commits `batch` as `claim`'s, moving the pipeline's judged mark to
    /// `judged` (unchanged for a batch that judged no window) and deleting
    /// the partials of the windows judged. Fails with
    /// [`JudgeError::Fenced`], writing nothing, when another instance
    /// claimed the pipeline since.
    ///
    /// Partials of windows judged by an earlier commit were written after
    /// their window's judgment (the previous commit deleted every one
    /// there was): they are *late*, counted in no verdict. They are deleted
    /// too, and counted on the pipeline and on the instance that wrote
    /// them, in the same transaction. (A partial that lands between the
    /// leader's read of a window and this commit — milliseconds, and only
    /// from an instance the leader stopped waiting for — is deleted with
    /// the window uncounted.)
    pub async fn commit_judged(
        &self,
        batch: &[Commit],
        claim: &Claim,
        judged: UnixNanos,
        now: UnixNanos,
    ) -> Result<Judged, JudgeError> {
        let fail = |e: sqlx::Error| JudgeError::Store(unavailable(e));
        let mut tx = self.pool.begin().await.map_err(fail)?;
        // The mark as it stands: only this claim moves it, and a claim
        // taken in between makes the update below find no row.
        let before = sqlx::query(
            "SELECT window_start FROM cluster_judged WHERE pipeline = $1 AND leader = $2",
        )
        .bind(claim.pipeline.as_str())
        .bind(claim.leader.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(fail)?;
        let Some(before) = before else {
            return Err(JudgeError::Fenced(claim.pipeline.clone()));
        };
        let before: i64 = before.try_get("window_start").map_err(fail)?;
        let marked = sqlx::query(
            "UPDATE cluster_judged SET window_start = $1, judged_at = $2 \
             WHERE pipeline = $3 AND leader = $4 AND window_start <= $1",
        )
        .bind(int(judged))
        .bind(int(now))
        .bind(claim.pipeline.as_str())
        .bind(claim.leader.as_str())
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        if marked.rows_affected() != 1 {
            return Err(JudgeError::Fenced(claim.pipeline.clone()));
        }
        write_batch(&mut tx, batch, now).await.map_err(fail)?;
        let late_rows = sqlx::query(
            "DELETE FROM partials WHERE pipeline = $1 AND window_start <= $2 RETURNING instance",
        )
        .bind(claim.pipeline.as_str())
        .bind(before)
        .fetch_all(&mut *tx)
        .await
        .map_err(fail)?;
        let mut late: BTreeMap<String, u64> = BTreeMap::new();
        for row in &late_rows {
            let instance: String = row.try_get("instance").map_err(fail)?;
            *late.entry(instance).or_default() += 1;
        }
        if !late.is_empty() {
            sqlx::query(
                "UPDATE cluster_judged SET late_partials = late_partials + $1 WHERE pipeline = $2",
            )
            .bind(int(late_rows.len() as u64))
            .bind(claim.pipeline.as_str())
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
            for (instance, n) in &late {
                sqlx::query(
                    "UPDATE cluster_instances SET late_partials = late_partials + $1 \
                     WHERE instance = $2",
                )
                .bind(int(*n))
                .bind(instance.as_str())
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            }
        }
        let gone = sqlx::query("DELETE FROM partials WHERE pipeline = $1 AND window_start <= $2")
            .bind(claim.pipeline.as_str())
            .bind(int(judged))
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(Judged {
            partials: gone.rows_affected(),
            late,
        })
    }

    /// Records that instance `instance` has written every partial of
    /// `pipeline` of windows whose close deadline is at or before
    /// `through`; only forward, unless `restart` (a process that starts
    /// under the name holds nothing of the windows closed before).
    pub async fn set_progress(
        &self,
        pipeline: &str,
        instance: &str,
        through: UnixNanos,
        restart: bool,
    ) -> Result<(), StoreError> {
        let sql = if restart {
            "INSERT INTO cluster_progress (pipeline, instance, written_through) VALUES ($1, $2, $3) \
             ON CONFLICT (pipeline, instance) DO UPDATE SET written_through = excluded.written_through"
        } else {
            "INSERT INTO cluster_progress (pipeline, instance, written_through) VALUES ($1, $2, $3) \
             ON CONFLICT (pipeline, instance) DO UPDATE SET written_through = excluded.written_through \
             WHERE cluster_progress.written_through < excluded.written_through"
        };
        sqlx::query(sql)
            .bind(pipeline)
            .bind(instance)
            .bind(int(through))
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Every instance's last heartbeat and how far it has written
    /// `pipeline`'s partials (0: not at all), by instance, with the
    /// database's clock when it was read: heartbeats are written with that
    /// clock, so liveness never depends on the instances' own clocks.
    pub async fn progress(&self, pipeline: &str) -> Result<Progress, StoreError> {
        let rows = sqlx::query(
            "SELECT i.instance AS instance, i.heartbeat_at AS heartbeat_at, \
             COALESCE(p.written_through, 0) AS through, \
             CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000 AS BIGINT) AS db_now \
             FROM cluster_instances i \
             LEFT JOIN cluster_progress p ON p.instance = i.instance AND p.pipeline = $1 \
             ORDER BY i.instance",
        )
        .bind(pipeline)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut progress = Progress::default();
        for r in &rows {
            progress.now = uint(r.try_get("db_now").map_err(unavailable)?);
            progress.instances.push((
                r.try_get("instance").map_err(unavailable)?,
                uint(r.try_get("heartbeat_at").map_err(unavailable)?),
                uint(r.try_get("through").map_err(unavailable)?),
            ));
        }
        Ok(progress)
    }

    /// Writes an instance's heartbeat, stamped with the database's clock
    /// (one clock for every instance's liveness); returns that stamp.
    ///
    /// A process's first heartbeat (it holds the name's session lock) makes
    /// its incarnation the instance's; a later one is written only while it
    /// still is, and is refused with [`StoreError::Superseded`] once another
    /// process took the name (this one was deposed while frozen).
    pub async fn heartbeat(&self, beat: &Heartbeat<'_>) -> Result<UnixNanos, StoreError> {
        let row = sqlx::query(
            "INSERT INTO cluster_instances (instance, incarnation, api, started_at, heartbeat_at, \
             leader, partials_pending) VALUES ($1, $2, $3, $4, \
             CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000 AS BIGINT), $5, $6) \
             ON CONFLICT (instance) DO UPDATE SET incarnation = excluded.incarnation, \
             api = excluded.api, started_at = excluded.started_at, \
             heartbeat_at = excluded.heartbeat_at, leader = excluded.leader, \
             partials_pending = excluded.partials_pending \
             WHERE $7 OR cluster_instances.incarnation = excluded.incarnation \
             RETURNING heartbeat_at",
        )
        .bind(beat.instance)
        .bind(beat.incarnation)
        .bind(beat.api)
        .bind(int(beat.started_at))
        .bind(i64::from(beat.leader))
        .bind(int(beat.partials_pending))
        .bind(beat.first)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        let Some(row) = row else {
            return Err(StoreError::Superseded(beat.instance.to_string()));
        };
        Ok(uint(row.try_get("heartbeat_at").map_err(unavailable)?))
    }

    /// An instance leaves on a graceful stop (after its last partials):
    /// it is no longer listed nor waited for. Only its own incarnation's
    /// row goes, so a process that took the name since keeps it.
    pub async fn leave(&self, instance: &str, incarnation: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM cluster_instances WHERE instance = $1 AND incarnation = $2")
            .bind(instance)
            .bind(incarnation)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Every instance that wrote a heartbeat within [`LISTED_FOR`] and has
    /// not left, by name: one that crashed stays listed (not alive) for a
    /// day, so that it can be seen and restarted, and is forgotten after.
    pub async fn instances(&self) -> Result<Vec<Instance>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance, api, started_at, heartbeat_at, leader, partials_pending, \
             late_partials, CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000 AS BIGINT) \
             AS db_now FROM cluster_instances \
             WHERE heartbeat_at > CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000 AS BIGINT) - $1 \
             ORDER BY instance",
        )
        .bind(int(crate::model::nanos(LISTED_FOR)))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                Ok(Instance {
                    instance: r.try_get("instance").map_err(unavailable)?,
                    api: r.try_get("api").map_err(unavailable)?,
                    started_at: uint(r.try_get("started_at").map_err(unavailable)?),
                    heartbeat_at: uint(r.try_get("heartbeat_at").map_err(unavailable)?),
                    read_at: uint(r.try_get("db_now").map_err(unavailable)?),
                    leader: r.try_get::<i64, _>("leader").map_err(unavailable)? != 0,
                    partials_pending: uint(r.try_get("partials_pending").map_err(unavailable)?),
                    late_partials: uint(r.try_get("late_partials").map_err(unavailable)?),
                })
            })
            .collect()
    }

    /// Per pipeline: the last judged window's start, the partial rows
    /// written and not judged yet, and the late ones counted so far.
    pub async fn judging(&self) -> Result<Vec<Judging>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.pipeline AS pipeline, j.window_start AS judged, \
             COALESCE(j.late_partials, 0) AS late, \
             (SELECT COUNT(*) FROM partials x WHERE x.pipeline = p.pipeline) AS partials \
             FROM (SELECT pipeline FROM cluster_judged UNION SELECT DISTINCT pipeline FROM partials) p \
             LEFT JOIN cluster_judged j ON j.pipeline = p.pipeline ORDER BY p.pipeline",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(|r| {
                Ok(Judging {
                    pipeline: r.try_get("pipeline").map_err(unavailable)?,
                    judged: r
                        .try_get::<Option<i64>, _>("judged")
                        .map_err(unavailable)?
                        .map(uint),
                    partials: uint(r.try_get("partials").map_err(unavailable)?),
                    late_partials: uint(r.try_get("late").map_err(unavailable)?),
                })
            })
            .collect()
    }

    /// The judged configuration of `pipeline` the running cluster uses, as
    /// (judged, versions, instance that wrote it). When none is stored or
    /// no other instance is there — none heartbeats and none holds a
    /// session on the database (a cluster started afresh, possibly with a
    /// new pipeline file) — `ours` is stored and `None` returned.
    pub async fn pipeline_config(
        &self,
        pipeline: &str,
        instance: &str,
        [judged, versions]: [&str; 2],
    ) -> Result<Option<(String, String, String)>, StoreError> {
        let stored = sqlx::query(
            "SELECT judged, versions, instance FROM cluster_config WHERE pipeline = $1",
        )
        .bind(pipeline)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        // Another instance is there while it heartbeats, or while it holds
        // a session on this database at all: one frozen, or waiting out a
        // database stall, has not left the cluster, and must not find its
        // configuration replaced when it resumes.
        let others: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM cluster_instances i WHERE i.instance <> $1 AND \
             (i.heartbeat_at > CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000 AS BIGINT) - $2 \
             OR EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = current_database() \
             AND a.application_name = 'verdict ' || i.instance))",
        )
        .bind(instance)
        .bind(int(crate::model::nanos(DEAD_AFTER)))
        .fetch_one(&self.pool)
        .await
        .and_then(|r| r.try_get("n"))
        .map_err(unavailable)?;
        if let (Some(row), true) = (stored, others > 0) {
            return Ok(Some((
                row.try_get("judged").map_err(unavailable)?,
                row.try_get("versions").map_err(unavailable)?,
                row.try_get("instance").map_err(unavailable)?,
            )));
        }
        sqlx::query(
            "INSERT INTO cluster_config (pipeline, judged, versions, instance) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (pipeline) DO UPDATE SET judged = excluded.judged, \
             versions = excluded.versions, instance = excluded.instance",
        )
        .bind(pipeline)
        .bind(judged)
        .bind(versions)
        .bind(instance)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(None)
    }

    /// Gives up `instance`'s outbox lease of `exporter` (a graceful stop).
    pub async fn release_outbox(&self, exporter: &str, instance: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM outbox_leases WHERE exporter = $1 AND instance = $2")
            .bind(exporter)
            .bind(instance)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Takes or renews `exporter`'s outbox lease for `instance` for `term`
    /// (ns); `false` while another instance's lease runs.
    ///
    /// The lease runs on PostgreSQL's clock, like the heartbeats: instances
    /// whose clocks disagree still agree on when a lease lapses, so a
    /// holder's lease is never taken early by an instance whose clock runs
    /// ahead.
    ///
    /// With `only_unbroken`, the lease is only extended if `instance` has
    /// held it without a break (still its holder and not lapsed now): a
    /// lease that lapsed may have been taken, and the rows read under it
    /// delivered, by another instance meanwhile, so the holder's batch is
    /// stale and it must read the outbox again under a fresh lease.
    pub async fn lease_outbox(
        &self,
        exporter: &str,
        instance: &str,
        term: u64,
        only_unbroken: bool,
    ) -> Result<bool, StoreError> {
        let sql = if only_unbroken {
            "UPDATE outbox_leases SET until = \
             CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000 AS BIGINT) + $3 \
             WHERE exporter = $1 AND instance = $2 \
             AND until >= CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000 AS BIGINT)"
        } else {
            "INSERT INTO outbox_leases (exporter, instance, until) VALUES ($1, $2, \
             CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000 AS BIGINT) + $3) \
             ON CONFLICT (exporter) DO UPDATE SET instance = excluded.instance, until = excluded.until \
             WHERE outbox_leases.instance = excluded.instance \
             OR outbox_leases.until < CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000 AS BIGINT)"
        };
        let done = sqlx::query(sql)
            .bind(exporter)
            .bind(instance)
            .bind(int(term))
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }
}

/// The contract, subject, joined subject and accumulation of partial rows
/// (`contract`, `subject`, `attributes`, `state` columns); unreadable rows
/// are logged and left out.
fn decode_rows(rows: &[sqlx::any::AnyRow]) -> Vec<(String, Subject, String, Accum)> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let read = || -> Result<(String, Subject, String, Accum), String> {
            let text = |name: &str| row.try_get::<String, _>(name).map_err(|e| e.to_string());
            let (contract, key) = (text("contract")?, text("subject")?);
            let attributes = text("attributes")?;
            let state = text("state")?;
            let subject = codec::subject_from_text(&attributes)
                .ok()
                .filter(|s| s.joined() == key)
                .unwrap_or_else(|| codec::subject_from_key(&key));
            let accum = codec::accum_from_text(&state).map_err(|e| e.to_string())?;
            possible(&accum)?;
            Ok((contract, subject, key, accum))
        };
        match read() {
            Ok(r) => out.push(r),
            Err(error) => {
                let instance = row.try_get::<String, _>("instance").unwrap_or_default();
                let subject = row.try_get::<String, _>("subject").unwrap_or_default();
                let window = row.try_get::<i64, _>("window_start").unwrap_or(-1);
                tracing::error!(%error, %instance, %subject, window, "Stored window partial unreadable; it is left out.")
            }
        }
    }
    out
}

/// Largest count a partial may hold: far above any real window, and below
/// 2^53, where counts stop being exact as the floating-point numbers that
/// rates and the API use.
const MAX_COUNT: u64 = 1 << 50;

/// Whether a partial that parsed could have been written by an instance:
/// partials are input to the leader like any other, and an impossible one
/// (more errors than requests, a sketch holding more values than the
/// requests counted, astronomic counts) would decide runs.
fn possible(accum: &Accum) -> Result<(), String> {
    let counts = [
        ("samples", accum.samples),
        ("errors", accum.errors),
        ("conversions", accum.conversions),
        ("latency values", accum.latency.count()),
    ];
    if let Some((name, n)) = counts.iter().find(|(_, n)| *n >= MAX_COUNT) {
        return Err(format!("{name} {n} is not a possible count"));
    }
    if accum.errors > accum.samples {
        return Err(format!(
            "errors {} exceed samples {}",
            accum.errors, accum.samples
        ));
    }
    // Conversions may come from a metric of their own, so they are not
    // bounded by the requests; latency values are (one per request at most).
    if accum.latency.count() > accum.samples {
        return Err(format!(
            "latency sketch holds {} values but samples are {}",
            accum.latency.count(),
            accum.samples
        ));
    }
    Ok(())
}

/// An instance's own connection to PostgreSQL, holding session-level
/// advisory locks: its name's (so two live processes never share a name)
/// and, while it leads, the leader's. Both go when the process or the
/// connection dies, and only then: a restarted instance takes its name back
/// at once, a live one keeps it.
#[derive(Debug)]
pub struct Session {
    conn: AnyConnection,
}

/// The lock key space of instance names (the other key is the name's hash).
const NAME_LOCKS: i32 = 0x7672;

impl Session {
    /// Connects to `url` and takes the lock of name `instance`; `Ok(None)`
    /// when another session holds it.
    pub async fn open(url: &str, instance: &str) -> Result<Option<Session>, StoreError> {
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect(url).await.map_err(unavailable)?;
        let got: bool = sqlx::query("SELECT pg_try_advisory_lock($1, hashtext($2)) AS got")
            .bind(NAME_LOCKS)
            .bind(instance)
            .fetch_one(&mut conn)
            .await
            .and_then(|row| row.try_get("got"))
            .map_err(unavailable)?;
        if got {
            Ok(Some(Session { conn }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// Tries the leader's lock once (held already: `true`).
    pub async fn try_lead(&mut self) -> Result<bool, StoreError> {
        sqlx::query("SELECT pg_try_advisory_lock($1) AS got")
            .bind(super::postgres::LEADER_LOCK)
            .fetch_one(&mut self.conn)
            .await
            .and_then(|row| row.try_get("got"))
            .map_err(unavailable)
    }

    /// Ends the PostgreSQL session holding the leader's lock when its
    /// instance has not heartbeat for `stale` (database clock), counting
    /// silence from no earlier than `since` — when the caller last found
    /// the database writable, so a stall that held every heartbeat back
    /// deposes no one. A frozen leader (a paused VM, SIGSTOP) keeps its
    /// session, and with it the lock, for as long as it is frozen; ending
    /// the session frees the lock, and the claim fencing keeps whatever the
    /// old leader commits after it resumes out. Returns the instances
    /// deposed.
    pub async fn depose(
        &mut self,
        stale: std::time::Duration,
        since: UnixNanos,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT i.instance AS instance, pg_terminate_backend(l.pid) AS ended \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             JOIN cluster_instances i ON a.application_name = 'verdict ' || i.instance \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 \
             AND l.pid <> pg_backend_pid() \
             AND GREATEST(i.heartbeat_at, $2) < \
                 CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000 AS BIGINT) - $3",
        )
        .bind(super::postgres::LEADER_LOCK)
        .bind(int(since))
        .bind(int(crate::model::nanos(stale)))
        .fetch_all(&mut self.conn)
        .await
        .map_err(unavailable)?;
        let mut deposed = Vec::new();
        for r in &rows {
            if r.try_get::<bool, _>("ended").map_err(unavailable)? {
                deposed.push(r.try_get("instance").map_err(unavailable)?);
            }
        }
        Ok(deposed)
    }

    /// Whether the session (and so its locks) is still there.
    pub async fn alive(&mut self) -> bool {
        sqlx::query("SELECT 1 AS alive")
            .fetch_one(&mut self.conn)
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::{spec, TestDatabase};
    use rand::seq::SliceRandom;
    use std::sync::Arc;

    fn subject(i: usize) -> Subject {
        Subject::new(vec![("service.version".into(), format!("v{i}"))])
    }

    fn partial(subject_index: usize, window: u64, samples: u64) -> Partial {
        let accum = Accum {
            samples,
            errors: samples / 2,
            ..Accum::default()
        };
        Partial {
            contract: "checkout".into(),
            subject: subject(subject_index),
            window_start: window * 1_000,
            accum,
        }
    }

    /// Four writers, two per instance name, upsert the same 1,200 keys
    /// (three batches of 500 or fewer each) in their own random orders,
    /// five rounds each, all at once: no deadlock or serialization error
    /// reaches them, and what stays is, per key and instance, the newest
    /// round's state, so the merged counts are exact.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_on_the_same_keys_neither_deadlock_nor_lose_counts() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let store = Arc::new(
            SqlStore::open_postgres(&spec(&db.url, "t"))
                .await
                .expect("opens"),
        );
        const SUBJECTS: usize = 40;
        const WINDOWS: u64 = 30;
        let writers: Vec<_> = (0..4u64)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let instance = format!("i{}", w % 2);
                    for round in 1..=5u64 {
                        // The same keys, every writer its own order; the
                        // newest round (highest seq) of an instance wins.
                        let seq = round * 10 + w;
                        let mut rows: Vec<Partial> = (0..SUBJECTS)
                            .flat_map(|s| (0..WINDOWS).map(move |win| partial(s, win, seq)))
                            .collect();
                        rows.shuffle(&mut rand::rng());
                        store
                            .upsert_partials("p", (&instance, "1"), seq, &rows)
                            .await
                            .expect("no error reaches the writer");
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.expect("writer");
        }
        // Instance i0's last round was seq 52 (writer 2), i1's 53 (writer 3).
        for win in 0..WINDOWS {
            let merged = store
                .merged_partials("p", win * 1_000)
                .await
                .expect("reads");
            assert_eq!(merged.len(), SUBJECTS);
            for m in merged {
                assert_eq!(m.accum.samples, 52 + 53, "{} window {win}", m.subject);
                assert_eq!(m.accum.errors, 26 + 26);
            }
        }
        // An older write that arrives late (a retry) replaces nothing.
        store
            .upsert_partials("p", ("i0", "1"), 11, &[partial(0, 0, 1)])
            .await
            .expect("writes");
        let first = store.merged_partials("p", 0).await.expect("reads");
        assert_eq!(first[0].accum.samples, 105);
    }

    /// A real deadlock (two transactions locking two rows in opposite
    /// orders) is recognised as one to retry, and so is a serialization
    /// failure; other errors are not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deadlocks_are_recognised_for_retry() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let store = SqlStore::open_postgres(&spec(&db.url, "t"))
            .await
            .expect("opens");
        for key in ["a", "b"] {
            sqlx::query("INSERT INTO verdict_meta (key, value) VALUES ($1, '0')")
                .bind(key)
                .execute(&store.pool)
                .await
                .expect("inserts");
        }
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let lockers: Vec<_> = [("a", "b"), ("b", "a")]
            .into_iter()
            .map(|(first, second)| {
                let pool = store.pool.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    let mut tx = pool.begin().await.expect("begins");
                    let update = "UPDATE verdict_meta SET value = '1' WHERE key = $1";
                    sqlx::query(update).bind(first).execute(&mut *tx).await?;
                    barrier.wait().await;
                    sqlx::query(update).bind(second).execute(&mut *tx).await?;
                    tx.commit().await
                })
            })
            .collect();
        let mut errors = Vec::new();
        for l in lockers {
            if let Err(e) = l.await.expect("joins") {
                errors.push(e);
            }
        }
        assert_eq!(errors.len(), 1, "one of the two is chosen as the victim");
        assert!(is_retryable(&errors[0]), "{}", errors[0]);
        let other = sqlx::query("SELECT * FROM no_such_table")
            .execute(&store.pool)
            .await
            .expect_err("fails");
        assert!(!is_retryable(&other));
    }

    /// A process's first heartbeat takes its instance's name over; the
    /// process it replaced (deposed while frozen) then has its heartbeats
    /// and its partials refused as superseded, while the new one writes.
    #[tokio::test]
    async fn a_superseded_process_writes_nothing_more() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let store = SqlStore::open_postgres(&spec(&db.url, "t"))
            .await
            .expect("opens");
        let beat = |incarnation, first| Heartbeat {
            instance: "a",
            incarnation,
            api: "127.0.0.1:1",
            started_at: 1,
            leader: false,
            partials_pending: 0,
            first,
        };
        store.heartbeat(&beat("old", true)).await.expect("joins");
        store.heartbeat(&beat("old", false)).await.expect("beats");
        store
            .upsert_partials("p", ("a", "old"), 1, &[partial(0, 2, 7)])
            .await
            .expect("writes");
        store
            .heartbeat(&beat("new", true))
            .await
            .expect("takes the name");
        assert!(matches!(
            store.heartbeat(&beat("old", false)).await,
            Err(StoreError::Superseded(_))
        ));
        assert!(matches!(
            store
                .upsert_partials("p", ("a", "old"), 9, &[partial(0, 2, 100)])
                .await,
            Err(StoreError::Superseded(_))
        ));
        store.heartbeat(&beat("new", false)).await.expect("beats");
        store
            .upsert_partials("p", ("a", "new"), 2, &[partial(0, 2, 9)])
            .await
            .expect("writes");
        let merged = store.merged_partials("p", 2_000).await.expect("reads");
        assert_eq!(merged[0].accum.samples, 9, "{merged:?}");
    }

    /// An outbox lease is one instance's while it runs on PostgreSQL's
    /// clock, whatever the instances' clocks say: another instance takes it
    /// only once it lapsed there, and a holder whose lease lapsed cannot
    /// merely renew it (its batch may have been delivered meanwhile).
    #[tokio::test]
    async fn an_outbox_lease_runs_on_the_databases_clock() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let store = SqlStore::open_postgres(&spec(&db.url, "t"))
            .await
            .expect("opens");
        let long = 60_000_000_000;
        assert!(store
            .lease_outbox("hook", "a", long, false)
            .await
            .expect("leases"));
        assert!(!store
            .lease_outbox("hook", "b", long, false)
            .await
            .expect("asks"));
        assert!(store
            .lease_outbox("hook", "a", long, true)
            .await
            .expect("renews"));
        assert!(
            !store
                .lease_outbox("other", "b", long, true)
                .await
                .expect("asks"),
            "never held"
        );
        assert!(store
            .lease_outbox("other", "b", long, false)
            .await
            .expect("leases"));
        // A lease of 50 ms lapses 50 ms later on the database's clock.
        assert!(store
            .lease_outbox("hook", "a", 50_000_000, false)
            .await
            .expect("renews"));
        assert!(!store
            .lease_outbox("hook", "b", long, false)
            .await
            .expect("asks"));
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        assert!(
            !store
                .lease_outbox("hook", "a", long, true)
                .await
                .expect("asks"),
            "lapsed"
        );
        assert!(store
            .lease_outbox("hook", "b", long, false)
            .await
            .expect("takes it"));
        assert!(!store
            .lease_outbox("hook", "a", long, false)
            .await
            .expect("asks"));
    }

    /// Only the latest claim commits: a leader whose claim was taken
    /// writes nothing, and the judged mark never moves back.
    #[tokio::test]
    async fn a_taken_claim_commits_nothing() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let store = SqlStore::open_postgres(&spec(&db.url, "t"))
            .await
            .expect("opens");
        let old = Claim {
            pipeline: "p".into(),
            leader: "a#1#1".into(),
        };
        let new = Claim {
            pipeline: "p".into(),
            leader: "b#1#1".into(),
        };
        assert_eq!(store.claim(&old, 1_000, 5).await.expect("claims"), 1_000);
        store
            .upsert_partials("p", ("a", "1"), 1, &[partial(0, 2, 7), partial(0, 3, 7)])
            .await
            .expect("writes");
        assert_eq!(
            store
                .commit_judged(&[], &old, 2_000, 6)
                .await
                .expect("commits")
                .partials,
            1
        );
        assert_eq!(store.claim(&new, 0, 7).await.expect("claims"), 2_000);
        assert!(matches!(
            store.commit_judged(&[], &old, 3_000, 8).await,
            Err(JudgeError::Fenced(_))
        ));
        assert_eq!(
            store
                .merged_partials("p", 3_000)
                .await
                .expect("reads")
                .len(),
            1
        );
        assert!(matches!(
            store.commit_judged(&[], &new, 1_000, 8).await,
            Err(JudgeError::Fenced(_))
        ));
        assert_eq!(
            store
                .commit_judged(&[], &new, 3_000, 9)
                .await
                .expect("commits"),
            Judged {
                partials: 1,
                late: BTreeMap::new()
            }
        );
    }

    /// Partials that parse but no instance could have written (more
    /// errors than requests, a sketch with more values than requests,
    /// counts near 2^53) are left out of the merge; their neighbours are
    /// merged.
    #[tokio::test]
    async fn impossible_partials_are_left_out() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let store = SqlStore::open_postgres(&spec(&db.url, "t"))
            .await
            .expect("opens");
        let mut sketchy = Accum {
            samples: 1,
            ..Accum::default()
        };
        for _ in 0..3 {
            let _ = sketchy.latency.insert(5.0);
        }
        let impossible = [
            Accum {
                samples: 3,
                errors: 5,
                ..Accum::default()
            },
            Accum {
                samples: 1 << 60,
                ..Accum::default()
            },
            sketchy,
        ];
        let mut rows = vec![partial(0, 2, 7)];
        for (i, accum) in impossible.into_iter().enumerate() {
            rows.push(Partial {
                accum,
                ..partial(i + 1, 2, 0)
            });
        }
        store
            .upsert_partials("p", ("evil", "1"), 1, &rows)
            .await
            .expect("writes");
        let merged = store.merged_partials("p", 2_000).await.expect("reads");
        let kept: Vec<(String, u64)> = merged
            .iter()
            .map(|m| (m.subject.joined().to_string(), m.accum.samples))
            .collect();
        assert_eq!(kept, [(subject(0).joined().to_string(), 7)]);
    }

    /// Partials written after their window was judged are late: the next
    /// commit deletes them and counts them, on the pipeline and on the
    /// instance that wrote them; partials of windows not judged yet stay.
    #[tokio::test]
    async fn partials_written_after_judgment_are_counted_late() {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let store = SqlStore::open_postgres(&spec(&db.url, "t"))
            .await
            .expect("opens");
        let claim = Claim {
            pipeline: "p".into(),
            leader: "a#1#1".into(),
        };
        store.claim(&claim, 1_000, 5).await.expect("claims");
        for name in ["a", "slow"] {
            let beat = Heartbeat {
                instance: name,
                incarnation: "1",
                api: "127.0.0.1:1",
                started_at: 1,
                leader: name == "a",
                partials_pending: 0,
                first: true,
            };
            store.heartbeat(&beat).await.expect("heartbeat");
        }
        store
            .upsert_partials("p", ("slow", "1"), 1, &[partial(0, 2, 7)])
            .await
            .expect("writes");
        let judged = store
            .commit_judged(&[], &claim, 2_000, 6)
            .await
            .expect("commits");
        assert_eq!((judged.partials, judged.late.len()), (1, 0));
        // The slow instance writes window 2 again, and window 3 in time.
        store
            .upsert_partials(
                "p",
                ("slow", "1"),
                2,
                &[partial(0, 2, 9), partial(1, 2, 9), partial(0, 3, 1)],
            )
            .await
            .expect("writes");
        let judged = store
            .commit_judged(&[], &claim, 2_000, 7)
            .await
            .expect("commits");
        assert_eq!(
            judged,
            Judged {
                partials: 0,
                late: BTreeMap::from([("slow".to_string(), 2)])
            }
        );
        let judging = store.judging().await.expect("reads");
        assert_eq!(judging.len(), 1);
        assert_eq!((judging[0].late_partials, judging[0].partials), (2, 1));
        let late: Vec<(String, u64)> = store
            .instances()
            .await
            .expect("reads")
            .into_iter()
            .map(|i| (i.instance, i.late_partials))
            .collect();
        assert_eq!(late, [("a".to_string(), 0), ("slow".to_string(), 2)]);
        assert_eq!(
            store
                .commit_judged(&[], &claim, 3_000, 8)
                .await
                .expect("commits"),
            Judged {
                partials: 1,
                late: BTreeMap::new()
            }
        );
    }
}
