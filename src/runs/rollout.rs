//! Canary stepping, pure: how one `unleash` exporter moves one run's flag
//! (design §7). The run engine calls it where runs change — a transition, a
//! judged window, Unleash's acknowledgement of a change — and commits what
//! it returns with the run, so every flag change is an outbox row written in
//! the same transaction as the step or transition that decided it.
//!
//! - VALIDATING sets the first step (the release has shown it is alive);
//! - after Unleash acknowledged a step, windows count only from one SDK
//!   refresh interval later (before that, SDKs with the old value and SDKs
//!   with the new one would mix in one window); `step_windows` counting
//!   windows raise the rollout to the next step;
//! - PROMOTED sets 100 %, ROLLED_BACK sets 0 % or turns the flag off;
//! - a run is promoted by its windows only once every flag it drives has
//!   held its last step: promoting at 5 % would jump to 100 % and skip the
//!   steps the rollout exists for.
//!
//! A window counts with `decision: windows` when it passes (a failing one
//! starts the count again); with `decision: sequential` when it has enough
//! samples and no check is proven failing.

use crate::config::{Decision, OnRollback, UnleashSpec};
use crate::model::rollout::FLAG_CHANGE;
use crate::model::{
    nanos, rfc3339_millis, CheckStatus, FlagChange, FlagTemplate, Rollout, RolloutPhase, RunRecord,
    RunState, UnixNanos, VerdictEvent, WindowRecord, WindowVerdict,
};
use crate::storage::RolloutCommit;

/// An `unleash` exporter as the run engine sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stepper {
    /// Full exporter id.
    pub exporter: String,
    /// The flag of each run.
    pub flag: FlagTemplate,
    /// Rollout percentages, increasing.
    pub steps: Vec<u32>,
    /// Counting windows per step.
    pub step_windows: u32,
    /// The SDKs' refresh interval, in nanoseconds.
    pub refresh: UnixNanos,
    /// What a rollback does.
    pub on_rollback: OnRollback,
    /// The pipeline's window size and allowed lateness, in nanoseconds
    /// (set by the run engine).
    pub timing: (UnixNanos, UnixNanos),
}

impl Stepper {
    /// The stepper of exporter `id`.
    pub fn new(id: &str, spec: &UnleashSpec) -> Stepper {
        Stepper {
            exporter: id.to_string(),
            flag: spec.flag.clone(),
            steps: spec.steps.clone(),
            step_windows: spec.step_windows,
            refresh: nanos(spec.refresh_interval),
            on_rollback: spec.on_rollback,
            timing: (0, 0),
        }
    }

    fn last(&self) -> usize {
        self.steps.len().saturating_sub(1)
    }

    /// The change a transition of `run` calls for: the first step on
    /// VALIDATING, 100 % on PROMOTED, 0 % (or off) on ROLLED_BACK. A
    /// rollback of a run whose flag was never set changes nothing.
    pub fn on_transition(
        &self,
        current: Option<&Rollout>,
        event: &VerdictEvent,
        change_id: impl FnOnce() -> String,
        now: UnixNanos,
    ) -> Option<RolloutCommit> {
        let run = &event.run;
        let flag = self.flag.fill(&run.subject)?;
        let fresh = || Rollout {
            run_id: run.run_id.clone(),
            exporter: self.exporter.clone(),
            flag: flag.clone(),
            phase: RolloutPhase::Stepping,
            step: 0,
            percent: 0,
            enabled: false,
            change_id: String::new(),
            changed_at: now,
            acked_at: None,
            counted: 0,
            last_counted_end: None,
            steps: self.steps.len(),
            next_step_at: None,
        };
        let (mut r, phase, step, percent, enabled, reason) = match (run.state, current) {
            (RunState::Validating, None) => (
                fresh(),
                RolloutPhase::Stepping,
                0,
                self.steps[0],
                true,
                format!(
                    "step 1 of {}: the run is VALIDATING ({})",
                    self.steps.len(),
                    run.reason
                ),
            ),
            (RunState::Promoted, cur) if cur.is_none_or(|c| c.phase == RolloutPhase::Stepping) => (
                cur.cloned().unwrap_or_else(fresh),
                RolloutPhase::Promoted,
                self.last(),
                100,
                true,
                format!("run PROMOTED: {}", run.reason),
            ),
            (RunState::RolledBack, Some(cur)) if cur.phase != RolloutPhase::RolledBack => {
                let (percent, enabled) = match self.on_rollback {
                    OnRollback::Zero => (0, true),
                    OnRollback::Disable => (cur.percent, false),
                };
                (
                    cur.clone(),
                    RolloutPhase::RolledBack,
                    cur.step,
                    percent,
                    enabled,
                    format!("run ROLLED_BACK: {}", run.reason),
                )
            }
            _ => return None,
        };
        r.phase = phase;
        r.step = step;
        Some(self.change(&mut r, run, percent, enabled, reason, change_id(), now))
    }

    /// Counts a judged window of `run` toward the next step; returns the
    /// raise it completes, if any. `r` is updated in place (its count).
    pub fn on_window(
        &self,
        r: &mut Rollout,
        run: &RunRecord,
        record: &WindowRecord,
        decision: Decision,
        change_id: impl FnOnce() -> String,
        now: UnixNanos,
    ) -> Option<RolloutCommit> {
        if r.phase != RolloutPhase::Stepping {
            return None;
        }
        let from = r.counts_from(self.refresh)?;
        if record.window.start < from || r.last_counted_end.is_some_and(|e| record.window.end <= e)
        {
            return None;
        }
        let counts = match decision {
            Decision::Windows => match record.result {
                WindowVerdict::Pass => Some(true),
                WindowVerdict::Fail => Some(false),
                WindowVerdict::Insufficient => None,
            },
            Decision::Sequential => (record.result != WindowVerdict::Insufficient
                && !run
                    .evidence
                    .checks
                    .iter()
                    .any(|c| c.status == CheckStatus::Failing))
            .then_some(true),
        };
        match counts {
            Some(true) => r.counted += 1,
            Some(false) => r.counted = 0,
            None => return None,
        }
        r.last_counted_end = Some(record.window.end);
        if r.counted < self.step_windows || r.step >= self.last() {
            r.next_step_at = self.next_step_at(r);
            return None;
        }
        let reason = format!(
            "step {} of {}: {} window(s) passed at {}%",
            r.step + 2,
            self.steps.len(),
            r.counted,
            r.percent
        );
        r.step += 1;
        let percent = self.steps[r.step];
        Some(self.change(r, run, percent, true, reason, change_id(), now))
    }

    /// Unleash applied `r`'s latest change at `at`.
    pub fn acked(&self, r: &mut Rollout, at: UnixNanos) {
        if r.acked_at.is_none() {
            r.acked_at = Some(at);
            r.next_step_at = self.next_step_at(r);
        }
    }

    /// Recomputes when `r`'s next step can come (a rollout read back from
    /// storage).
    pub fn refresh(&self, r: &mut Rollout) {
        r.next_step_at = self.next_step_at(r);
    }

    /// Whether `r` has held its last step for `step_windows` windows: the
    /// run's windows may promote it.
    pub fn complete(&self, r: &Rollout) -> bool {
        r.phase != RolloutPhase::Stepping
            || (r.step >= self.last() && r.acked_at.is_some() && r.counted >= self.step_windows)
    }

    /// The earliest time the next step (or, at the last step, promotion)
    /// can come: the windows still needed, each judged at its deadline;
    /// `None` until Unleash acknowledged the current step, or when final.
    fn next_step_at(&self, r: &Rollout) -> Option<UnixNanos> {
        let (size, lateness) = self.timing;
        if r.phase != RolloutPhase::Stepping || size == 0 {
            return None;
        }
        let from = r.counts_from(self.refresh)?;
        let first = from.div_ceil(size).saturating_mul(size);
        let start = first.max(r.last_counted_end.unwrap_or(0));
        let left = u64::from(self.step_windows.saturating_sub(r.counted)).max(1);
        Some(
            start
                .saturating_add(left.saturating_mul(size))
                .saturating_add(lateness),
        )
    }

    /// Sets `r` to a new value and builds the change to deliver.
    #[allow(clippy::too_many_arguments)]
    fn change(
        &self,
        r: &mut Rollout,
        run: &RunRecord,
        percent: u32,
        enabled: bool,
        reason: String,
        change_id: String,
        now: UnixNanos,
    ) -> RolloutCommit {
        r.percent = percent;
        r.enabled = enabled;
        r.change_id = change_id;
        r.changed_at = now;
        r.acked_at = None;
        r.counted = 0;
        r.last_counted_end = None;
        r.next_step_at = None;
        let change = FlagChange {
            kind: FLAG_CHANGE.to_string(),
            change_id: r.change_id.clone(),
            emitted_at: rfc3339_millis(now),
            contract: run.contract.clone(),
            run_id: run.run_id.clone(),
            subject: run.subject.joined().to_string(),
            exporter: self.exporter.clone(),
            flag: r.flag.clone(),
            percent,
            enabled,
            rollback: r.phase == RolloutPhase::RolledBack,
            state: run.state.as_str().to_string(),
            reason,
        };
        RolloutCommit {
            rollout: r.clone(),
            change: Some(change),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Figures, Subject, Window};

    const S: u64 = 1_000_000_000;

    fn stepper() -> Stepper {
        Stepper {
            exporter: "unleash".into(),
            flag: FlagTemplate::parse("checkout-{service.version}").expect("parses"),
            steps: vec![5, 10, 25, 50, 100],
            step_windows: 2,
            refresh: 3 * S,
            on_rollback: OnRollback::Zero,
            timing: (S, S / 5),
        }
    }

    fn run(state: RunState) -> RunRecord {
        let mut r = RunRecord::new(
            "checkout",
            1,
            Subject::new(vec![("service.version".into(), "2.0.1".into())]),
            0,
        );
        r.state = state;
        r
    }

    fn event(run: RunRecord) -> VerdictEvent {
        VerdictEvent {
            event_id: "e".into(),
            emitted_at: 0,
            previous_state: RunState::Pending,
            run,
            window: None,
            failures: Vec::new(),
            dry_run: false,
        }
    }

    fn window(start_s: u64, result: WindowVerdict) -> WindowRecord {
        WindowRecord {
            window: Window {
                start: start_s * S,
                end: (start_s + 1) * S,
            },
            figures: Figures::of(&Default::default()),
            result,
            failures: Vec::new(),
            notes: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// 5 → 10 → … → 100, each step held from its acknowledgement plus the
    /// refresh interval, then `step_windows` passing windows.
    #[test]
    fn steps_up_after_the_hold_and_passing_windows() {
        let s = stepper();
        let v = run(RunState::Validating);
        let first = s
            .on_transition(None, &event(v.clone()), || "c0".into(), 10 * S)
            .expect("first step");
        let mut r = first.rollout;
        assert_eq!((r.percent, r.enabled, r.step), (5, true, 0));
        // Not acknowledged yet: windows do not count.
        assert!(s
            .on_window(
                &mut r,
                &v,
                &window(11, WindowVerdict::Pass),
                Decision::Windows,
                || "x".into(),
                12 * S
            )
            .is_none());
        assert_eq!(r.counted, 0);
        s.acked(&mut r, 12 * S);
        // Counting starts with the first window starting at or after 15 s.
        assert_eq!(r.next_step_at, Some(17 * S + S / 5));
        for start in [13, 14] {
            assert!(s
                .on_window(
                    &mut r,
                    &v,
                    &window(start, WindowVerdict::Pass),
                    Decision::Windows,
                    || "x".into(),
                    0
                )
                .is_none());
        }
        assert_eq!(r.counted, 0);
        assert!(s
            .on_window(
                &mut r,
                &v,
                &window(15, WindowVerdict::Pass),
                Decision::Windows,
                || "x".into(),
                0
            )
            .is_none());
        // A failing window starts the count again.
        assert!(s
            .on_window(
                &mut r,
                &v,
                &window(16, WindowVerdict::Fail),
                Decision::Windows,
                || "x".into(),
                0
            )
            .is_none());
        assert_eq!(r.counted, 0);
        s.on_window(
            &mut r,
            &v,
            &window(17, WindowVerdict::Pass),
            Decision::Windows,
            || "x".into(),
            0,
        );
        let raised = s
            .on_window(
                &mut r,
                &v,
                &window(18, WindowVerdict::Pass),
                Decision::Windows,
                || "c1".into(),
                19 * S,
            )
            .expect("raised");
        let change = raised.change.expect("change");
        assert_eq!((change.percent, change.change_id.as_str()), (10, "c1"));
        assert!(
            change.reason.starts_with("step 2 of 5"),
            "{}",
            change.reason
        );
        r = raised.rollout;
        assert_eq!((r.step, r.acked_at, r.counted), (1, None, 0));
        assert!(!s.complete(&r));
    }

    #[test]
    fn promotion_sets_100_and_rollback_0_or_off() {
        let s = stepper();
        let v = run(RunState::Validating);
        let r = s
            .on_transition(None, &event(v), || "c0".into(), 0)
            .expect("first")
            .rollout;
        let promoted = s
            .on_transition(Some(&r), &event(run(RunState::Promoted)), || "c1".into(), 0)
            .expect("promoted");
        assert_eq!(promoted.rollout.percent, 100);
        assert_eq!(promoted.rollout.phase, RolloutPhase::Promoted);
        let rolled = s
            .on_transition(
                Some(&r),
                &event(run(RunState::RolledBack)),
                || "c2".into(),
                0,
            )
            .expect("rolled back");
        let change = rolled.change.expect("change");
        assert_eq!(
            (change.percent, change.enabled, change.rollback),
            (0, true, true)
        );
        let off = Stepper {
            on_rollback: OnRollback::Disable,
            ..stepper()
        };
        let change = off
            .on_transition(
                Some(&r),
                &event(run(RunState::RolledBack)),
                || "c3".into(),
                0,
            )
            .expect("off")
            .change
            .expect("change");
        assert_eq!((change.percent, change.enabled), (5, false));
        // A rollback of a flag verdict never set changes nothing; a final
        // rollout never changes again.
        assert!(s
            .on_transition(None, &event(run(RunState::RolledBack)), || "c4".into(), 0)
            .is_none());
        assert!(s
            .on_transition(
                Some(&rolled.rollout),
                &event(run(RunState::Promoted)),
                || "c5".into(),
                0
            )
            .is_none());
    }
}
