//! The run state machine, pure and synchronous (design §5.1, §5.2):
//!
//! ```text
//! PENDING ──first sample──> VALIDATING ──pass──> PROMOTED
//!    │                           └──────fail──> ROLLED_BACK
//!    └───────────max_duration──────────────────> ROLLED_BACK
//! ```
//!
//! Every function returns `None` for a final run: PROMOTED and ROLLED_BACK
//! never change, whatever arrives later.

use crate::config::{ContractSpec, OnTimeout};
use crate::contracts::evaluate::judge_thresholds;
use crate::contracts::evidence::Verdict;
use crate::model::UnixNanos;
use crate::model::{Figures, WindowOutcome, WindowVerdict};

use crate::model::{RunRecord, RunState};

/// A transition the machine decided on.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The new state.
    pub to: RunState,
    /// Why, as a sentence.
    pub reason: String,
    /// Failed checks behind it (empty unless rolling back on failures).
    pub failures: Vec<String>,
}

/// PENDING → VALIDATING on the first sample.
pub fn on_first_sample(run: &RunRecord) -> Option<Transition> {
    (run.state == RunState::Pending).then(|| Transition {
        to: RunState::Validating,
        reason: "first sample received".into(),
        failures: Vec::new(),
    })
}

/// Applies a judged window to the streaks and decides. The caller has added
/// the window to `run.cumulative` already.
pub fn on_window(
    run: &mut RunRecord,
    spec: &ContractSpec,
    outcome: &WindowOutcome,
) -> Option<Transition> {
    if run.state.is_final() {
        return None;
    }
    match outcome.verdict {
        // Neither breaks nor extends a streak.
        WindowVerdict::Insufficient => return None,
        WindowVerdict::Fail => {
            run.fail_streak += 1;
            run.pass_streak = 0;
        }
        WindowVerdict::Pass => {
            run.pass_streak += 1;
            run.fail_streak = 0;
        }
    }
    if run.fail_streak >= spec.fail_windows {
        let reason = if spec.fail_windows == 1 {
            outcome.failures.join("; ")
        } else {
            format!(
                "failed {} consecutive windows: {}",
                run.fail_streak,
                outcome.failures.join("; ")
            )
        };
        return Some(Transition {
            to: RunState::RolledBack,
            reason,
            failures: outcome.failures.clone(),
        });
    }
    let samples = run.cumulative.samples;
    if run.pass_streak >= spec.pass_windows && samples >= spec.min_samples {
        // The whole run must pass too, not only its last windows, and on
        // figures whose bounds leave no doubt.
        if judge_thresholds(spec, &Figures::of(&run.cumulative), Some(&run.cumulative)).passes() {
            return Some(Transition {
                to: RunState::Promoted,
                reason: format!(
                    "passed {} consecutive windows, {} samples, all checks within limits",
                    run.pass_streak, samples
                ),
                failures: Vec::new(),
            });
        }
    }
    None
}

/// Decides on a look at the run's evidence (`decision: sequential`): a
/// check proven failing rolls back; every check proven passing promotes
/// once the run has `min_samples`.
pub fn on_evidence(run: &RunRecord, spec: &ContractSpec, verdict: &Verdict) -> Option<Transition> {
    if run.state.is_final() {
        return None;
    }
    match verdict {
        Verdict::Fail(failures) => Some(Transition {
            to: RunState::RolledBack,
            reason: failures.join("; "),
            failures: failures.clone(),
        }),
        Verdict::Pass(reason) if run.cumulative.samples >= spec.min_samples => Some(Transition {
            to: RunState::Promoted,
            reason: format!("{reason}; {} samples", run.cumulative.samples),
            failures: Vec::new(),
        }),
        Verdict::Pass(_) | Verdict::Open => None,
    }
}

/// Decides a run that has reached `max_duration` without a decision.
pub fn on_timeout(run: &RunRecord, spec: &ContractSpec, now: UnixNanos) -> Option<Transition> {
    let max = spec.max_duration?;
    if run.state.is_final() || now < run.started_at.saturating_add(crate::model::nanos(max)) {
        return None;
    }
    Some(timed_out(
        spec,
        format!(
            "timeout: no decision after {}",
            humantime::format_duration(max)
        ),
    ))
}

/// Decides a run that went idle (`on_idle: timeout`) as `on_timeout` says.
pub fn on_idle(run: &RunRecord, spec: &ContractSpec) -> Option<Transition> {
    if run.state.is_final() {
        return None;
    }
    Some(timed_out(
        spec,
        format!(
            "timeout: no sample for {} (run_idle_timeout)",
            humantime::format_duration(spec.run_idle_timeout)
        ),
    ))
}

/// The transition `on_timeout` asks for, with `reason`.
fn timed_out(spec: &ContractSpec, reason: String) -> Transition {
    let to = match spec.on_timeout {
        OnTimeout::Rollback => RunState::RolledBack,
        OnTimeout::Promote => RunState::Promoted,
    };
    Transition {
        to,
        reason,
        failures: Vec::new(),
    }
}

/// Retires an idle undecided run (`on_idle: retire`): it leaves without a
/// verdict — nothing is announced — and new data for its subject starts a
/// new run.
pub fn retire(run: &mut RunRecord, spec: &ContractSpec, now: UnixNanos) {
    if run.state.is_final() {
        return;
    }
    run.superseded = true;
    run.retired_at = Some(now);
    run.reason = format!(
        "retired without a verdict: no sample for {} (run_idle_timeout)",
        humantime::format_duration(spec.run_idle_timeout)
    );
}

/// Supersedes an undecided run whose contract now has another version: it
/// leaves without a verdict, like a retired run, and its subject's next data
/// starts a run under `spec`.
pub fn replace(run: &mut RunRecord, spec: &ContractSpec, now: UnixNanos) {
    if run.state.is_final() {
        return;
    }
    run.superseded = true;
    run.retired_at = Some(now);
    run.reason = format!(
        "replaced by contract version {} without a verdict (it was {} under version {})",
        spec.version,
        run.state.as_str(),
        run.contract_version
    );
}

/// Supersedes an undecided run whose stored counts could not be read back:
/// judging it on what is left would decide on data it never had.
pub fn abandon_unreadable(run: &mut RunRecord, now: UnixNanos) {
    if run.state.is_final() {
        return;
    }
    run.superseded = true;
    run.retired_at = Some(now);
    run.reason = format!(
        "stored data unreadable ({}); a new run starts with the next data (it was {})",
        run.unreadable.as_deref().unwrap_or("unknown"),
        run.state.as_str()
    );
}

/// Applies a transition to the run.
pub fn apply(run: &mut RunRecord, t: &Transition, now: UnixNanos) {
    run.state = t.to;
    run.reason = t.reason.clone();
    if t.to.is_final() {
        run.decided_at = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ContractSpec, OnTimeout, Thresholds};
    use crate::model::Subject;
    use proptest::prelude::*;
    use std::time::Duration;

    fn spec() -> ContractSpec {
        ContractSpec {
            subject_by: vec!["service.version".into()],
            span_kinds: vec![2],
            min_samples: 30,
            pass_windows: 3,
            fail_windows: 2,
            max_duration: Some(Duration::from_secs(60)),
            ..ContractSpec::with_thresholds(
                "c",
                Thresholds {
                    max_p95_latency_ms: Some(100.0),
                    ..Thresholds::default()
                },
            )
        }
    }

    fn validating() -> RunRecord {
        let mut r = RunRecord::new("c", 1, Subject::new(vec![("v".into(), "2".into())]), 0);
        let t = on_first_sample(&r).expect("pending run starts validating");
        apply(&mut r, &t, 1);
        r
    }

    fn outcome(v: WindowVerdict) -> WindowOutcome {
        WindowOutcome {
            verdict: v,
            failures: if v == WindowVerdict::Fail {
                vec!["p95 latency 130.0ms exceeds threshold 100ms".into()]
            } else {
                vec![]
            },
            notes: Vec::new(),
        }
    }

    fn add_samples(r: &mut RunRecord, n: u64, ms: f64) {
        for _ in 0..n {
            let _ = r.cumulative.latency.insert(ms);
        }
        r.cumulative.samples += n;
    }

    #[test]
    fn promotes_after_pass_windows_and_min_samples() {
        let s = spec();
        let mut r = validating();
        for i in 0..3 {
            add_samples(&mut r, 5, 10.0);
            assert_eq!(
                on_window(&mut r, &s, &outcome(WindowVerdict::Pass)),
                None,
                "window {i}"
            );
        }
        // Streak reached but only 15 samples: wait for min_samples.
        add_samples(&mut r, 20, 10.0);
        let t = on_window(&mut r, &s, &outcome(WindowVerdict::Pass)).expect("promotes");
        assert_eq!(t.to, RunState::Promoted);
        assert_eq!(
            t.reason,
            "passed 4 consecutive windows, 35 samples, all checks within limits"
        );
    }

    #[test]
    fn insufficient_windows_neither_break_nor_extend() {
        let s = spec();
        let mut r = validating();
        add_samples(&mut r, 100, 10.0);
        on_window(&mut r, &s, &outcome(WindowVerdict::Fail));
        on_window(&mut r, &s, &outcome(WindowVerdict::Insufficient));
        let t = on_window(&mut r, &s, &outcome(WindowVerdict::Fail)).expect("rolls back");
        assert_eq!(t.to, RunState::RolledBack);
        assert!(t
            .reason
            .starts_with("failed 2 consecutive windows: p95 latency"));
    }

    #[test]
    fn cumulative_failure_blocks_promotion() {
        let s = spec();
        let mut r = validating();
        add_samples(&mut r, 100, 500.0);
        for _ in 0..5 {
            assert_eq!(on_window(&mut r, &s, &outcome(WindowVerdict::Pass)), None);
        }
    }

    #[test]
    fn timeout_follows_on_timeout() {
        let mut s = spec();
        let r = validating();
        assert_eq!(on_timeout(&r, &s, 59_000_000_000), None);
        let t = on_timeout(&r, &s, 60_000_000_000).expect("times out");
        assert_eq!(
            (t.to, t.reason.as_str()),
            (RunState::RolledBack, "timeout: no decision after 1m")
        );
        s.on_timeout = OnTimeout::Promote;
        assert_eq!(
            on_timeout(&r, &s, u64::MAX).map(|t| t.to),
            Some(RunState::Promoted)
        );
    }

    proptest! {
        /// Whatever sequence of windows and timeouts arrives, a final run
        /// never changes state again.
        #[test]
        fn final_states_never_flip(inputs in proptest::collection::vec(0u8..4, 1..60)) {
            let s = spec();
            let mut r = validating();
            let mut final_state = None;
            for (i, x) in inputs.into_iter().enumerate() {
                add_samples(&mut r, 10, 10.0);
                let t = match x {
                    0 => on_window(&mut r, &s, &outcome(WindowVerdict::Pass)),
                    1 => on_window(&mut r, &s, &outcome(WindowVerdict::Fail)),
                    2 => on_window(&mut r, &s, &outcome(WindowVerdict::Insufficient)),
                    _ => on_timeout(&r, &s, i as u64 * 10_000_000_000),
                };
                if let Some(t) = t {
                    prop_assert!(final_state.is_none(), "a final run changed: {:?}", t);
                    prop_assert!(!r.state.is_final());
                    apply(&mut r, &t, i as u64);
                    if r.state.is_final() { final_state = Some(r.state); }
                }
                if let Some(f) = final_state { prop_assert_eq!(r.state, f); }
            }
        }
    }
}
