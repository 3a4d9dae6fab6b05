//! Judging a window: the sentences that say which checks of a contract the
//! figures of a window (or a whole run) fail. Pure functions of the figures,
//! so they are tested without any runtime.

use crate::config::ContractSpec;
use crate::model::{Accum, Exceedance, Figures, Quantile, WindowOutcome, WindowVerdict};

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
    ///
    /// When the range straddles `max` and the latencies are at hand, the
    /// counts decide instead: "p95 ≤ L" is "at most 5 % slower than L", and
    /// a bucket lying wholly on one side of L says which side its requests
    /// are on even when the p95 itself is only known to a wide bucket (an
    /// explicit-bucket histogram with L on one of its bounds).
    fn latency(&mut self, q: Quantile, value: f64, bound: f64, max: f64, acc: Option<&Accum>) {
        let name = q.name();
        if value - bound > max {
            self.failures.push(format!(
                "{name} latency {value:.1}ms exceeds threshold {}ms",
                limit(max)
            ));
            return;
        }
        if value + bound <= max {
            return;
        }
        let slower = acc.map(|a| a.slower_than(max));
        match slower.filter(|e| e.of > 0) {
            Some(e) if share(e.surely, &e) > q.tail() => self.failures.push(format!(
                "{name} latency exceeds threshold {}ms: {:.1}% of requests are slower (at most {}% may be)",
                limit(max),
                share(e.surely, &e) * 100.0,
                limit(q.tail() * 100.0)
            )),
            Some(e) if share(e.possibly, &e) <= q.tail() => {}
            _ => self.uncertain.push(uncertain_sentence(
                &format!("{name} latency {value:.1}ms"),
                bound,
                &format!("threshold {}ms", limit(max)),
            )),
        }
    }
}

/// A count as a share of the latencies counted.
fn share(count: u64, e: &Exceedance) -> f64 {
    count as f64 / e.of as f64
}

fn uncertain_sentence(what: &str, bound: f64, against: &str) -> String {
    if bound.is_finite() {
        format!("{what} is not evidence against {against}: it is only known to ±{bound:.1}ms")
    } else {
        format!("{what} is not evidence against {against}: it lies in an open top bucket, with no bound")
    }
}

/// Judges the absolute thresholds on the figures `f` of the accumulation
/// `acc` (when at hand, its latency counts settle what a coarse bucket
/// leaves open; see `Judgement::latency`).
pub fn judge_thresholds(spec: &ContractSpec, f: &Figures, acc: Option<&Accum>) -> Judgement {
    let t = &spec.thresholds;
    let mut j = Judgement::default();
    for (q, max) in [
        (Quantile::P50, t.max_p50_latency_ms),
        (Quantile::P95, t.max_p95_latency_ms),
        (Quantile::P99, t.max_p99_latency_ms),
    ] {
        if let (Some(max), Some((value, bound))) = (max, f.latency(q)) {
            j.latency(q, value, bound, max, acc);
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
pub fn check_thresholds(spec: &ContractSpec, acc: &Accum) -> Vec<String> {
    judge_thresholds(spec, &Figures::of(acc), Some(acc)).failures
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
    acc: &Accum,
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
    let mut j = judge_thresholds(spec, figures, Some(acc));
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
        let f_acc = accum(&[10.0; 100], 1, 20);
        let f = Figures::of(&f_acc);
        let o = evaluate_window(&spec(), &f_acc, &f, None);
        assert_eq!(o.verdict, WindowVerdict::Pass, "{:?}", o.failures);
        assert_eq!(f.error_rate_percent, Some(1.0));
        assert_eq!(f.conversion_rate_percent, Some(20.0));
        assert!((f.p95_latency_ms.unwrap_or(0.0) - 10.0).abs() < 0.1);
    }

    #[test]
    fn failure_sentences() {
        let f_acc = accum(&[200.0; 100], 5, 10);
        let f = Figures::of(&f_acc);
        let o = evaluate_window(&spec(), &f_acc, &f, None);
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
        let f_acc = accum(&[500.0; 4], 4, 0);
        let f = Figures::of(&f_acc);
        assert_eq!(
            evaluate_window(&spec(), &f_acc, &f, None).verdict,
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
        let base_acc = accum(&[50.0; 100], 0, 20);
        let base = Figures::of(&base_acc);
        let cand_acc = accum(&[60.0; 100], 1, 20);
        let cand = Figures::of(&cand_acc);
        let o = evaluate_window(&s, &cand_acc, &cand, Some(&base));
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
        let o = evaluate_window(&s, &cand_acc, &cand, Some(&Figures::default()));
        assert_eq!(o.verdict, WindowVerdict::Pass);
    }

    /// Explicit buckets (ms) with the given counts: `(50,100]`, `(100,250]`…
    fn explicit(counts: [u64; 6]) -> Accum {
        use crate::model::point::{Buckets, LatencyUnit, PointKind, PointLatency};
        let bounds: std::sync::Arc<[f64]> = [0.0, 50.0, 100.0, 250.0, 500.0].into();
        let n = counts.iter().sum();
        let mut acc = Accum::default();
        acc.record_point(&PointKind::Latency(PointLatency {
            unit: LatencyUnit::Millis,
            count: n,
            error: false,
            sum: None,
            min: None,
            max: None,
            buckets: Buckets::Explicit {
                bounds,
                counts: counts.to_vec(),
            },
        }));
        acc
    }

    /// A limit on a bucket bound: the p95 is only known to its bucket's
    /// width, but the counts on either side of the bound decide.
    #[test]
    fn counts_decide_when_the_p95_is_only_known_to_its_bucket() {
        let mut s = spec();
        s.thresholds = Thresholds {
            max_p95_latency_ms: Some(100.0),
            ..Thresholds::default()
        };
        // 3 % slower than 100 ms: passes, though the p95 lies in (50, 100].
        let acc = explicit([0, 0, 970, 30, 0, 0]);
        let f = Figures::of(&acc);
        let (value, bound) = f.latency(Quantile::P95).expect("p95");
        assert!(
            value + bound > 100.0,
            "the figure alone straddles: {value} ± {bound}"
        );
        let o = evaluate_window(&s, &acc, &f, None);
        assert_eq!(o.verdict, WindowVerdict::Pass, "{o:?}");
        // 10 % slower: fails, with the counts as the reason.
        let acc = explicit([0, 0, 900, 80, 20, 0]);
        let o = evaluate_window(&s, &acc, &Figures::of(&acc), None);
        assert_eq!(o.verdict, WindowVerdict::Fail, "{o:?}");
        assert_eq!(
            o.failures,
            ["p95 latency exceeds threshold 100ms: 10.0% of requests are slower (at most 5% may be)"]
        );
        // A limit inside a bucket stays undecided.
        s.thresholds.max_p95_latency_ms = Some(180.0);
        let acc = explicit([0, 0, 900, 80, 0, 0]);
        let o = evaluate_window(&s, &acc, &Figures::of(&acc), None);
        assert_eq!(o.verdict, WindowVerdict::Insufficient, "{o:?}");
    }
}
