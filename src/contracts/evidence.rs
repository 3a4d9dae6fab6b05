//! Sequential decisions (design §5.3): every check of a contract becomes a
//! proportion tested with an always-valid confidence sequence
//! ([`super::sequential`]) on the run's cumulative counts, at every window
//! close (a look), however many looks there are.
//!
//! | check | the share | passes while |
//! |---|---|---|
//! | `max_p50/p95/p99_latency_ms: L` | requests slower than L | ≤ 50 / 5 / 1 % |
//! | `max_error_rate_percent: E` | failed requests | ≤ E |
//! | `min_conversion_rate_percent: C` | converted requests | ≥ C |
//! | `baseline.max_error_rate_increase_points: D` | failed, canary − baseline | ≤ D points |
//! | `baseline.max_p95_latency_increase_percent: I` | canary slower than R·(1+I) − baseline slower than R | ≤ 0 |
//!
//! Latency counts come from the sketch on the conservative side of its
//! bound ([`Accum::slower_than`]): the count surely above L for a failure,
//! the count possibly above L for a pass, so a coarse or spread bucket that
//! straddles L is evidence of nothing. R, the baseline's p95, is fixed from
//! baseline windows that closed before the run's first judged window (see
//! [`Reference`]) and never from the samples it is then tested on.
//!
//! A run's `alpha` is split evenly over its checks (each check's lower and
//! upper bounds are one-sided at `alpha / k`), so the chance that a run is
//! wrongly rolled back, or wrongly promoted, is at most `alpha` however
//! often it is looked at. Each check keeps a running bound, the
//! intersection of its bounds at every look so far (valid because the
//! sequence covers the true share at all looks at once), so a proven
//! result never un-proves; a release that regresses after an early pass
//! can still be proven failing, and failing wins (see [`running`]).
//! ROLLED_BACK as soon as a check is proven failing; PROMOTED when every
//! check is proven passing and `min_samples` is reached. A check that can only be proven failing (an error-rate limit of
//! 0, a conversion floor of 100 %, no allowed increase over the baseline)
//! guards against regressions and does not hold a promotion back: no amount
//! of data proves a share below 0. A contract made only of such checks
//! promotes once `min_samples` requests showed no proven failure, which is
//! why configuration requires `min_samples` for it. A limit every share
//! meets (errors ≤ 100 %, conversion ≥ 0 %) passes without data.

use std::collections::VecDeque;

use super::evaluate::limit as fmt_limit;
use super::sequential::{Counts, DifferenceCheck, Direction, Evidence, ProportionCheck, Status};
use crate::config::ContractSpec;
use crate::model::{
    Accum, BaselineTally, CheckKind, CheckResult, CheckStatus, Quantile, RunEvidence,
};

/// Where the baseline comparison's confidence sequence is tightest, in
/// samples of both arms (GrowthBook's default; about the samples at the end
/// of a canary's first step).
pub const TUNING_SAMPLES: f64 = 5000.0;

/// Baseline latencies a reference p95 needs before it is fixed.
pub const MIN_REFERENCE_LATENCIES: u64 = 100;

/// Baseline windows a reference is taken from at most.
const REFERENCE_WINDOWS: usize = 10;

/// Baseline latencies after which older windows are not needed for the
/// reference.
const REFERENCE_LATENCIES: u64 = 1000;

/// What a look decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Some check is proven failing: one sentence per failing check.
    Fail(Vec<String>),
    /// Every check is proven passing (fail-only checks: not failing); the
    /// sentence names the evidence.
    Pass(String),
    /// Keep collecting.
    Open,
}

/// One check of a contract, as planned from its spec.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Planned {
    kind: CheckKind,
    /// The share's limit (or the allowed difference).
    limit: f64,
    direction: Direction,
    /// Latency the share is counted above (latency checks).
    threshold_ms: Option<f64>,
    /// The user's number, for sentences (`120` ms, `2` %, `0.5` points).
    written: f64,
    /// Allowed p95 increase over the baseline, in percent.
    increase_percent: f64,
}

impl Planned {
    fn fail_only(&self) -> bool {
        match self.kind {
            CheckKind::ErrorRate => self.limit <= 0.0,
            CheckKind::ConversionRate => self.limit >= 1.0,
            CheckKind::BaselineErrorRate => self.limit <= 0.0,
            CheckKind::BaselineP95Latency => self.increase_percent <= 0.0,
            _ => false,
        }
    }

    /// Every share meets the limit: the check cannot fail.
    fn trivial(&self) -> bool {
        match self.kind {
            CheckKind::ErrorRate | CheckKind::BaselineErrorRate => self.limit >= 1.0,
            CheckKind::ConversionRate => self.limit <= 0.0,
            _ => false,
        }
    }
}

/// The checks of a contract, in a fixed order.
fn plan(spec: &ContractSpec) -> Vec<Planned> {
    let t = &spec.thresholds;
    let mut out = Vec::new();
    let latency = |kind, q: Quantile, max: Option<f64>| {
        max.map(|ms| Planned {
            kind,
            limit: q.tail(),
            direction: Direction::AtMost,
            threshold_ms: Some(ms),
            written: ms,
            increase_percent: 0.0,
        })
    };
    out.extend(latency(
        CheckKind::P50Latency,
        Quantile::P50,
        t.max_p50_latency_ms,
    ));
    out.extend(latency(
        CheckKind::P95Latency,
        Quantile::P95,
        t.max_p95_latency_ms,
    ));
    out.extend(latency(
        CheckKind::P99Latency,
        Quantile::P99,
        t.max_p99_latency_ms,
    ));
    let share = |kind, percent: Option<f64>, direction| {
        percent.map(|p| Planned {
            kind,
            limit: (p / 100.0).clamp(0.0, 1.0),
            direction,
            threshold_ms: None,
            written: p,
            increase_percent: 0.0,
        })
    };
    out.extend(share(
        CheckKind::ErrorRate,
        t.max_error_rate_percent,
        Direction::AtMost,
    ));
    out.extend(share(
        CheckKind::ConversionRate,
        t.min_conversion_rate_percent,
        Direction::AtLeast,
    ));
    if let Some(b) = &spec.baseline {
        if let Some(points) = b.max_error_rate_increase_points {
            out.push(Planned {
                kind: CheckKind::BaselineErrorRate,
                limit: (points / 100.0).clamp(0.0, 1.0),
                direction: Direction::AtMost,
                threshold_ms: None,
                written: points,
                increase_percent: 0.0,
            });
        }
        if let Some(increase) = b.max_p95_latency_increase_percent {
            out.push(Planned {
                kind: CheckKind::BaselineP95Latency,
                limit: 0.0,
                direction: Direction::AtMost,
                threshold_ms: None,
                written: increase,
                increase_percent: increase.max(0.0),
            });
        }
    }
    out
}

/// The counts a one-sample check looks at.
fn counts(p: &Planned, cumulative: &Accum) -> Counts {
    match (p.kind, p.threshold_ms) {
        (CheckKind::ErrorRate, _) => Counts::exact(cumulative.errors, cumulative.samples),
        (CheckKind::ConversionRate, _) => Counts::exact(cumulative.conversions, cumulative.samples),
        (_, Some(ms)) => {
            let e = cumulative.slower_than(ms);
            Counts::range(e.surely, e.possibly, e.of)
        }
        _ => Counts::default(),
    }
}

/// The counts (canary, baseline) a comparison looks at; `None` while it
/// has nothing to compare.
fn difference_counts(
    p: &Planned,
    cumulative: &Accum,
    b: &BaselineTally,
) -> Option<(Counts, Counts)> {
    match p.kind {
        CheckKind::BaselineErrorRate => Some((
            Counts::exact(cumulative.errors, cumulative.samples),
            Counts::exact(b.errors, b.samples),
        )),
        CheckKind::BaselineP95Latency => b.reference_ms.map(|_| {
            (
                Counts::range(b.slow_surely, b.slow_possibly, b.latencies),
                Counts::range(b.base_slow_surely, b.base_slow_possibly, b.base_latencies),
            )
        }),
        _ => None,
    }
}

/// Looks at a run's cumulative counts: replaces `evidence.checks` with the
/// running bounds after this look and says what they decide. `alpha` is
/// the run's; each of the `k` checks gets `alpha / k`.
pub fn look(spec: &ContractSpec, evidence: &mut RunEvidence, cumulative: &Accum) -> Verdict {
    let planned = plan(spec);
    let alpha = spec.alpha / planned.len().max(1) as f64;
    let checks = planned
        .iter()
        .map(|p| {
            let now = look_at(p, alpha, evidence, cumulative);
            let before = evidence.checks.iter().find(|c| same_check(c, &now));
            running(p, before, now)
        })
        .collect();
    evidence.checks = checks;
    decide(spec, &planned, evidence)
}

/// The earlier look's result is of the same check: same kind, limit and
/// latency thresholds (a changed contract starts a new run anyway; this
/// only guards against evidence stored by another version of a check).
fn same_check(before: &CheckResult, now: &CheckResult) -> bool {
    before.check == now.check
        && before.limit == now.limit
        && before.threshold_ms == now.threshold_ms
        && before.reference_ms == now.reference_ms
        && before.fail_only == now.fail_only
}

/// The running bound: the intersection of every look's confidence bounds.
///
/// A confidence sequence covers the true share at all looks at once, so
/// its running intersection does too, with the same `alpha`; it is never
/// wider than the current look's, and a proven result never un-proves:
/// the upper bound only falls and the lower bound only rises. Should a
/// release regress after an early pass, its lower bound can still rise
/// over the limit; then both sides are "proven" (the bounds cross, which
/// under a steady share happens with probability at most `alpha`) and
/// failing wins, so the run is rolled back rather than promoted on its
/// earlier data.
fn running(p: &Planned, before: Option<&CheckResult>, mut now: CheckResult) -> CheckResult {
    let Some(before) = before else {
        return now;
    };
    let this_look = (now.lower, now.upper);
    now.lower = now.lower.max(before.lower);
    now.upper = now.upper.min(before.upper);
    let (fails, passes) = p.direction.proves(now.lower, now.upper, p.limit);
    now.status = if fails && !p.trivial() {
        CheckStatus::Failing
    } else if passes || p.trivial() {
        CheckStatus::Passing
    } else {
        CheckStatus::Open
    };
    if now.lower > now.upper {
        // Crossed bounds: the share changed during the run. Shown as they
        // are they would read "sure above 2.6 %, sure below 0.4 %"; the
        // side that decided keeps its running bound and the other side is
        // this look's, never crossing it.
        let keep_lower = matches!(
            (now.status, p.direction),
            (CheckStatus::Failing, Direction::AtMost) | (CheckStatus::Passing, Direction::AtLeast)
        );
        if keep_lower {
            now.upper = this_look.1.max(now.lower);
        } else {
            now.lower = this_look.0.min(now.upper);
        }
    }
    now
}

/// One check at this look. A check the statistics refuse to build (an
/// alpha so small it is rejected) stays open, never silently dropped.
fn look_at(p: &Planned, alpha: f64, evidence: &RunEvidence, cumulative: &Accum) -> CheckResult {
    if p.kind.is_baseline() {
        let base = &evidence.baseline;
        let ev = DifferenceCheck::new(p.limit, alpha, TUNING_SAMPLES)
            .ok()
            .and_then(|check| {
                difference_counts(p, cumulative, base).map(|(canary, b)| check.look(canary, b))
            });
        match ev {
            Some(e) => from_evidence(p, &e).with_baseline(e.baseline_samples, base.reference_ms),
            None => result(
                p,
                if p.trivial() {
                    Status::ProvenPassing
                } else {
                    Status::Open
                },
                None,
                -1.0,
                1.0,
                cumulative.samples,
            )
            .with_baseline(Some(base.samples), None),
        }
    } else {
        match ProportionCheck::new(p.limit, p.direction, alpha) {
            Ok(check) => {
                let c = counts(p, cumulative);
                let mut r = from_evidence(p, &check.look(c));
                let (lo, hi, n) = c.sanitized();
                if lo != hi && n > 0 {
                    r.estimate_range = Some([lo as f64 / n as f64, hi as f64 / n as f64]);
                }
                r
            }
            Err(_) => result(p, Status::Open, None, 0.0, 1.0, cumulative.samples),
        }
    }
}

fn status_of(s: Status) -> CheckStatus {
    match s {
        Status::Open => CheckStatus::Open,
        Status::ProvenPassing => CheckStatus::Passing,
        Status::ProvenFailing => CheckStatus::Failing,
    }
}

fn from_evidence(p: &Planned, e: &Evidence) -> CheckResult {
    let estimate = (e.samples > 0).then_some(e.estimate);
    result(p, e.status, estimate, e.lower, e.upper, e.samples)
}

/// A check's result before the baseline fields.
fn result(
    p: &Planned,
    status: Status,
    estimate: Option<f64>,
    lower: f64,
    upper: f64,
    samples: u64,
) -> CheckResult {
    CheckResult {
        check: p.kind,
        status: status_of(status),
        limit: p.limit,
        estimate,
        lower,
        upper,
        samples,
        baseline_samples: None,
        threshold_ms: p.threshold_ms,
        reference_ms: None,
        fail_only: p.fail_only(),
        estimate_range: None,
    }
}

trait WithBaseline {
    fn with_baseline(self, samples: Option<u64>, reference_ms: Option<f64>) -> Self;
}

impl WithBaseline for CheckResult {
    fn with_baseline(mut self, samples: Option<u64>, reference_ms: Option<f64>) -> Self {
        self.baseline_samples = samples;
        if self.check == CheckKind::BaselineP95Latency {
            self.reference_ms = reference_ms;
        }
        self
    }
}

fn decide(spec: &ContractSpec, planned: &[Planned], evidence: &RunEvidence) -> Verdict {
    let sure = confidence(spec.alpha);
    let mut failing = Vec::new();
    let mut passing = Vec::new();
    let mut open = false;
    for (p, c) in planned.iter().zip(&evidence.checks) {
        match c.status {
            CheckStatus::Failing => failing.push(sentence(p, c, &evidence.baseline, &sure)),
            CheckStatus::Passing => passing.push(sentence(p, c, &evidence.baseline, &sure)),
            CheckStatus::Open if p.fail_only() => {}
            CheckStatus::Open => open = true,
        }
    }
    if !failing.is_empty() {
        Verdict::Fail(failing)
    } else if open {
        Verdict::Open
    } else if passing.is_empty() {
        // Only fail-only checks: nothing is proven, the run simply showed
        // no failure in its `min_samples`.
        let guards: Vec<String> = planned.iter().map(guard).collect();
        Verdict::Pass(format!(
            "no failure proven, min_samples {} reached: {}",
            spec.min_samples,
            guards.join("; ")
        ))
    } else {
        Verdict::Pass(format!("proven within limits: {}", passing.join("; ")))
    }
}

/// What a fail-only check guards against, for a promotion it did not stop.
fn guard(p: &Planned) -> String {
    let written = fmt_limit(p.written);
    match p.kind {
        CheckKind::ErrorRate => format!("error rate at most {written}%"),
        CheckKind::ConversionRate => format!("conversion rate at least {written}%"),
        CheckKind::BaselineErrorRate => {
            format!("error rate at most {written} points above baseline")
        }
        CheckKind::BaselineP95Latency => format!("p95 latency at most {written}% above baseline"),
        CheckKind::P50Latency | CheckKind::P95Latency | CheckKind::P99Latency => {
            format!("latency within {written}ms")
        }
    }
}

/// `95%` for an alpha of 0.05, `99.9999%` for 1e-6: never rounded up to a
/// certainty of 100 %.
fn confidence(alpha: f64) -> String {
    let c = (1.0 - alpha) * 100.0;
    let text = format!("{c:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// The observed share, or the range it is known within when buckets
/// straddle the threshold (`50.0–100.0`).
fn share_text(estimate: f64, range: Option<[f64; 2]>) -> String {
    match range {
        Some([lo, hi]) if pct(lo) != pct(hi) => format!("{}–{}", pct(lo), pct(hi)),
        _ => pct(estimate),
    }
}

/// A share as percent with one decimal (`4.9`).
fn pct(v: f64) -> String {
    format!("{:.1}", v * 100.0)
}

/// A bound as percent with the fewest decimals (one to six) that keep it on
/// its side of the limit: a lower bound of 2.04 % against a 2 % limit reads
/// `2.04`, not `2.0`, so the sentence never says "sure more than 2.0 %,
/// allowed 2 %".
fn bound_pct(bound: f64, limit: f64) -> String {
    let (b, l) = (bound * 100.0, (limit * 1e11).round() / 1e9);
    for decimals in 1..=6 {
        let text = format!("{b:.decimals$}");
        let shown: f64 = text.parse().unwrap_or(b);
        if (b > l && shown > l) || (b < l && shown < l) {
            return text;
        }
    }
    format!("{b:.6}")
}

/// The sentence a person reads for a proven check.
fn sentence(p: &Planned, c: &CheckResult, b: &BaselineTally, sure: &str) -> String {
    let est = c.estimate.unwrap_or(0.0);
    let n = c.samples;
    let failing = c.status == CheckStatus::Failing;
    if p.trivial() {
        return format!("{} (every rate is)", guard(p));
    }
    let lower = bound_pct(c.lower, p.limit);
    let upper = bound_pct(c.upper, p.limit);
    match p.kind {
        CheckKind::P50Latency | CheckKind::P95Latency | CheckKind::P99Latency => {
            let q = match p.kind {
                CheckKind::P50Latency => "p50",
                CheckKind::P99Latency => "p99",
                _ => "p95",
            };
            let ms = fmt_limit(p.written);
            let allowed = fmt_limit(p.limit * 100.0);
            if failing {
                format!(
                    "{q} latency exceeds threshold {ms}ms: {}% of {n} requests slower ({sure} sure more than {}%, allowed {allowed}%)",
                    share_text(est, c.estimate_range),
                    lower
                )
            } else {
                format!(
                    "{q} latency within {ms}ms: {}% of {n} requests slower ({sure} sure below {}%)",
                    share_text(est, c.estimate_range),
                    upper
                )
            }
        }
        CheckKind::ErrorRate => {
            let limit = fmt_limit(p.written);
            if failing {
                format!(
                    "error rate {}% exceeds threshold {limit}% ({sure} sure it is above {}%; {n} samples)",
                    pct(est),
                    lower
                )
            } else {
                format!(
                    "error rate {}% within {limit}% ({sure} sure below {}%)",
                    pct(est),
                    upper
                )
            }
        }
        CheckKind::ConversionRate => {
            let limit = fmt_limit(p.written);
            if failing {
                format!(
                    "conversion rate {}% is below threshold {limit}% ({sure} sure it is below {}%; {n} samples)",
                    pct(est),
                    upper
                )
            } else {
                format!(
                    "conversion rate {}% above {limit}% ({sure} sure above {}%)",
                    pct(est),
                    lower
                )
            }
        }
        CheckKind::BaselineErrorRate => {
            let max = fmt_limit(p.written);
            let base = c.baseline_samples.unwrap_or(0);
            if failing {
                format!(
                    "error rate {} points above baseline ({sure} sure more than {} points; max +{max}; {n} and {base} baseline samples)",
                    pct(est),
                    lower
                )
            } else {
                format!(
                    "error rate at most {upper} points above baseline ({sure} sure; max +{max})"
                )
            }
        }
        CheckKind::BaselineP95Latency => {
            let r = b.reference_ms.unwrap_or(0.0);
            let inc = fmt_limit(p.written);
            let canary = pct(share(b.slow_surely, b.slow_possibly, b.latencies));
            let base = pct(share(
                b.base_slow_surely,
                b.base_slow_possibly,
                b.base_latencies,
            ));
            let lc = r * (1.0 + p.increase_percent / 100.0);
            if failing {
                format!(
                    "p95 latency worse than baseline {r:.1}ms +{inc}%: {canary}% of requests slower than {lc:.1}ms against {base}% of baseline requests slower than {r:.1}ms ({sure} sure {lower} points or more)"
                )
            } else {
                format!(
                    "p95 latency within baseline {r:.1}ms +{inc}%: {canary}% of requests slower than {lc:.1}ms against {base}% of baseline requests slower than {r:.1}ms ({sure} sure)"
                )
            }
        }
    }
}

/// The middle of a count range, as a share.
fn share(low: u64, high: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        (low as f64 + high as f64) / 2.0 / n as f64
    }
}

/// Adds one judged window to a run's baseline tally: the baseline's
/// requests and errors, and — once the reference p95 is fixed (from
/// `reference`, baseline windows that closed before this one) — the
/// latencies of both sides above their thresholds.
pub fn tally(
    spec: &ContractSpec,
    tally: &mut BaselineTally,
    window: &Accum,
    baseline: Option<&Accum>,
    reference: &Reference,
) {
    let Some(b) = &spec.baseline else {
        return;
    };
    if let Some(base) = baseline {
        tally.samples = tally.samples.saturating_add(base.samples);
        tally.errors = tally.errors.saturating_add(base.errors);
    }
    let Some(increase) = b.max_p95_latency_increase_percent else {
        return;
    };
    if tally.reference_ms.is_none() {
        tally.reference_ms = reference.p95_ms();
    }
    let Some(r) = tally.reference_ms else {
        return;
    };
    let canary = window.slower_than(r * (1.0 + increase.max(0.0) / 100.0));
    tally.slow_surely = tally.slow_surely.saturating_add(canary.surely);
    tally.slow_possibly = tally.slow_possibly.saturating_add(canary.possibly);
    tally.latencies = tally.latencies.saturating_add(canary.of);
    if let Some(base) = baseline {
        let e = base.slower_than(r);
        tally.base_slow_surely = tally.base_slow_surely.saturating_add(e.surely);
        tally.base_slow_possibly = tally.base_slow_possibly.saturating_add(e.possibly);
        tally.base_latencies = tally.base_latencies.saturating_add(e.of);
    }
}

/// A contract's recent baseline windows, from which a run's reference p95
/// is fixed: the newest closed windows holding at least
/// [`MIN_REFERENCE_LATENCIES`] latencies (up to 1000, at most 10 windows).
#[derive(Debug, Clone, Default)]
pub struct Reference {
    windows: VecDeque<Accum>,
}

impl Reference {
    /// Adds a closed baseline window (after the runs judged with it).
    pub fn push(&mut self, window: &Accum) {
        if window.latency.count() == 0 {
            return;
        }
        self.windows.push_front(window.clone());
        self.windows.truncate(REFERENCE_WINDOWS);
    }

    /// The reference p95 (ms), if the recent baseline windows hold enough
    /// latencies.
    pub fn p95_ms(&self) -> Option<f64> {
        let mut merged = Accum::default();
        for w in &self.windows {
            merged.merge(w);
            if merged.latency.count() >= REFERENCE_LATENCIES {
                break;
            }
        }
        if merged.latency.count() < MIN_REFERENCE_LATENCIES {
            return None;
        }
        let p95 = merged.latency.quantile(0.95)?.value * merged.unit.to_ms();
        (p95.is_finite() && p95 > 0.0).then_some(p95)
    }
}

#[cfg(test)]
#[path = "evidence_tests.rs"]
mod tests;
