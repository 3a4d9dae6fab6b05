//! Judging a window: the sentences that say which checks of a contract the
//! figures of a window (or a whole run) fail. Pure functions of the figures,
//! so they are tested without any runtime.

use crate::config::ContractSpec;
use crate::model::{Figures, Quantile, WindowOutcome, WindowVerdict};

/// Formats a threshold the way the user wrote it (`120`, `2.5`).
pub(crate) fn limit(v: f64) -> String {
    format!("{v}")
}

/// What one window's (or a run's) figures say about a contract's checks:
/// the checks they surely fail, and the checks they cannot judge because a
/// figure's bound straddles its limit. A straddling figure is not evidence
/// either way (an explicit-bucket histogram whose bucket spans the limit
/// says nothing about which side the p95 is on).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Judgement {
    /// One sentence per failed check.
    pub failures: Vec<String>,
    /// One sentence per check that cannot be judged.
    pub uncertain: Vec<String>,
}

impl Judgement {
    /// No check failed and every check could be judged.
    pub fn passes(&self) -> bool {
        self.failures.is_empty() && self.uncertain.is_empty()
    }

    /// Judges `value ± bound` against an upper `max`: beyond only when the
    /// whole range is, within only when the whole range is.
    fn latency(&mut self, name: &str, value: f64, bound: f64, max: f64) {
        if value - bound > max {
            self.failures.push(format!(
                "{name} latency {value:.1}ms exceeds threshold {}ms",
                limit(max)
            ));
        } else if value + bound > max {
            self.uncertain.push(uncertain_sentence(
                &format!("{name} latency {value:.1}ms"),
                bound,
                &format!("threshold {}ms", limit(max)),
            ));
        }
    }
}

fn uncertain_sentence(what: &str, bound: f64, against: &str) -> String {
    if bound.is_finite() {
        format!("{what} is not evidence against {against}: it is only known to ±{bound:.1}ms")
    } else {
        format!("{what} is not evidence against {against}: it lies in an open top bucket, with no bound")
    }
}

/// Judges the absolute thresholds.
pub fn judge_thresholds(spec: &ContractSpec, f: &Figures) -> Judgement {
    let t = &spec.thresholds;
    let mut j = Judgement::default();
    for (q, max) in [
        (Quantile::P50, t.max_p50_latency_ms),
        (Quantile::P95, t.max_p95_latency_ms),
        (Quantile::P99, t.max_p99_latency_ms),
    ] {
        if let (Some(max), Some((value, bound))) = (max, f.latency(q)) {
            j.latency(q.name(), value, bound, max);
        }
    }
    if let (Some(max), Some(rate)) = (t.max_error_rate_percent, f.error_rate_percent) {
        if rate > max {
            j.failures.push(format!(
                "error rate {rate:.1}% exceeds threshold {}%",
                limit(max)
            ));
        }
    }
    if let (Some(min), Some(rate)) = (t.min_conversion_rate_percent, f.conversion_rate_percent) {
        if rate < min {
            j.failures.push(format!(
                "conversion rate {rate:.1}% is below threshold {}%",
                limit(min)
            ));
        }
    }
    j
}

/// Checks absolute thresholds; returns one sentence per failed check.
pub fn check_thresholds(spec: &ContractSpec, f: &Figures) -> Vec<String> {
    judge_thresholds(spec, f).failures
}

/// Judges the baseline comparison into `j`; a baseline without samples
/// compares nothing (the candidate is judged on absolute thresholds alone).
fn judge_baseline(spec: &ContractSpec, f: &Figures, base: &Figures, j: &mut Judgement) {
    let Some(b) = &spec.baseline else {
        return;
    };
    if let (Some(max), Some((p95, e)), Some((bp95, be))) = (
        b.max_p95_latency_increase_percent,
        f.latency(Quantile::P95),
        base.latency(Quantile::P95),
    ) {
        if bp95 > 0.0 {
            let factor = 1.0 + max / 100.0;
            let increase = (p95 - bp95) * 100.0 / bp95;
            if p95 - e > (bp95 + be) * factor {
                j.failures.push(format!(
                    "p95 latency {p95:.1}ms is {increase:.1}% above baseline {bp95:.1}ms (max +{}%)",
                    limit(max)
                ));
            } else if p95 + e > (bp95 - be).max(0.0) * factor {
                j.uncertain.push(uncertain_sentence(
                    &format!("p95 latency {p95:.1}ms"),
                    e + be * factor,
                    &format!("baseline {bp95:.1}ms +{}%", limit(max)),
                ));
            }
        }
    }
    if let (Some(max), Some(rate), Some(brate)) = (
        b.max_error_rate_increase_points,
        f.error_rate_percent,
        base.error_rate_percent,
    ) {
        let points = rate - brate;
        if points > max {
            j.failures.push(format!(
                "error rate {rate:.1}% is {points:.1} points above baseline {brate:.1}% (max +{})",
                limit(max)
            ));
        }
    }
}

/// Judges one window of a subject, optionally against the baseline's window
/// (design §5.2): fail when a check surely fails; insufficient with fewer
/// than `min_window_samples` samples or when a check cannot be judged;
/// pass otherwise.
pub fn evaluate_window(
    spec: &ContractSpec,
    figures: &Figures,
    baseline: Option<&Figures>,
) -> WindowOutcome {
    if figures.samples < spec.min_window_samples.max(1) {
        return WindowOutcome {
            verdict: WindowVerdict::Insufficient,
            failures: Vec::new(),
            notes: Vec::new(),
        };
    }
    let mut j = judge_thresholds(spec, figures);
    if let Some(base) = baseline.filter(|b| b.samples > 0) {
        judge_baseline(spec, figures, base, &mut j);
    }
    let verdict = if !j.failures.is_empty() {
        WindowVerdict::Fail
    } else if !j.uncertain.is_empty() {
        WindowVerdict::Insufficient
    } else {
        WindowVerdict::Pass
    };
    WindowOutcome {
        verdict,
        failures: j.failures,
        notes: j.uncertain,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BaselineSpec, ContractSpec, Thresholds};
    use crate::model::Accum;

    pub(crate) fn spec() -> ContractSpec {
        ContractSpec {
            min_samples: 10,
            min_window_samples: 5,
            pass_windows: 3,
            ..ContractSpec::with_thresholds(
                "checkout",
                Thresholds {
                    max_p95_latency_ms: Some(120.0),
                    max_error_rate_percent: Some(2.0),
                    min_conversion_rate_percent: Some(15.0),
                    ..Thresholds::default()
                },
            )
        }
    }

    fn accum(latencies: &[f64], errors: u64, conversions: u64) -> Accum {
        let mut a = Accum::default();
        for &l in latencies {
            let _ = a.latency.insert(l);
        }
        a.samples = latencies.len() as u64;
        a.errors = errors;
        a.conversions = conversions;
        a
    }

    #[test]
    fn passing_window() {
        let f = Figures::of(&accum(&[10.0; 100], 1, 20));
        let o = evaluate_window(&spec(), &f, None);
        assert_eq!(o.verdict, WindowVerdict::Pass, "{:?}", o.failures);
        assert_eq!(f.error_rate_percent, Some(1.0));
        assert_eq!(f.conversion_rate_percent, Some(20.0));
        assert!((f.p95_latency_ms.unwrap_or(0.0) - 10.0).abs() < 0.1);
    }

    #[test]
    fn failure_sentences() {
        let f = Figures::of(&accum(&[200.0; 100], 5, 10));
        let o = evaluate_window(&spec(), &f, None);
        assert_eq!(o.verdict, WindowVerdict::Fail);
        assert_eq!(o.failures.len(), 3);
        assert!(
            o.failures[0].starts_with("p95 latency 20"),
            "{}",
            o.failures[0]
        );
        assert!(o.failures[0].ends_with("ms exceeds threshold 120ms"));
        assert_eq!(o.failures[1], "error rate 5.0% exceeds threshold 2%");
        assert_eq!(
            o.failures[2],
            "conversion rate 10.0% is below threshold 15%"
        );
    }

    #[test]
    fn too_few_samples_is_insufficient() {
        let f = Figures::of(&accum(&[500.0; 4], 4, 0));
        assert_eq!(
            evaluate_window(&spec(), &f, None).verdict,
            WindowVerdict::Insufficient
        );
    }

    #[test]
    fn baseline_comparison() {
        let mut s = spec();
        s.baseline = Some(BaselineSpec {
            matches: vec![],
            max_p95_latency_increase_percent: Some(10.0),
            max_error_rate_increase_points: Some(0.5),
        });
        let base = Figures::of(&accum(&[50.0; 100], 0, 20));
        let cand = Figures::of(&accum(&[60.0; 100], 1, 20));
        let o = evaluate_window(&s, &cand, Some(&base));
        assert_eq!(o.verdict, WindowVerdict::Fail);
        assert_eq!(o.failures.len(), 2, "{:?}", o.failures);
        assert!(
            o.failures[0].contains("above baseline 50"),
            "{}",
            o.failures[0]
        );
        assert_eq!(
            o.failures[1],
            "error rate 1.0% is 1.0 points above baseline 0.0% (max +0.5)"
        );
        // An empty baseline window compares nothing.
        let o = evaluate_window(&s, &cand, Some(&Figures::default()));
        assert_eq!(o.verdict, WindowVerdict::Pass);
    }
}
