//! Writing a batch of [`Commit`]s in one transaction with few statements.
//!
//! A window of 10,000 series is one batch of 10,000 commits. Written a
//! statement per row, it cost about 30,000 round trips to the database
//! inside the judging transaction — seconds on PostgreSQL, where each
//! statement crosses a socket. Each table's rows are therefore written as
//! multi-row statements of at most [`ROWS_PER_STATEMENT`] rows, in the
//! batch's order.
//!
//! An upsert statement may not touch one row twice (PostgreSQL refuses
//! `ON CONFLICT DO UPDATE` on a row the same statement inserted), so a
//! statement ends before a key that it already holds: a batch that
//! updates one run twice writes it in two statements, in order, exactly as
//! row-by-row writing would.

use std::collections::HashSet;
use std::hash::Hash;
use std::time::{Duration, Instant};

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;

use super::sql::int;
use super::{change_body, codec, event_body, Commit, MAX_WINDOWS_PER_RUN};
use crate::model::{Rollout, RunRecord, UnixNanos, VerdictEvent, WindowRecord};

/// Rows per multi-row statement (a run row binds 21 parameters: 500 rows
/// stay well under SQLite's 32,766 and PostgreSQL's 65,535).
pub(super) const ROWS_PER_STATEMENT: usize = 500;

/// A window result is pruned to [`MAX_WINDOWS_PER_RUN`] once in this many
/// windows of a run (pruning is a range delete; doing it every window would
/// be wasted work).
const PRUNE_EVERY: u64 = 64;

/// Upserts rollouts (`#1` run id, `#2` exporter, `#3` state, `#4` time).
const UPSERT_ROLLOUTS: &str = "INSERT INTO rollouts (run_id, exporter, state, updated_at) \
    VALUES {rows} ON CONFLICT (run_id, exporter) DO UPDATE SET \
    state = excluded.state, updated_at = excluded.updated_at";

/// One rollout row of [`UPSERT_ROLLOUTS`].
const ROLLOUT_ROW: (&str, usize) = ("(#1, #2, #3, #4)", 4);

const UPSERT_RUNS: &str = "INSERT INTO runs (run_id, contract, contract_version, subject, \
    subject_attributes, state, reason, started_at, decided_at, superseded, pass_streak, \
    fail_streak, windows, cumulative, last_window_end, first_sample_at, updated_at, \
    latency_bound, evidence, counts_from, retired_at) VALUES {rows} \
    ON CONFLICT (run_id) DO UPDATE SET \
    state = CASE WHEN runs.state IN ('PROMOTED', 'ROLLED_BACK') THEN runs.state ELSE excluded.state END, \
    reason = CASE WHEN runs.state IN ('PROMOTED', 'ROLLED_BACK') THEN runs.reason ELSE excluded.reason END, \
    decided_at = CASE WHEN runs.state IN ('PROMOTED', 'ROLLED_BACK') THEN runs.decided_at ELSE excluded.decided_at END, \
    superseded = excluded.superseded, retired_at = excluded.retired_at, pass_streak = excluded.pass_streak, \
    fail_streak = excluded.fail_streak, windows = excluded.windows, \
    cumulative = excluded.cumulative, last_window_end = excluded.last_window_end, \
    first_sample_at = excluded.first_sample_at, updated_at = excluded.updated_at, \
    latency_bound = excluded.latency_bound, \
    evidence = CASE WHEN runs.state IN ('PROMOTED', 'ROLLED_BACK') THEN runs.evidence ELSE excluded.evidence END";

const RUN_ROW: (&str, usize) = (
    "(#1, #2, #3, #4, #5, #6, #7, #8, #9, #10, #11, #12, #13, #14, #15, #16, #17, #18, #19, #20, #21)",
    21,
);

const UPSERT_WINDOWS: &str = "INSERT INTO windows (run_id, window_start, window_end, result, \
    record) VALUES {rows} ON CONFLICT (run_id, window_start) DO UPDATE SET \
    window_end = excluded.window_end, result = excluded.result, record = excluded.record";

const WINDOW_ROW: (&str, usize) = ("(#1, #2, #3, #4, #5)", 5);

/// Keeps the newest [`MAX_WINDOWS_PER_RUN`] windows (`$1`) of the listed
/// runs, in one pass over their windows.
const PRUNE_WINDOWS: &str = "DELETE FROM windows WHERE (run_id, window_start) IN \
    (SELECT run_id, window_start FROM (SELECT run_id, window_start, ROW_NUMBER() OVER \
    (PARTITION BY run_id ORDER BY window_start DESC) AS n FROM windows WHERE run_id IN ({rows})) \
    AS ranked WHERE n > $1)";

const INSERT_TRANSITIONS: &str = "INSERT INTO transitions (event_id, run_id, previous_state, \
    state, reason, window_start, window_end, observed, emitted_at, event) VALUES {rows} \
    ON CONFLICT (event_id) DO NOTHING";

const TRANSITION_ROW: (&str, usize) = ("(#1, #2, #3, #4, #5, #6, #7, #8, #9, #10)", 10);

/// Outbox rows of transitions (no payload) and of flag changes (theirs).
const INSERT_OUTBOX: &str = "INSERT INTO outbox (event_id, exporter, state, attempts, \
    created_at, updated_at, next_attempt_at, last_error, payload) VALUES {rows} \
    ON CONFLICT (event_id, exporter) DO NOTHING";

const OUTBOX_ROW: (&str, usize) = ("(#1, #2, 'pending', 0, #3, #3, #3, NULL, #4)", 4);

/// `sql` with its `{rows}` replaced by `rows` copies of `row`, whose
/// `#1`…`#n` (n = `per_row`) are numbered on after the statement's first
/// `fixed` parameters.
pub(super) fn multi_row(
    sql: &str,
    (row, per_row): (&str, usize),
    rows: usize,
    fixed: usize,
) -> String {
    let mut list = String::with_capacity(rows * (row.len() + 16));
    for i in 0..rows {
        if i > 0 {
            list.push_str(", ");
        }
        let mut one = row.to_string();
        // Highest first: `#1` must not eat the start of `#12`.
        for k in (1..=per_row).rev() {
            one = one.replace(&format!("#{k}"), &format!("${}", fixed + i * per_row + k));
        }
        list.push_str(&one);
    }
    sql.replace("{rows}", &list)
}

/// `items` cut, in order, into runs of at most [`ROWS_PER_STATEMENT`]
/// whose keys are distinct.
pub(super) fn chunks<T, K: Eq + Hash>(items: &[T], key: impl Fn(&T) -> K) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        if i - start == ROWS_PER_STATEMENT || !seen.insert(key(item)) {
            out.push(&items[start..i]);
            start = i;
            seen.clear();
            seen.insert(key(item));
        }
    }
    if start < items.len() {
        out.push(&items[start..]);
    }
    out
}

/// A rollout as its row keeps it.
pub(super) fn rollout_text(r: &Rollout) -> String {
    serde_json::to_string(r).unwrap_or_default()
}

type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

/// Writes every run, window, transition and outbox row of `batch` in `tx`.
pub(super) async fn write_batch(
    tx: &mut sqlx::Transaction<'static, Any>,
    batch: &[Commit],
    now: UnixNanos,
) -> Result<(), sqlx::Error> {
    let now = int(now);
    let started = Instant::now();
    let mut db = Spent::default();
    let runs: Vec<&RunRecord> = batch.iter().map(|c| &c.run).collect();
    for chunk in chunks(&runs, |r| r.run_id.as_str()) {
        let sql = multi_row(UPSERT_RUNS, RUN_ROW, chunk.len(), 0);
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = bind_run(q, r, now);
        }
        db.execute(q, tx).await?;
    }

    let windows: Vec<(&str, &WindowRecord)> = batch
        .iter()
        .filter_map(|c| c.window.as_ref().map(|w| (c.run.run_id.as_str(), w)))
        .collect();
    for chunk in chunks(&windows, |(id, w)| (*id, w.window.start)) {
        let sql = multi_row(UPSERT_WINDOWS, WINDOW_ROW, chunk.len(), 0);
        let mut q = sqlx::query(&sql);
        for (run_id, w) in chunk {
            q = q
                .bind(*run_id)
                .bind(int(w.window.start))
                .bind(int(w.window.end))
                .bind(codec::verdict_name(w.result))
                .bind(codec::window_to_text(w));
        }
        db.execute(q, tx).await?;
    }
    let prune: Vec<&str> = windows
        .iter()
        .filter(|(_, w)| {
            let size = w.window.end.saturating_sub(w.window.start).max(1);
            (w.window.start / size).is_multiple_of(PRUNE_EVERY)
        })
        .map(|(id, _)| *id)
        .collect();
    for chunk in chunks(&prune, |id| *id) {
        let sql = multi_row(PRUNE_WINDOWS, ("#1", 1), chunk.len(), 1);
        let mut q = sqlx::query(&sql).bind(int(MAX_WINDOWS_PER_RUN as u64));
        for id in chunk {
            q = q.bind(*id);
        }
        db.execute(q, tx).await?;
    }

    let events: Vec<(&str, &VerdictEvent)> = batch
        .iter()
        .filter_map(|c| c.event.as_ref().map(|e| (c.run.run_id.as_str(), e)))
        .collect();
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let sql = multi_row(INSERT_TRANSITIONS, TRANSITION_ROW, chunk.len(), 0);
        let mut q = sqlx::query(&sql);
        for (run_id, e) in chunk {
            q = bind_transition(q, run_id, e);
        }
        db.execute(q, tx).await?;
    }

    // (event or change id, exporter, payload of a flag change)
    let mut outbox: Vec<(&str, &str, Option<String>)> = Vec::new();
    let mut rollouts: Vec<&Rollout> = Vec::new();
    for c in batch {
        if let Some(e) = &c.event {
            outbox.extend(
                c.outbox
                    .iter()
                    .map(|x| (e.event_id.as_str(), x.as_str(), None)),
            );
        }
        for rc in &c.rollouts {
            rollouts.push(&rc.rollout);
            if let Some(change) = &rc.change {
                outbox.push((
                    change.change_id.as_str(),
                    change.exporter.as_str(),
                    Some(change_body(change)),
                ));
            }
        }
    }
    for chunk in outbox.chunks(ROWS_PER_STATEMENT) {
        let sql = multi_row(INSERT_OUTBOX, OUTBOX_ROW, chunk.len(), 0);
        let mut q = sqlx::query(&sql);
        for (id, exporter, payload) in chunk {
            q = q
                .bind(*id)
                .bind(*exporter)
                .bind(now)
                .bind(payload.as_deref());
        }
        db.execute(q, tx).await?;
    }
    write_rollouts(tx, &rollouts, now).await?;
    // Where a large batch's time goes: encoding here, or the database.
    tracing::debug!(
        commits = batch.len(),
        statements = db.statements,
        total_ms = started.elapsed().as_millis() as u64,
        database_ms = db.waited.as_millis() as u64,
        "Batch written."
    );
    Ok(())
}

/// Statements run and the time spent waiting for the database.
#[derive(Default)]
struct Spent {
    statements: usize,
    waited: Duration,
}

impl Spent {
    async fn execute(
        &mut self,
        q: AnyQuery<'_>,
        tx: &mut sqlx::Transaction<'static, Any>,
    ) -> Result<(), sqlx::Error> {
        let at = Instant::now();
        q.execute(&mut **tx).await?;
        self.statements += 1;
        self.waited += at.elapsed();
        Ok(())
    }
}

/// Upserts `rollouts` in `tx`, at time `now`.
pub(super) async fn write_rollouts(
    tx: &mut sqlx::Transaction<'static, Any>,
    rollouts: &[&Rollout],
    now: i64,
) -> Result<(), sqlx::Error> {
    for chunk in chunks(rollouts, |r| (r.run_id.as_str(), r.exporter.as_str())) {
        let sql = multi_row(UPSERT_ROLLOUTS, ROLLOUT_ROW, chunk.len(), 0);
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(r.run_id.as_str())
                .bind(r.exporter.as_str())
                .bind(rollout_text(r))
                .bind(now);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

fn bind_run<'q>(q: AnyQuery<'q>, r: &'q RunRecord, now: i64) -> AnyQuery<'q> {
    q.bind(r.run_id.as_str())
        .bind(r.contract.as_str())
        .bind(i64::from(r.contract_version))
        .bind(r.subject.joined())
        .bind(codec::subject_to_text(&r.subject))
        .bind(r.state.as_str())
        .bind(r.reason.as_str())
        .bind(int(r.started_at))
        .bind(r.decided_at.map(int))
        .bind(i64::from(r.superseded))
        .bind(i64::from(r.pass_streak))
        .bind(i64::from(r.fail_streak))
        .bind(int(r.windows))
        .bind(codec::accum_to_text(&r.cumulative))
        .bind(r.last_window_end.map(int))
        .bind(r.first_sample_at.map(int))
        .bind(now)
        .bind(codec::bound_to_text(&r.latency_bound))
        .bind(codec::evidence_to_text(&r.evidence))
        .bind(r.counts_from.map(int))
        .bind(r.retired_at.map(int))
}

fn bind_transition<'q>(q: AnyQuery<'q>, run_id: &'q str, e: &'q VerdictEvent) -> AnyQuery<'q> {
    let (start, end) = e
        .window
        .as_ref()
        .map(|w| (Some(int(w.window.start)), Some(int(w.window.end))))
        .unwrap_or((None, None));
    q.bind(e.event_id.as_str())
        .bind(run_id)
        .bind(e.previous_state.as_str())
        .bind(e.run.state.as_str())
        .bind(e.run.reason.as_str())
        .bind(start)
        .bind(end)
        .bind(e.window.as_ref().map(codec::window_to_text))
        .bind(int(e.emitted_at))
        .bind(event_body(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_numbered_after_the_fixed_parameters() {
        assert_eq!(
            multi_row("X {rows} Y", ("(#1, 'a', #2, #1)", 2), 2, 1),
            "X ($2, 'a', $3, $2), ($4, 'a', $5, $4) Y"
        );
        let twelve = multi_row("{rows}", RUN_ROW, 1, 0);
        assert!(
            twelve.contains("$12,") && twelve.ends_with("$21)"),
            "{twelve}"
        );
    }

    #[test]
    fn a_statement_never_holds_a_key_twice() {
        let keys = [1, 2, 1, 3, 3];
        let cut: Vec<Vec<i32>> = chunks(&keys, |k| *k).iter().map(|c| c.to_vec()).collect();
        assert_eq!(cut, vec![vec![1, 2], vec![1, 3], vec![3]]);
        let many: Vec<usize> = (0..1200).collect();
        let sizes: Vec<usize> = chunks(&many, |k| *k).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![500, 500, 200]);
        assert!(chunks(&[] as &[u8], |k| *k).is_empty());
    }
}
