//! [`SqlStore`]: runs, transitions, the outbox and checkpoints in a SQL
//! database through sqlx's `Any` driver.
//!
//! - **SQLite** is the default (`sqlite://data/verdict.db`): one file, WAL
//!   journal (readers never block the writer, a commit is one append), and
//!   SQLite's default `synchronous=FULL`, so a committed transition survives
//!   a `kill -9` and a power cut.
//! - **Portable SQL.** Every statement uses `$N` placeholders (SQLite reads
//!   them as numbered parameters), `ON CONFLICT … DO UPDATE` upserts and
//!   only TEXT/BIGINT columns, so a PostgreSQL backend is the same code behind
//!   a `postgres://` URL and sqlx's `postgres` feature.
//! - **Migrations** are the SQL files in `migrations/`, embedded with
//!   `include_str!` and applied at start, each in its own transaction, with
//!   the applied versions in `verdict_schema`. This is what sqlx's
//!   `migrate!` does, without the `macros` feature and its build-time cost.
//!
//! Every failure becomes a [`StoreError`] with the database's own message;
//! nothing here retries: the callers decide (the run task retries a batch
//! until it commits, and reports the outage through `/readyz`).

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::config::PostgresSpec;
use crate::model::UnixNanos;
use crate::model::{Rollout, RunRecord, RunState, WindowRecord};

use super::batch::{chunks, multi_row, write_batch, write_rollouts};
use super::codec;
use super::{Attempt, Commit, Delivery, DeliveryState, RunStore, StoreError, StoreFuture};

/// The schema, in order. A version is never edited once released: changes
/// are new files.
const MIGRATIONS: [(i64, &str); 8] = [
    (
        1,
        include_str!("migrations/0001_runs_outbox_checkpoints.sql"),
    ),
    (2, include_str!("migrations/0002_run_latency_bound.sql")),
    (3, include_str!("migrations/0003_run_evidence.sql")),
    (4, include_str!("migrations/0004_retired_index.sql")),
    (5, include_str!("migrations/0005_rollouts.sql")),
    (6, include_str!("migrations/0006_cluster.sql")),
    (7, include_str!("migrations/0007_late_partials.sql")),
    (8, include_str!("migrations/0008_cluster_config.sql")),
];

/// Connections in an SQLite pool: the run engines and delivery workers
/// write, the API and `/metrics` read; SQLite serialises writers anyway.
const SQLITE_CONNECTIONS: u32 = 4;

/// A SQL database behind the storage seam.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(super) pool: AnyPool,
}

pub(super) fn unavailable(err: sqlx::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

/// Nanoseconds and counts are stored as BIGINT (signed): times fit until 2262.
pub(super) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

const RUN_COLUMNS: &str =
    "run_id, contract, contract_version, subject, subject_attributes, state, \
    reason, started_at, decided_at, superseded, pass_streak, fail_streak, windows, cumulative, \
    last_window_end, first_sample_at, latency_bound, evidence, counts_from, retired_at";

/// A run as stored. What cannot be read is replaced by the safest value and
/// named in `unreadable`, so the run stays listed under its own key and no
/// second run starts for its subject:
/// - counts: empty (an undecided run is then abandoned, see the engine);
/// - subject attributes: the values from the subject key, without names
///   (the engine names them after the contract's `subject_by`);
/// - state: ROLLED_BACK. A release gate that cannot read its verdict must
///   not let the release promote, nor start judging it again as if nothing
///   had been decided; a reset through the API starts a new run.
///
/// Only a row whose identity (run id, contract, key) cannot be read is an
/// error, and the listings skip it.
fn run_from_row(row: &AnyRow) -> Result<RunRecord, StoreError> {
    let get_i = |name: &str| row.try_get::<i64, _>(name).map_err(unavailable);
    let get_s = |name: &str| row.try_get::<String, _>(name).map_err(unavailable);
    // Every other column: what cannot be read (NULL, text in a number
    // column, JSON that does not parse) is named in `unreadable` and
    // replaced by its safest value.
    let mut unreadable: Vec<String> = Vec::new();
    let mut counts_unreadable = false;
    let mut note = |name: &str, err: String, counts: bool, unreadable: &mut Vec<String>| {
        unreadable.push(format!("{name}: {err}"));
        counts_unreadable |= counts;
    };
    let text = |name: &str| row.try_get::<String, _>(name).map_err(|e| e.to_string());
    let int = |name: &str| row.try_get::<i64, _>(name).map_err(|e| e.to_string());
    let opt = |name: &str| {
        row.try_get::<Option<i64>, _>(name)
            .map_err(|e| e.to_string())
    };
    let cumulative = text("cumulative")
        .and_then(|t| codec::accum_from_text(&t).map_err(|e| e.to_string()))
        .unwrap_or_else(|err| {
            note("cumulative", err, true, &mut unreadable);
            crate::model::Accum::default()
        });
    let key = get_s("subject")?;
    let subject = text("subject_attributes")
        .and_then(|t| codec::subject_from_text(&t).map_err(|e| e.to_string()))
        .and_then(|s| {
            // Attributes that do not spell the key are not this run's.
            (s.joined() == key)
                .then_some(s)
                .ok_or_else(|| format!("they do not match the subject key {key:?}"))
        })
        .unwrap_or_else(|err| {
            note("subject_attributes", err, false, &mut unreadable);
            codec::subject_from_key(&key)
        });
    let mut reason = text("reason").unwrap_or_default();
    let state = text("state")
        .and_then(|t| codec::state_from_name(&t).map_err(|e| e.to_string()))
        .unwrap_or_else(|err| {
            reason = format!(
                "stored state unreadable ({err}): held as ROLLED_BACK so the release cannot \
                 promote on a verdict nobody can read; reset the run to judge it afresh"
            );
            note("state", err, false, &mut unreadable);
            RunState::RolledBack
        });
    let mut number = |name: &str, counts: bool, unreadable: &mut Vec<String>| {
        int(name).unwrap_or_else(|err| {
            note(name, err, counts, unreadable);
            0
        })
    };
    let started_at = uint(number("started_at", false, &mut unreadable));
    let superseded = number("superseded", false, &mut unreadable) != 0;
    let pass_streak = u32::try_from(number("pass_streak", true, &mut unreadable)).unwrap_or(0);
    let fail_streak = u32::try_from(number("fail_streak", true, &mut unreadable)).unwrap_or(0);
    let windows = uint(number("windows", true, &mut unreadable));
    let mut optional = |name: &str, unreadable: &mut Vec<String>| {
        opt(name).unwrap_or_else(|err| {
            note(name, err, false, unreadable);
            None
        })
    };
    let decided_at = optional("decided_at", &mut unreadable).map(uint);
    let last_window_end = optional("last_window_end", &mut unreadable).map(uint);
    let first_sample_at = optional("first_sample_at", &mut unreadable).map(uint);
    let counts_from = optional("counts_from", &mut unreadable).map(uint);
    let retired_at = optional("retired_at", &mut unreadable).map(uint);
    Ok(RunRecord {
        run_id: get_s("run_id")?,
        contract: get_s("contract")?,
        contract_version: u32::try_from(get_i("contract_version")?).unwrap_or(0),
        subject,
        state,
        reason,
        started_at,
        decided_at,
        superseded,
        pass_streak,
        fail_streak,
        windows,
        cumulative,
        last_window_end,
        first_sample_at,
        latency_bound: codec::bound_from_text(&text("latency_bound").unwrap_or_default()),
        evidence: codec::evidence_from_text(&text("evidence").unwrap_or_default()),
        counts_from,
        retired_at,
        unreadable: (!unreadable.is_empty()).then(|| unreadable.join("; ")),
        counts_unreadable,
    })
}

/// The runs of `rows` that can be read at all; the others are logged and
/// left out, so one damaged row never hides its neighbours.
fn runs_from_rows(rows: &[AnyRow]) -> Vec<RunRecord> {
    rows.iter()
        .filter_map(|row| match run_from_row(row) {
            Ok(run) => Some(run),
            Err(err) => {
                let id = row.try_get::<String, _>("run_id").unwrap_or_default();
                tracing::error!(run_id = %id, error = %err, "Stored run unreadable; it is left out.");
                None
            }
        })
        .collect()
}

/// A stored window, or `None` (logged) when it cannot be read back.
fn window_or_log(run_id: &str, text: &str) -> Option<WindowRecord> {
    codec::window_from_text(text)
        .map_err(|err| {
            tracing::error!(run_id, error = %err, "Stored window unreadable; it is left out.");
        })
        .ok()
}

/// A row's body: a flag change carries its own, a transition's row the
/// transition's event.
const DELIVERY_COLUMNS: &str = "o.event_id, o.exporter, o.state, o.attempts, o.created_at, \
    o.updated_at, o.next_attempt_at, o.last_error, COALESCE(o.payload, t.event) AS event";

/// Where outbox rows are read from: flag changes have no transition, and a
/// row whose transition is gone has nothing to deliver.
const DELIVERY_FROM: &str = "outbox o LEFT JOIN transitions t \
    ON t.event_id = o.event_id AND o.payload IS NULL \
    WHERE (o.payload IS NOT NULL OR t.event IS NOT NULL)";

fn delivery_from_row(row: &AnyRow) -> Result<Delivery, StoreError> {
    let state: String = row.try_get("state").map_err(unavailable)?;
    Ok(Delivery {
        event_id: row.try_get("event_id").map_err(unavailable)?,
        exporter: row.try_get("exporter").map_err(unavailable)?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery state {state:?}")))?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts").map_err(unavailable)?)
            .unwrap_or(u32::MAX),
        created_at: uint(row.try_get("created_at").map_err(unavailable)?),
        updated_at: uint(row.try_get("updated_at").map_err(unavailable)?),
        next_attempt_at: uint(row.try_get("next_attempt_at").map_err(unavailable)?),
        last_error: row.try_get("last_error").map_err(unavailable)?,
        event: row.try_get("event").map_err(unavailable)?,
    })
}

impl SqlStore {
    /// Opens (creating the file and its directory) the SQLite database at
    /// `path`, switches it to WAL, applies the migrations and checks that it
    /// is writable. `url` is the configured URL, for messages.
    pub async fn open_sqlite(url: &str, path: &Path) -> Result<SqlStore, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            url: url.to_string(),
            reason,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                open_error(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let path = path
            .to_str()
            .ok_or_else(|| open_error(format!("the path {} is not valid UTF-8", path.display())))?;
        if path.contains('?') || path.contains('#') {
            return Err(open_error("the path must not contain '?' or '#'".into()));
        }
        // `mode=rwc`: read-write, created when missing.
        let store = SqlStore::connect(
            &format!("sqlite://{path}?mode=rwc"),
            SQLITE_CONNECTIONS,
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| open_error(format!("cannot open the database file {path}: {e}")))?;
        let mode: String = sqlx::query("PRAGMA journal_mode = WAL")
            .fetch_one(&store.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| open_error(format!("cannot switch {path} to WAL mode: {e}")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(open_error(format!(
                "{path} stays in journal mode {mode:?}, not WAL"
            )));
        }
        store
            .prepare(false)
            .await
            .map_err(|e| open_error(e.to_string()))?;
        Ok(store)
    }

    /// Connects to the PostgreSQL database of `spec` (pool size, statement
    /// timeout and TLS from its settings), takes the migration lock, applies
    /// the migrations and checks that it is writable.
    pub async fn open_postgres(spec: &PostgresSpec) -> Result<SqlStore, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            url: spec.redacted(),
            reason,
        };
        let url = super::postgres::connect_url(spec);
        let store = SqlStore::connect(&url, spec.pool_size, Duration::from_secs(5))
            .await
            .map_err(|e| open_error(super::postgres::describe_connect_error(&e)))?;
        store
            .prepare(true)
            .await
            .map_err(|e| open_error(e.to_string()))?;
        Ok(store)
    }

    /// Connects to any database URL sqlx's enabled drivers understand.
    async fn connect(url: &str, size: u32, wait: Duration) -> Result<SqlStore, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(size)
            .acquire_timeout(wait)
            .connect(url)
            .await?;
        Ok(SqlStore { pool })
    }

    /// Applies pending migrations, then proves the database is writable.
    /// The check and the migrations are one transaction; on PostgreSQL it
    /// first takes an advisory lock (released at its end), so instances
    /// that start at once migrate one after the other and the later ones
    /// find nothing left to do.
    ///
    /// Boxed as a `Send` future: sqlx's executors over a transaction are
    /// only seen to be `Send` where the future's type is named.
    fn prepare(&self, postgres: bool) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let fail = |what: &str, e: sqlx::Error| StoreError::Unavailable(format!("{what}: {e}"));
            let mut tx = self
                .pool
                .begin()
                .await
                .map_err(|e| fail("cannot start the migration", e))?;
            if postgres {
                sqlx::query("SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock($1)) AS l")
                    .bind(super::postgres::MIGRATION_LOCK)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| fail("cannot take the migration lock", e))?;
            }
            sqlx::query(
            "CREATE TABLE IF NOT EXISTS verdict_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| fail("cannot create the schema table", e))?;
            let current: Option<i64> = sqlx::query("SELECT MAX(version) AS v FROM verdict_schema")
                .fetch_one(&mut *tx)
                .await
                .and_then(|row| row.try_get("v"))
                .map_err(|e| fail("cannot read the schema version", e))?;
            let current = current.unwrap_or(0);
            let newest = MIGRATIONS.last().map_or(0, |(v, _)| *v);
            if current > newest {
                return Err(StoreError::Unavailable(format!(
                    "the database has schema version {current}, newer than this build's {newest}; \
                 use a newer verdict"
                )));
            }
            let now = int(crate::clock::Clock::now(&crate::clock::SystemClock));
            let pending: Vec<&(i64, &str)> =
                MIGRATIONS.iter().filter(|(v, _)| *v > current).collect();
            for (version, sql) in &pending {
                // A query string without arguments: SQLite runs every
                // statement of it, PostgreSQL gets it as one simple query.
                sqlx::Executor::execute(&mut *tx, *sql)
                    .await
                    .map_err(|e| fail(&format!("migration {version} failed"), e))?;
                sqlx::query("INSERT INTO verdict_schema (version, applied_at) VALUES ($1, $2)")
                    .bind(*version)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| fail(&format!("cannot record migration {version}"), e))?;
            }
            tx.commit()
                .await
                .map_err(|e| fail("cannot commit the migrations", e))?;
            for (version, _) in pending {
                tracing::info!(version, "Storage schema migrated.");
            }
            // The write probe: a read-only file or a lock held by another process
            // fails here, at start, rather than at the first transition.
            sqlx::query(
                "INSERT INTO verdict_meta (key, value) VALUES ('last_start', $1) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(now.to_string())
            .execute(&self.pool)
            .await
            .map_err(|e| fail("the database is not writable", e))?;
            Ok(())
        })
    }

    async fn commit_batch(&self, batch: &[Commit], now: UnixNanos) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        write_batch(&mut tx, batch, now).await?;
        tx.commit().await
    }

    /// Outbox rows selected by `filter` (`o.exporter = $1` …, one text
    /// parameter), in `order`, at most `limit`.
    async fn fetch_deliveries(
        &self,
        filter: &str,
        value: &str,
        order: &str,
        limit: usize,
    ) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} \
             AND {filter} ORDER BY {order} LIMIT $2"
        ))
        .bind(value)
        .bind(int(limit as u64))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// The first (text) column of the rows `sql` selects for one run, at
    /// most `limit`.
    async fn texts(
        &self,
        sql: &str,
        run_id: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(sql)
            .bind(run_id)
            .bind(int(limit as u64))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| row.try_get::<String, _>(0).map_err(unavailable))
            .collect()
    }

    async fn fetch_runs(&self, sql: &str, binds: &[&str]) -> Result<Vec<RunRecord>, StoreError> {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(*b);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(unavailable)?;
        Ok(runs_from_rows(&rows))
    }
}

impl RunStore for SqlStore {
    fn commit<'a>(&'a self, batch: &'a [Commit], now: UnixNanos) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            if batch.is_empty() {
                return Ok(());
            }
            self.commit_batch(batch, now).await.map_err(unavailable)
        })
    }

    fn runs(&self, limit: usize) -> StoreFuture<'_, Vec<RunRecord>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "SELECT {RUN_COLUMNS} FROM runs ORDER BY started_at DESC, run_id DESC LIMIT $1"
            ))
            .bind(int(limit as u64))
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            Ok(runs_from_rows(&rows))
        })
    }

    fn current<'a>(
        &'a self,
        contract: &'a str,
        subject: &'a str,
    ) -> StoreFuture<'a, Option<RunRecord>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE contract = $1 AND subject = $2 \
                 AND superseded = 0 ORDER BY started_at DESC, run_id DESC LIMIT 1"
            );
            Ok(self
                .fetch_runs(&sql, &[contract, subject])
                .await?
                .into_iter()
                .next())
        })
    }

    fn current_of<'a>(
        &'a self,
        contract: &'a str,
        subjects: &'a [&'a str],
    ) -> StoreFuture<'a, Vec<RunRecord>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for chunk in chunks(subjects, |s| *s) {
                let sql = multi_row(
                    &format!(
                        "SELECT {RUN_COLUMNS} FROM runs WHERE contract = $1 AND superseded = 0 \
                         AND subject IN ({{rows}}) ORDER BY subject, started_at DESC, run_id DESC"
                    ),
                    ("#1", 1),
                    chunk.len(),
                    1,
                );
                let mut binds = vec![contract];
                binds.extend_from_slice(chunk);
                let mut runs = self.fetch_runs(&sql, &binds).await?;
                // The latest run of each subject, as `current` picks it.
                runs.dedup_by(|later, first| later.subject.joined() == first.subject.joined());
                out.append(&mut runs);
            }
            Ok(out)
        })
    }

    fn current_runs<'a>(&'a self, contract: &'a str) -> StoreFuture<'a, Vec<RunRecord>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM runs WHERE contract = $1 AND superseded = 0 \
                 ORDER BY subject, started_at DESC, run_id DESC"
            );
            let mut runs = self.fetch_runs(&sql, &[contract]).await?;
            // The latest run of each subject (older contract versions stay
            // unsuperseded but are not current).
            runs.dedup_by(|later, first| later.subject.joined() == first.subject.joined());
            runs.sort_by(|a, b| a.subject.cmp(&b.subject));
            Ok(runs)
        })
    }

    fn live_runs<'a>(
        &'a self,
        contract: &'a str,
        version: u32,
        decided_after: UnixNanos,
    ) -> StoreFuture<'a, Vec<(RunRecord, Option<WindowRecord>)>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT {RUN_COLUMNS}, (SELECT w.record FROM windows w WHERE w.run_id = runs.run_id \
                 ORDER BY w.window_start DESC LIMIT 1) AS last_window FROM runs \
                 WHERE contract = $1 AND contract_version = $2 AND superseded = 0 \
                 AND (decided_at IS NULL OR decided_at >= $3) ORDER BY subject"
            );
            let rows = sqlx::query(&sql)
                .bind(contract)
                .bind(i64::from(version))
                .bind(int(decided_after))
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let Some(run) = runs_from_rows(std::slice::from_ref(row)).pop() else {
                    continue;
                };
                let last: Option<String> = row.try_get("last_window").map_err(unavailable)?;
                let window = last.and_then(|t| window_or_log(&run.run_id, &t));
                out.push((run, window));
            }
            Ok(out)
        })
    }

    fn purge_retired(&self, before: UnixNanos) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            let retired =
                "SELECT run_id FROM runs WHERE retired_at IS NOT NULL AND retired_at < $1";
            for sql in [
                format!("DELETE FROM windows WHERE run_id IN ({retired})"),
                format!(
                    "DELETE FROM transitions WHERE run_id IN ({retired}) AND event_id NOT IN \
                     (SELECT event_id FROM outbox WHERE state <> 'delivered')"
                ),
            ] {
                sqlx::query(&sql)
                    .bind(int(before))
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            }
            let done = sqlx::query(
                "DELETE FROM runs WHERE retired_at IS NOT NULL AND retired_at < $1 \
                 AND run_id NOT IN (SELECT run_id FROM transitions)",
            )
            .bind(int(before))
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            sqlx::query("DELETE FROM rollouts WHERE run_id NOT IN (SELECT run_id FROM runs)")
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)?;
            Ok(done.rows_affected())
        })
    }

    fn windows<'a>(&'a self, run_id: &'a str, limit: usize) -> StoreFuture<'a, Vec<WindowRecord>> {
        Box::pin(async move {
            let sql =
                "SELECT record FROM windows WHERE run_id = $1 ORDER BY window_start DESC LIMIT $2";
            Ok(self
                .texts(sql, run_id, limit)
                .await?
                .iter()
                .filter_map(|text| window_or_log(run_id, text))
                .collect())
        })
    }

    fn transitions<'a>(&'a self, run_id: &'a str, limit: usize) -> StoreFuture<'a, Vec<String>> {
        let sql = "SELECT event FROM transitions WHERE run_id = $1 ORDER BY event_id DESC LIMIT $2";
        Box::pin(self.texts(sql, run_id, limit))
    }

    fn pending<'a>(&'a self, exporter: &'a str, limit: usize) -> StoreFuture<'a, Vec<Delivery>> {
        Box::pin(self.fetch_deliveries(
            "o.exporter = $1 AND o.state = 'pending'",
            exporter,
            "o.created_at, o.event_id",
            limit,
        ))
    }

    fn record_attempt<'a>(
        &'a self,
        exporter: &'a str,
        event_id: &'a str,
        attempt: &'a Attempt,
        now: UnixNanos,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let (state, next_at, error) = attempt.outcome();
            let next_at = next_at.map(int);
            sqlx::query(
                "UPDATE outbox SET state = $1, attempts = attempts + 1, updated_at = $2, \
                 next_attempt_at = COALESCE($3, next_attempt_at), last_error = $4 \
                 WHERE event_id = $5 AND exporter = $6 AND state = 'pending'",
            )
            .bind(state.as_str())
            .bind(int(now))
            .bind(next_at)
            .bind(error)
            .bind(event_id)
            .bind(exporter)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
            Ok(())
        })
    }

    fn deliveries<'a>(
        &'a self,
        states: &'a [DeliveryState],
        limit: usize,
    ) -> StoreFuture<'a, Vec<Delivery>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for state in states {
                out.extend(
                    self.fetch_deliveries(
                        "o.state = $1",
                        state.as_str(),
                        "o.created_at DESC, o.event_id DESC",
                        limit,
                    )
                    .await?,
                );
            }
            out.sort_by(|a, b| (b.created_at, &b.event_id).cmp(&(a.created_at, &a.event_id)));
            out.truncate(limit);
            Ok(out)
        })
    }

    fn purge_delivered(&self, before: UnixNanos) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let done =
                sqlx::query("DELETE FROM outbox WHERE state = 'delivered' AND created_at < $1")
                    .bind(int(before))
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
            Ok(done.rows_affected())
        })
    }

    fn save_checkpoint<'a>(
        &'a self,
        pipeline: &'a str,
        slots: &'a [(i64, String)],
        replace_all: bool,
        now: UnixNanos,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            if replace_all {
                sqlx::query("DELETE FROM checkpoints WHERE pipeline = $1")
                    .bind(pipeline)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            }
            for (slot, state) in slots {
                sqlx::query(
                    "INSERT INTO checkpoints (pipeline, slot, taken_at, state) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (pipeline, slot) DO UPDATE SET taken_at = excluded.taken_at, state = excluded.state",
                )
                .bind(pipeline)
                .bind(*slot)
                .bind(int(now))
                .bind(state.as_str())
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)
        })
    }

    fn load_checkpoint<'a>(&'a self, pipeline: &'a str) -> StoreFuture<'a, Vec<(i64, String)>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT slot, state FROM checkpoints WHERE pipeline = $1 ORDER BY slot",
            )
            .bind(pipeline)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.iter()
                .map(|row| {
                    Ok((
                        row.try_get::<i64, _>("slot").map_err(unavailable)?,
                        row.try_get::<String, _>("state").map_err(unavailable)?,
                    ))
                })
                .collect()
        })
    }

    fn rollouts<'a>(&'a self, run_id: &'a str) -> StoreFuture<'a, Vec<Rollout>> {
        Box::pin(async move {
            let rows =
                sqlx::query("SELECT state FROM rollouts WHERE run_id = $1 ORDER BY exporter")
                    .bind(run_id)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(unavailable)?;
            let mut out = Vec::new();
            for row in &rows {
                let text: String = row.try_get("state").map_err(unavailable)?;
                match serde_json::from_str(&text) {
                    Ok(r) => out.push(r),
                    Err(err) => {
                        tracing::error!(run_id, error = %err, "Stored rollout unreadable; it is left out.")
                    }
                }
            }
            Ok(out)
        })
    }

    fn save_rollouts<'a>(&'a self, rollouts: &'a [Rollout], now: UnixNanos) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            let rollouts: Vec<&Rollout> = rollouts.iter().collect();
            write_rollouts(&mut tx, &rollouts, int(now))
                .await
                .map_err(unavailable)?;
            tx.commit().await.map_err(unavailable)
        })
    }

    fn delivery<'a>(
        &'a self,
        event_id: &'a str,
        exporter: &'a str,
    ) -> StoreFuture<'a, Option<Delivery>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM {DELIVERY_FROM} \
                 AND o.event_id = $1 AND o.exporter = $2"
            ))
            .bind(event_id)
            .bind(exporter)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            rows.first().map(delivery_from_row).transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Accum;
    use crate::model::{RunState, VerdictEvent};
    use crate::model::{Subject, Window};

    struct Db(std::path::PathBuf);

    impl Drop for Db {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// What keeps a test's database alive, and how to open it again.
    enum Guard {
        Sqlite(Db),
        Postgres(crate::storage::testing::TestDatabase),
    }

    impl Guard {
        fn is_sqlite(&self) -> bool {
            matches!(self, Guard::Sqlite(_))
        }

        async fn open(&self) -> Result<SqlStore, StoreError> {
            match self {
                Guard::Sqlite(db) => {
                    SqlStore::open_sqlite("sqlite://test", &db.0.join("nested").join("v.db")).await
                }
                Guard::Postgres(db) => {
                    SqlStore::open_postgres(&crate::storage::testing::spec(&db.url, "t")).await
                }
            }
        }
    }

    /// A fresh store on every backend: SQLite, and PostgreSQL when a server
    /// is reachable (see `storage::testing`).
    async fn backends(name: &str) -> Vec<(SqlStore, Guard)> {
        let dir = std::env::temp_dir().join(format!(
            "verdict-sql-{name}-{}-{}",
            std::process::id(),
            crate::clock::Clock::now(&crate::clock::SystemClock)
        ));
        let path = dir.join("nested").join("v.db");
        let store = SqlStore::open_sqlite("sqlite://test", &path)
            .await
            .expect("opens");
        let mut out = vec![(store, Guard::Sqlite(Db(dir)))];
        if let Some(db) = crate::storage::testing::TestDatabase::create().await {
            let store = SqlStore::open_postgres(&crate::storage::testing::spec(&db.url, "t"))
                .await
                .expect("opens");
            out.push((store, Guard::Postgres(db)));
        }
        out
    }

    fn run(state: RunState) -> RunRecord {
        let mut r = RunRecord::new(
            "checkout",
            2,
            Subject::new(vec![("service.version".into(), "2.0".into())]),
            1_000,
        );
        let _ = r.cumulative.latency.insert(12.5);
        r.cumulative.samples = 1;
        r.state = state;
        r
    }

    /// A commit of `run` alone.
    fn bare(run: RunRecord) -> Commit {
        Commit {
            run,
            window: None,
            event: None,
            outbox: vec![],
            rollouts: vec![],
        }
    }

    /// An insufficient window of 10 ns starting at `start`.
    fn empty_window(start: u64) -> WindowRecord {
        WindowRecord {
            window: Window {
                start,
                end: start + 10,
            },
            figures: crate::model::Figures::of(&Accum::default()),
            result: crate::model::WindowVerdict::Insufficient,
            failures: vec![],
            notes: Vec::new(),
            checks: Vec::new(),
        }
    }

    fn event(r: &RunRecord, id: &str) -> VerdictEvent {
        VerdictEvent {
            event_id: id.into(),
            emitted_at: 2_000,
            run: r.clone(),
            previous_state: RunState::Validating,
            window: None,
            failures: vec![],
            dry_run: false,
        }
    }

    /// A row whose counts or windows cannot be read back (a sum stored as
    /// `null` by an older version, a hand edit) harms only its own run: the
    /// listings keep its neighbours and show it with `unreadable` set.
    #[tokio::test]
    async fn an_unreadable_row_harms_only_its_own_run() {
        for (store, db) in backends("unreadable").await {
            let mut good = run(RunState::Validating);
            good.subject = Subject::new(vec![("service.version".into(), "good".into())]);
            let bad = run(RunState::Validating);
            let mut lost = run(RunState::Promoted);
            lost.subject = Subject::new(vec![("service.version".into(), "a/b%".into())]);
            let window = empty_window(0);
            let batch: Vec<Commit> = [&good, &bad, &lost]
                .into_iter()
                .map(|r| Commit {
                    run: r.clone(),
                    window: Some(window.clone()),
                    event: None,
                    outbox: vec![],
                    rollouts: vec![],
                })
                .collect();
            store.commit(&batch, 5).await.expect("commits");
            for sql in [
                "UPDATE runs SET cumulative = '{\"latency\": {\"sum\": null}}' WHERE run_id = $1",
                "UPDATE windows SET record = 'not json' WHERE run_id = $1",
            ] {
                sqlx::query(sql)
                    .bind(bad.run_id.as_str())
                    .execute(&store.pool)
                    .await
                    .expect("corrupts");
            }
            let mut damage = vec![
                "UPDATE runs SET state = 'BROKEN' WHERE run_id = $1",
                "UPDATE runs SET subject_attributes = '{' WHERE run_id = $1",
            ];
            if db.is_sqlite() {
                // Text where numbers belong: SQLite stores it as it is
                // (PostgreSQL's typed columns refuse it).
                damage.push(
                    "UPDATE runs SET decided_at = 'zz', started_at = 'abc' WHERE run_id = $1",
                );
            }
            for sql in damage {
                sqlx::query(sql)
                    .bind(lost.run_id.as_str())
                    .execute(&store.pool)
                    .await
                    .expect("corrupts");
            }
            let all = store.runs(10).await.expect("lists");
            assert_eq!(all.len(), 3);
            // Unknown state and subject: still listed under its key, held as
            // ROLLED_BACK, with the values read back from the key.
            let held = store
                .current("checkout", "a%2Fb%25")
                .await
                .expect("current")
                .expect("the run with the unreadable state");
            assert_eq!(
                (held.run_id.as_str(), held.state),
                (lost.run_id.as_str(), RunState::RolledBack)
            );
            assert_eq!(held.subject.joined(), lost.subject.joined());
            assert_eq!(held.subject.attributes()[0].1, "a/b%");
            let why = held.unreadable.as_deref().unwrap_or_default();
            assert!(
                why.contains("BROKEN")
                    && why.contains("subject")
                    && (why.contains("decided_at") || !db.is_sqlite()),
                "{why}"
            );
            assert!(!held.counts_unreadable, "its counts were readable");
            assert!(
                held.reason.contains("held as ROLLED_BACK"),
                "{}",
                held.reason
            );
            let listed = all
                .iter()
                .find(|r| r.run_id == bad.run_id)
                .expect("bad run");
            assert!(listed
                .unreadable
                .as_deref()
                .is_some_and(|w| w.contains("accumulation")));
            assert_eq!(listed.cumulative, Accum::default());
            let good_back = all
                .iter()
                .find(|r| r.run_id == good.run_id)
                .expect("good run");
            assert_eq!(
                (good_back.unreadable.as_ref(), good_back.cumulative.samples),
                (None, 1)
            );
            assert_eq!(
                store.current_runs("checkout").await.expect("current").len(),
                3
            );
            assert_eq!(
                store.live_runs("checkout", 2, 0).await.expect("live").len(),
                3
            );
            assert!(store
                .windows(&bad.run_id, 5)
                .await
                .expect("windows")
                .is_empty());
            assert_eq!(
                store.windows(&good.run_id, 5).await.expect("windows").len(),
                1
            );
        }
    }

    /// A scrape reads only live runs, with their last window, in one
    /// query; retired runs are purged with their windows and transitions.
    #[tokio::test]
    async fn live_runs_and_the_purge_of_retired_runs() {
        for (store, _db) in backends("live").await {
            let subject = |v: &str| Subject::new(vec![("service.version".into(), v.into())]);
            let window = empty_window;
            let mut live = run(RunState::Validating);
            live.subject = subject("live");
            let mut old = run(RunState::Promoted);
            old.subject = subject("old");
            old.decided_at = Some(100);
            let mut recent = run(RunState::RolledBack);
            recent.subject = subject("recent");
            recent.decided_at = Some(900);
            let mut retired = run(RunState::Validating);
            retired.subject = subject("retired");
            retired.superseded = true;
            retired.retired_at = Some(500);
            let mut other = run(RunState::Validating);
            other.subject = subject("v1");
            other.contract_version = 1;
            let mut batch = Vec::new();
            for r in [&live, &old, &recent, &retired, &other] {
                for start in [0, 10] {
                    batch.push(Commit {
                        run: r.clone(),
                        window: Some(window(start)),
                        event: None,
                        outbox: vec![],
                        rollouts: vec![],
                    });
                }
            }
            batch.push(Commit {
                run: retired.clone(),
                window: None,
                event: Some(event(&retired, "01R")),
                outbox: vec![],
                rollouts: vec![],
            });
            store.commit(&batch, 5).await.expect("commits");
            let got = store.live_runs("checkout", 2, 800).await.expect("reads");
            let names: Vec<&str> = got.iter().map(|(r, _)| r.subject.joined()).collect();
            assert_eq!(names, ["live", "recent"]);
            assert_eq!(got[0].1.as_ref().map(|w| w.window.start), Some(10));
            // Not yet old enough; then gone with its windows and transitions.
            assert_eq!(store.purge_retired(400).await.expect("purges"), 0);
            assert_eq!(store.purge_retired(600).await.expect("purges"), 1);
            assert!(store
                .windows(&retired.run_id, 10)
                .await
                .expect("reads")
                .is_empty());
            assert!(store
                .transitions(&retired.run_id, 10)
                .await
                .expect("reads")
                .is_empty());
            let all = store.runs(10).await.expect("reads");
            assert!(all.iter().all(|r| r.run_id != retired.run_id));
            assert_eq!(all.len(), 4);
        }
    }

    #[tokio::test]
    async fn commits_read_back_and_final_states_hold() {
        for (store, _db) in backends("commit").await {
            let mut r = run(RunState::Validating);
            let w = empty_window(0);
            let batch = vec![Commit {
                run: r.clone(),
                window: Some(w.clone()),
                event: Some(event(&r, "01A")),
                outbox: vec!["log".into(), "webhook/x".into()],
                rollouts: vec![],
            }];
            store.commit(&batch, 5).await.expect("commits");
            // The same batch again (a retry) changes nothing more.
            store.commit(&batch, 6).await.expect("idempotent");
            let back = store
                .current("checkout", "2.0")
                .await
                .expect("reads")
                .expect("run");
            assert_eq!(back, r);
            assert_eq!(store.windows(&r.run_id, 10).await.expect("reads"), vec![w]);
            assert_eq!(
                store.current_runs("checkout").await.expect("reads").len(),
                1
            );
            assert_eq!(
                store.transitions(&r.run_id, 10).await.expect("reads").len(),
                1
            );

            r.state = RunState::RolledBack;
            store.commit(&[bare(r.clone())], 7).await.expect("commits");
            // A final run is never re-opened, whatever is written later.
            let mut reopened = r.clone();
            reopened.state = RunState::Validating;
            reopened.superseded = true;
            store.commit(&[bare(reopened)], 8).await.expect("commits");
            let all = store.runs(10).await.expect("reads");
            assert_eq!(all[0].state, RunState::RolledBack);
            assert!(all[0].superseded);
            assert!(store
                .current("checkout", "2.0")
                .await
                .expect("reads")
                .is_none());
        }
    }

    /// A window of many series is one batch, written in multi-row
    /// statements (more rows than one statement takes, one run twice: the
    /// later commit wins, as row by row); the runs are then looked up all
    /// at once.
    #[tokio::test]
    async fn a_large_batch_is_written_and_looked_up_at_once() {
        for (store, _db) in backends("batch").await {
            let runs: Vec<RunRecord> = (0..1200)
                .map(|i| {
                    let mut r = run(RunState::Validating);
                    r.subject = Subject::new(vec![("service.version".into(), format!("v{i}"))]);
                    r.run_id = format!("run-{i:04}");
                    r
                })
                .collect();
            let mut batch: Vec<Commit> = runs
                .iter()
                .enumerate()
                .map(|(i, r)| Commit {
                    run: r.clone(),
                    window: Some(empty_window(0)),
                    event: Some(event(r, &format!("ev-{i:04}"))),
                    outbox: vec!["log".into()],
                    rollouts: vec![],
                })
                .collect();
            let mut decided = runs[7].clone();
            decided.state = RunState::RolledBack;
            batch.push(Commit {
                event: Some(event(&decided, "ev-decided")),
                outbox: vec!["log".into()],
                ..bare(decided)
            });
            store.commit(&batch, 5).await.expect("commits");
            let mut subjects: Vec<String> = runs
                .iter()
                .map(|r| r.subject.joined().to_string())
                .collect();
            subjects.push("missing".into());
            let wanted: Vec<&str> = subjects.iter().map(String::as_str).collect();
            let found = store.current_of("checkout", &wanted).await.expect("reads");
            assert_eq!(found.len(), 1200);
            let by_id: std::collections::HashMap<&str, &RunRecord> =
                found.iter().map(|r| (r.run_id.as_str(), r)).collect();
            assert_eq!(by_id["run-0007"].state, RunState::RolledBack);
            assert_eq!(by_id["run-1199"], &runs[1199]);
            assert_eq!(
                store.windows("run-0500", 10).await.expect("reads"),
                vec![empty_window(0)]
            );
            assert_eq!(store.pending("log", 2000).await.expect("reads").len(), 1201);
        }
    }

    #[tokio::test]
    async fn outbox_rows_move_from_pending_to_delivered_or_failed() {
        for (store, _db) in backends("outbox").await {
            let r = run(RunState::RolledBack);
            let batch: Vec<Commit> = ["01A", "01B"]
                .iter()
                .map(|id| Commit {
                    run: r.clone(),
                    window: None,
                    event: Some(event(&r, id)),
                    outbox: vec!["webhook/x".into()],
                    rollouts: vec![],
                })
                .collect();
            store.commit(&batch, 10).await.expect("commits");
            let pending = store.pending("webhook/x", 10).await.expect("reads");
            assert_eq!(
                pending
                    .iter()
                    .map(|d| d.event_id.as_str())
                    .collect::<Vec<_>>(),
                ["01A", "01B"]
            );
            assert_eq!(
                pending[0].event,
                crate::storage::event_body(&event(&r, "01A"))
            );
            let retry = Attempt::Retry {
                next_at: 99,
                error: "HTTP 503".into(),
            };
            store
                .record_attempt("webhook/x", "01A", &retry, 20)
                .await
                .expect("records");
            let head = &store.pending("webhook/x", 1).await.expect("reads")[0];
            assert_eq!((head.attempts, head.next_attempt_at), (1, 99));
            assert_eq!(head.last_error.as_deref(), Some("HTTP 503"));
            store
                .record_attempt("webhook/x", "01A", &Attempt::Delivered, 30)
                .await
                .expect("records");
            store
                .record_attempt(
                    "webhook/x",
                    "01B",
                    &Attempt::Failed {
                        error: "HTTP 400".into(),
                    },
                    30,
                )
                .await
                .expect("records");
            assert!(store
                .pending("webhook/x", 10)
                .await
                .expect("reads")
                .is_empty());
            let failed = store
                .deliveries(&[DeliveryState::Failed], 10)
                .await
                .expect("reads");
            assert_eq!(failed.len(), 1);
            assert_eq!(failed[0].event_id, "01B");
            // Delivered rows are purged only when old enough; failed ones stay.
            assert_eq!(store.purge_delivered(5).await.expect("purges"), 0);
            assert_eq!(store.purge_delivered(11).await.expect("purges"), 1);
            assert_eq!(
                store
                    .deliveries(&[DeliveryState::Failed], 10)
                    .await
                    .expect("reads")
                    .len(),
                1
            );
        }
    }

    #[tokio::test]
    async fn checkpoints_replace_and_reload() {
        for (store, _db) in backends("ckpt").await {
            let slots = vec![(0, "a".to_string()), (1, "b".to_string())];
            store
                .save_checkpoint("p", &slots, false, 1)
                .await
                .expect("saves");
            store
                .save_checkpoint("p", &[(1, "c".into())], false, 2)
                .await
                .expect("saves");
            assert_eq!(
                store.load_checkpoint("p").await.expect("loads"),
                vec![(0, "a".to_string()), (1, "c".to_string())]
            );
            store
                .save_checkpoint("p", &[(-1, "d".into())], true, 3)
                .await
                .expect("saves");
            assert_eq!(
                store.load_checkpoint("p").await.expect("loads"),
                vec![(-1, "d".to_string())]
            );
            assert!(store.load_checkpoint("q").await.expect("loads").is_empty());
        }
    }

    #[tokio::test]
    async fn reopening_applies_no_migration_twice() {
        for (store, db) in backends("reopen").await {
            drop(store);
            let again = db.open().await.expect("reopens");
            let row = sqlx::query("SELECT COUNT(*) AS n FROM verdict_schema")
                .fetch_one(&again.pool)
                .await
                .expect("reads");
            assert_eq!(
                row.try_get::<i64, _>("n").expect("n"),
                MIGRATIONS.len() as i64
            );
        }
    }

    /// A database migrated by a newer verdict is refused at start, with the
    /// versions in the message, on every backend.
    #[tokio::test]
    async fn a_newer_schema_is_refused() {
        for (store, db) in backends("newer").await {
            sqlx::query("INSERT INTO verdict_schema (version, applied_at) VALUES ($1, 0)")
                .bind(MIGRATIONS.len() as i64 + 1)
                .execute(&store.pool)
                .await
                .expect("inserts");
            drop(store);
            let err = db.open().await.expect_err("refused");
            let text = err.to_string();
            assert!(
                text.contains(&format!("schema version {}", MIGRATIONS.len() + 1))
                    && text.contains("use a newer verdict"),
                "{text}"
            );
        }
    }

    /// Instances that start at once on one PostgreSQL database migrate one
    /// after the other: every start succeeds and each migration is applied
    /// once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_starts_migrate_once() {
        let Some(db) = crate::storage::testing::TestDatabase::create().await else {
            return;
        };
        let spec = crate::storage::testing::spec(&db.url, "t");
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let spec = spec.clone();
                tokio::spawn(async move { SqlStore::open_postgres(&spec).await })
            })
            .collect();
        let mut stores = Vec::new();
        for s in starts {
            stores.push(s.await.expect("joins").expect("every start succeeds"));
        }
        let row =
            sqlx::query("SELECT COUNT(*) AS n, COUNT(DISTINCT version) AS d FROM verdict_schema")
                .fetch_one(&stores[0].pool)
                .await
                .expect("reads");
        assert_eq!(
            row.try_get::<i64, _>("n").expect("n"),
            MIGRATIONS.len() as i64
        );
        assert_eq!(
            row.try_get::<i64, _>("d").expect("d"),
            MIGRATIONS.len() as i64
        );
    }

    /// A connection that cannot be made says what to check: an unknown
    /// database, a port where nothing listens.
    #[tokio::test]
    async fn unreachable_postgres_is_explained() {
        let Some(db) = crate::storage::testing::TestDatabase::create().await else {
            return;
        };
        let missing = format!("{}_missing", db.url);
        let err = SqlStore::open_postgres(&crate::storage::testing::spec(&missing, "t"))
            .await
            .expect_err("no such database");
        assert!(err.to_string().contains("does not exist"), "{err}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a port")
            .port();
        let nowhere = format!("postgres://postgres@127.0.0.1:{port}/test");
        let err = SqlStore::open_postgres(&crate::storage::testing::spec(&nowhere, "t"))
            .await
            .expect_err("nothing listens");
        assert!(err.to_string().contains("is PostgreSQL running"), "{err}");
    }
}
