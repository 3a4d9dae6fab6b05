//! Judging a window: the sentences that say which checks of a contract the
//! figures of a window (or a whole run) fail. Pure functions of the figures,
//! so they are tested without any runtime.

use crate::config::ContractSpec;
use crate::model::{Figures, WindowOutcome, WindowVerdict};

/// Formats a threshold the way the user wrote it (`120`, `2.5`).
fn limit(v: f64) -> String {
    format!("{v}")
}

/// Checks absolute thresholds; returns one sentence per failed check.
pub fn check_thresholds(spec: &ContractSpec, f: &Figures) -> Vec<String> {
    let t = &spec.thresholds;
    let mut failures = Vec::new();
    if let (Some(max), Some(p95)) = (t.max_p95_latency_ms, f.p95_latency_ms) {
        if p95 > max {
            failures.push(format!(
                "p95 latency {p95:.1}ms exceeds threshold {}ms",
                limit(max)
            ));
        }
    }
    if let (Some(max), Some(rate)) = (t.max_error_rate_percent, f.error_rate_percent) {
        if rate > max {
            failures.push(format!(
                "error rate {rate:.1}% exceeds threshold {}%",
                limit(max)
            ));
        }
    }
    if let (Some(min), Some(rate)) = (t.min_conversion_rate_percent, f.conversion_rate_percent) {
        if rate < min {
            failures.push(format!(
                "conversion rate {rate:.1}% is below threshold {}%",
                limit(min)
            ));
        }
    }
    failures
}

/// Checks the baseline comparison; a baseline without samples in the window
/// compares nothing (the candidate is judged on absolute thresholds alone).
pub fn check_baseline(spec: &ContractSpec, f: &Figures, base: &Figures) -> Vec<String> {
    let Some(b) = &spec.baseline else {
        return Vec::new();
    };
    let mut failures = Vec::new();
    if let (Some(max), Some(p95), Some(bp95)) = (
        b.max_p95_latency_increase_percent,
        f.p95_latency_ms,
        base.p95_latency_ms,
    ) {
        if bp95 > 0.0 {
            let increase = (p95 - bp95) * 100.0 / bp95;
            if increase > max {
                failures.push(format!(
                    "p95 latency {p95:.1}ms is {increase:.1}% above baseline {bp95:.1}ms (max +{}%)",
                    limit(max)
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
            failures.push(format!(
                "error rate {rate:.1}% is {points:.1} points above baseline {brate:.1}% (max +{})",
                limit(max)
            ));
        }
    }
    failures
}

/// Judges one window of a subject, optionally against the baseline's window.
pub fn evaluate_window(
    spec: &ContractSpec,
    figures: &Figures,
    baseline: Option<&Figures>,
) -> WindowOutcome {
    if figures.samples < spec.min_window_samples.max(1) {
        return WindowOutcome {
            verdict: WindowVerdict::Insufficient,
            failures: Vec::new(),
        };
    }
    let mut failures = check_thresholds(spec, figures);
    if let Some(base) = baseline.filter(|b| b.samples > 0) {
        failures.extend(check_baseline(spec, figures, base));
    }
    WindowOutcome {
        verdict: if failures.is_empty() {
            WindowVerdict::Pass
        } else {
            WindowVerdict::Fail
        },
        failures,
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
