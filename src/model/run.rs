//! What the run engine stores and announces: runs, their window history,
//! and verdict events (design §5.5). Their JSON forms are the `verdict.v1`
//! protobuf messages (see [`crate::proto`]), the same data for the API, the
//! log exporter and webhooks.

use serde::Serialize;

use super::{
    Accum, CheckResult, Figures, LatencyBound, RunEvidence, Subject, UnixNanos, Window,
    WindowVerdict,
};

/// The state of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    /// Known, no sample yet.
    Pending,
    /// Samples arriving; no decision yet.
    Validating,
    /// Final: the release passed.
    Promoted,
    /// Final: the release failed (or timed out).
    RolledBack,
}

impl RunState {
    /// All four states, in exposition order.
    pub const ALL: [RunState; 4] = [
        RunState::Pending,
        RunState::Validating,
        RunState::Promoted,
        RunState::RolledBack,
    ];

    /// PROMOTED and ROLLED_BACK never change.
    pub fn is_final(self) -> bool {
        matches!(self, RunState::Promoted | RunState::RolledBack)
    }

    /// The name users see (`ROLLED_BACK`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "PENDING",
            RunState::Validating => "VALIDATING",
            RunState::Promoted => "PROMOTED",
            RunState::RolledBack => "ROLLED_BACK",
        }
    }
}

/// A run and everything needed to resume it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// Unique id (ULID).
    pub run_id: String,
    /// Contract name.
    pub contract: String,
    /// Contract version the run was started under.
    pub contract_version: u32,
    /// The release under validation.
    pub subject: Subject,
    /// Current state.
    pub state: RunState,
    /// Why it is in that state.
    pub reason: String,
    /// When the run was created.
    pub started_at: UnixNanos,
    /// When it became final.
    pub decided_at: Option<UnixNanos>,
    /// A reset replaced it by a newer run.
    pub superseded: bool,
    /// Consecutive passing sufficient windows.
    pub pass_streak: u32,
    /// Consecutive failing sufficient windows.
    pub fail_streak: u32,
    /// Windows recorded while validating.
    pub windows: u64,
    /// Everything the run counted until it became final.
    pub cumulative: Accum,
    /// End of the last window recorded for the run.
    pub last_window_end: Option<UnixNanos>,
    /// Time of the first sample (windows before its window are not recorded).
    pub first_sample_at: Option<UnixNanos>,
    /// The worst quantile bound of the windows recorded while validating:
    /// a run is only as precise as its least precise window.
    pub latency_bound: LatencyBound,
    /// Its checks as of the last look, and its baseline tally.
    pub evidence: RunEvidence,
    /// Only windows that start at or after this count for the run: set
    /// when it replaces a run (a reset, a new contract version), so the
    /// data that decided its predecessor does not decide it again.
    pub counts_from: Option<UnixNanos>,
    /// When it was retired: idle for its contract's `run_idle_timeout`, it
    /// left without a verdict (and is `superseded`).
    pub retired_at: Option<UnixNanos>,
    /// Why part of its stored data could not be read back (a database
    /// edited by hand, a bug of an older version): the run is listed with
    /// what could be read, so its neighbours and the start-up are unharmed,
    /// and an undecided one is replaced by a fresh run at start.
    pub unreadable: Option<String>,
    /// What the run is judged on (its counts, streaks or window tally)
    /// could not be read back: an undecided run cannot go on from it.
    pub counts_unreadable: bool,
}

impl RunRecord {
    /// A new PENDING run.
    pub fn new(contract: &str, contract_version: u32, subject: Subject, now: UnixNanos) -> Self {
        RunRecord {
            run_id: ulid::Ulid::new().to_string(),
            contract: contract.to_string(),
            contract_version,
            subject,
            state: RunState::Pending,
            reason: "waiting for the first sample".into(),
            started_at: now,
            decided_at: None,
            superseded: false,
            pass_streak: 0,
            fail_streak: 0,
            windows: 0,
            cumulative: Accum::default(),
            last_window_end: None,
            first_sample_at: None,
            latency_bound: LatencyBound::default(),
            evidence: RunEvidence::default(),
            counts_from: None,
            retired_at: None,
            unreadable: None,
            counts_unreadable: false,
        }
    }
}

/// One window of a run's history.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowRecord {
    /// The window.
    pub window: Window,
    /// Its figures.
    pub figures: Figures,
    /// Pass, fail or insufficient.
    pub result: WindowVerdict,
    /// One sentence per failed check.
    pub failures: Vec<String>,
    /// One sentence per check the window could not judge.
    pub notes: Vec<String>,
    /// The run's checks as of this window's close.
    pub checks: Vec<CheckResult>,
}

/// One transition, announced once with one `event_id` to every exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictEvent {
    /// Stable id of the transition (ULID).
    pub event_id: String,
    /// When the transition was committed.
    pub emitted_at: UnixNanos,
    /// The run after the transition.
    pub run: RunRecord,
    /// The state before.
    pub previous_state: RunState,
    /// The window that decided, if any.
    pub window: Option<WindowRecord>,
    /// Failed checks that caused it (empty for a promotion).
    pub failures: Vec<String>,
    /// The contract is `dry_run`: nothing is triggered.
    pub dry_run: bool,
}
