//! Several instances on one PostgreSQL database (design §8).
//!
//! ```text
//! every instance:  receivers ─> shards ─> partials task ──upsert──> partials (per instance)
//!                                                                      │
//! the leader:      merged partials of a window, after its close deadline + grace
//!                  ─> run engine ─> runs, transitions, outbox, judged mark (one transaction)
//! every instance:  outbox workers (one instance per exporter at a time: a lease)
//!                  API and /metrics read the shared tables
//! ```
//!
//! - **Membership** ([`Election`]): each instance writes a heartbeat every
//!   [`HEARTBEAT`] and tries the leader's advisory lock, which lives on a
//!   connection of its own (session-level: it goes when the process or the
//!   connection dies). The leader checks that connection at every
//!   heartbeat and steps down the moment it fails.
//! - **Partials** ([`partials::PartialTask`]): what the shards aggregate is
//!   written per (contract, subject, window, instance), off the ingest path,
//!   at every checkpoint interval and right after windows close.
//! - **Judging** (`runs::leader`): the leader claims each pipeline (a
//!   fencing token in `cluster_judged`), and every commit it makes checks
//!   the claim in its transaction, so a deposed leader can never commit: a
//!   window is judged once, by one instance.

pub mod config;
pub mod partials;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::PostgresSpec;
use crate::model::UnixNanos;
use crate::storage::cluster::{Heartbeat, Session};
use crate::storage::{Health, SqlStore};
use crate::telemetry;

/// How often an instance writes its heartbeat and the leader checks its
/// lock; another instance takes over within about two of these after the
/// leader's connection closes.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

pub use crate::storage::cluster::DEAD_AFTER;

/// This instance's part in the cluster, shared by its tasks.
#[derive(Debug)]
pub struct Member {
    /// The shared database.
    pub store: Arc<SqlStore>,
    /// `service.postgres`.
    pub spec: PostgresSpec,
    /// New at every start: tells this process from an earlier one of the
    /// same name.
    pub incarnation: String,
    /// Whether this instance leads; changes are published here.
    pub leading: watch::Receiver<bool>,
    /// Leaderships held so far (each one's fencing token differs).
    terms: AtomicU64,
    /// Partial rows aggregated and not written yet, over all pipelines.
    pub pending: AtomicU64,
    /// Where the heartbeat says the API is.
    pub api: std::sync::Mutex<String>,
    /// Since when (database clock) this instance's heartbeats have been
    /// written without a gap longer than [`WRITE_GAP`]: the leader counts
    /// another instance's silence only from here, so an instance is taken
    /// for dead only after missing heartbeats while the database was
    /// writable (not because PostgreSQL stalled for everyone). 0: not yet.
    pub writable_since: AtomicU64,
    /// The last heartbeat written (database clock).
    last_beat: AtomicU64,
    /// Whether the last heartbeat found the clock skewed (warned once per
    /// stretch, not every second).
    skewed: std::sync::atomic::AtomicBool,
}

/// A heartbeat not written for this long means the database was not
/// writable for this instance meanwhile (heartbeats are 1 s apart).
pub const WRITE_GAP: Duration = Duration::from_secs(2);

/// A leader that has not heartbeat for this long (database clock, while
/// the database was writable) is deposed by a follower.
pub const DEPOSE_AFTER: Duration = Duration::from_secs(10);

/// An instance whose clock differs from PostgreSQL's by more than this is
/// warned about: window deadlines are the instances' clocks, liveness the
/// database's.
const CLOCK_SKEW: Duration = Duration::from_secs(2);

impl Member {
    /// The instance's name.
    pub fn instance(&self) -> &str {
        &self.spec.instance
    }

    /// A fresh fencing token for a leadership that starts now.
    pub fn next_term(&self) -> String {
        let term = self.terms.fetch_add(1, Ordering::SeqCst) + 1;
        format!("{}#{}#{term}", self.spec.instance, self.incarnation)
    }
}

/// Why this instance cannot join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// A live process already uses the instance name.
    #[error(
        "instance name {0:?} is in use by another running verdict on this database; \
         give each instance its own service.postgres.instance"
    )]
    NameInUse(String),
    /// The storage failed.
    #[error(transparent)]
    Store(#[from] crate::storage::StoreError),
}

/// The membership task: heartbeats and the leader's lock.
#[derive(Debug)]
pub struct Election {
    member: Arc<Member>,
    leading: watch::Sender<bool>,
    session: Option<Session>,
    started_at: UnixNanos,
    clock: SharedClock,
    health: Arc<Health>,
}

impl Election {
    /// Joins the cluster as `spec.instance`: refused while another live
    /// process holds the name (its session lock); writes the first
    /// heartbeat.
    pub async fn join(
        store: Arc<SqlStore>,
        spec: PostgresSpec,
        clock: SharedClock,
        health: Arc<Health>,
    ) -> Result<(Arc<Member>, Election), JoinError> {
        let url = crate::storage::postgres::leader_url(&spec);
        let Some(session) = Session::open(&url, &spec.instance).await? else {
            return Err(JoinError::NameInUse(spec.instance.clone()));
        };
        let (tx, rx) = watch::channel(false);
        let member = Arc::new(Member {
            store,
            spec,
            incarnation: ulid::Ulid::new().to_string(),
            leading: rx,
            terms: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            api: std::sync::Mutex::new(String::new()),
            writable_since: AtomicU64::new(0),
            last_beat: AtomicU64::new(0),
            skewed: Default::default(),
        });
        let election = Election {
            member: member.clone(),
            leading: tx,
            session: Some(session),
            started_at: clock.now(),
            clock,
            health,
        };
        beat(
            &election.member,
            election.started_at,
            &election.clock,
            (false, true),
        )
        .await?;
        Ok((member, election))
    }

    /// Heartbeats and leads when it can, until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let gauge = metrics::gauge!(telemetry::CLUSTER_LEADER);
        let url = crate::storage::postgres::leader_url(&self.member.spec);
        let source = "cluster";
        let mut leading = false;
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let instance = self.member.instance().to_string();
            if self.session.is_none() {
                match Session::open(&url, &instance).await {
                    Ok(Some(s)) => self.session = Some(s),
                    Ok(None) => {
                        // Deposed while frozen, and the name taken since:
                        // two processes must not write as one instance.
                        self.superseded(&instance);
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "Cannot reach PostgreSQL for this instance's session.")
                    }
                }
            }
            let mut broken = false;
            leading = match self.session.as_mut() {
                None => false,
                Some(s) if leading => s.alive().await,
                Some(s) => s.try_lead().await.unwrap_or_else(|_| {
                    broken = true;
                    false
                }),
            };
            if broken {
                self.session = None;
            }
            if !leading {
                self.depose_frozen().await;
            }
            let was = self.leading.send_replace(leading);
            if was != leading {
                if leading {
                    tracing::info!(%instance, "This instance leads.");
                } else {
                    tracing::warn!(%instance, "This instance leads no more (its PostgreSQL session failed); following.");
                    // A failed session may still hold the name on the
                    // server until it notices: start afresh.
                    self.session = None;
                }
            }
            gauge.set(if leading { 1.0 } else { 0.0 });
            match beat(&self.member, self.started_at, &self.clock, (leading, false)).await {
                Ok(()) => self.health.ok(source),
                Err(crate::storage::StoreError::Superseded(_)) => {
                    self.superseded(&instance);
                    return;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Cannot write this instance's heartbeat.");
                    self.health.failed(source, err.to_string());
                }
            }
        }
        // Leaving: the locks go with the session; followers take over at
        // their next heartbeat. The instance's row goes too (its last
        // partials are written by now): it is neither listed nor waited for.
        let _ = self.leading.send(false);
        gauge.set(0.0);
        self.session = None;
        let (store, instance) = (&self.member.store, self.member.instance());
        if let Err(err) = store.leave(instance, &self.member.incarnation).await {
            tracing::warn!(error = %err, "Could not remove this instance from the list of instances; it will show as not alive.");
        }
    }
}

impl Election {
    /// Another process runs as this instance now: this one was deposed
    /// while frozen, and its name was taken since. It leads no more, says
    /// so, and ends, which stops the server (exit 1): its partials are
    /// refused already ([`crate::storage::StoreError::Superseded`]), and
    /// the two must not both take requests as one instance.
    fn superseded(&mut self, instance: &str) {
        let _ = self.leading.send(false);
        metrics::gauge!(telemetry::CLUSTER_LEADER).set(0.0);
        self.session = None;
        let why = format!("another verdict process runs as instance {instance} now (this one was deposed while it was frozen)");
        tracing::error!(%instance, error = %why, "This process is no longer the instance; stopping.");
        self.health.failed("cluster", why);
    }

    /// A follower ends the session of a leader that holds the lock but has
    /// not heartbeat for [`DEPOSE_AFTER`] while the database was writable
    /// for this instance: a frozen leader judges nothing, and would keep
    /// the lock as long as its connection lives.
    async fn depose_frozen(&mut self) {
        let since = self.member.writable_since.load(Ordering::SeqCst);
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if since == 0 {
            return;
        }
        match session.depose(DEPOSE_AFTER, since).await {
            Ok(deposed) => {
                for leader in deposed {
                    tracing::warn!(%leader, after = ?DEPOSE_AFTER, "Deposed the leader: it holds the lock but has not heartbeat; its PostgreSQL session was ended so another instance leads.");
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "Could not look for a frozen leader.");
            }
        }
    }
}

async fn beat(
    member: &Member,
    started_at: UnixNanos,
    clock: &SharedClock,
    (leader, first): (bool, bool),
) -> Result<(), crate::storage::StoreError> {
    let api = member.api.lock().map(|a| a.clone()).unwrap_or_default();
    let before = clock.now();
    let written = member
        .store
        .heartbeat(&Heartbeat {
            instance: member.instance(),
            incarnation: &member.incarnation,
            api: &api,
            started_at,
            leader,
            partials_pending: member.pending.load(Ordering::Relaxed),
            first,
        })
        .await;
    let db = match written {
        Ok(db) => db,
        Err(err) => {
            // The next heartbeat that gets through starts a new stretch.
            member.writable_since.store(0, Ordering::SeqCst);
            return Err(err);
        }
    };
    let after = clock.now();
    let previous = member.last_beat.swap(db, Ordering::SeqCst);
    let gap = crate::model::nanos(WRITE_GAP);
    if after.saturating_sub(before) > gap
        || db.saturating_sub(previous) > gap + crate::model::nanos(HEARTBEAT)
    {
        // The write itself waited (a lock, an I/O stall), or heartbeats
        // stopped getting through: the database was not writable for this
        // instance until now.
        member.writable_since.store(db, Ordering::SeqCst);
    } else {
        let _ = member
            .writable_since
            .compare_exchange(0, db, Ordering::SeqCst, Ordering::SeqCst);
    }
    // The instance's clock against PostgreSQL's, at the write's midpoint.
    let mid = before / 2 + after / 2;
    let skew = mid.abs_diff(db);
    let skewed = skew > crate::model::nanos(CLOCK_SKEW);
    if skewed && !member.skewed.swap(skewed, Ordering::Relaxed) {
        tracing::warn!(
            instance = member.instance(),
            skew_ms = skew / 1_000_000,
            ahead = mid > db,
            "This instance's clock differs from PostgreSQL's by more than 2 s; run NTP on every instance and on the database host (windows close by the instances' clocks)."
        );
    }
    if !skewed {
        member.skewed.store(false, Ordering::Relaxed);
    }
    Ok(())
}
