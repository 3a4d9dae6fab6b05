//! Evidence tests: sentences, fail-only checks, counts on the conservative
//! side of a bucket, and the baseline reference.

use super::*;
use crate::config::{BaselineSpec, Thresholds};
use crate::model::point::{Buckets, LatencyUnit, PointKind, PointLatency};

fn spec(t: Thresholds) -> ContractSpec {
    ContractSpec::with_thresholds("checkout", t)
}

fn accum(latencies_ms: &[(f64, u64)], errors: u64, conversions: u64) -> Accum {
    let mut a = Accum::default();
    let mut n = 0;
    for &(ms, count) in latencies_ms {
        let _ = a.latency.insert_n(ms, count);
        n += count;
    }
    a.samples = n;
    a.errors = errors;
    a.conversions = conversions;
    a
}

#[test]
fn a_clear_regression_fails_with_a_sentence_naming_its_evidence() {
    let s = spec(Thresholds {
        max_error_rate_percent: Some(2.0),
        ..Thresholds::default()
    });
    let mut ev = RunEvidence::default();
    let verdict = look(&s, &mut ev, &accum(&[(10.0, 1832)], 112, 0));
    let Verdict::Fail(failures) = verdict else {
        panic!("{verdict:?}");
    };
    assert!(
        failures[0].starts_with("error rate 6.1% exceeds threshold 2% (95% sure it is above "),
        "{}",
        failures[0]
    );
    assert!(failures[0].ends_with("; 1832 samples)"), "{}", failures[0]);
    let c = ev.check(CheckKind::ErrorRate).expect("check");
    assert_eq!(c.status, CheckStatus::Failing);
    assert!(c.lower > 0.02 && c.lower < 0.061, "{c:?}");
}

#[test]
fn a_clean_release_passes_every_check() {
    let s = spec(Thresholds {
        max_p95_latency_ms: Some(120.0),
        max_error_rate_percent: Some(2.0),
        min_conversion_rate_percent: Some(15.0),
        ..Thresholds::default()
    });
    let mut ev = RunEvidence::default();
    let v = look(&s, &mut ev, &accum(&[(75.0, 3960), (200.0, 40)], 20, 1200));
    let Verdict::Pass(reason) = v else {
        panic!("{v:?}");
    };
    assert!(reason.starts_with("proven within limits: p95 latency within 120ms: 1.0% of 4000 requests slower (95% sure below "), "{reason}");
    assert!(reason.contains("error rate 0.5% within 2%"), "{reason}");
    assert!(
        reason.contains("conversion rate 30.0% above 15%"),
        "{reason}"
    );
}

#[test]
fn a_proven_result_never_unproves_but_a_proven_failure_wins() {
    let s = spec(Thresholds {
        max_error_rate_percent: Some(2.0),
        max_p95_latency_ms: Some(120.0),
        ..Thresholds::default()
    });
    let mut ev = RunEvidence::default();
    assert_eq!(
        look(&s, &mut ev, &accum(&[(10.0, 20)], 0, 0)),
        Verdict::Open
    );
    // Errors proven below 2 %; latency still open (the share slower than
    // 120 ms is 4 %, too close to 5 % to tell yet).
    let fast_and_slow = |n: u64| accum(&[(10.0, n * 96 / 100), (500.0, n * 4 / 100)], 0, 0);
    let mut cum = fast_and_slow(1500);
    cum.errors = 2;
    assert_eq!(look(&s, &mut ev, &cum), Verdict::Open);
    let error = |ev: &RunEvidence| ev.check(CheckKind::ErrorRate).cloned().unwrap();
    assert_eq!(error(&ev).status, CheckStatus::Passing);
    let proven_upper = error(&ev).upper;
    assert!(proven_upper < 0.02, "{proven_upper}");
    // More errors: this look alone would not prove the error rate below
    // 2 % any more, but the running bound keeps the pass.
    let mut cum = fast_and_slow(1600);
    cum.errors = 28;
    let fresh_look = {
        let mut fresh = RunEvidence::default();
        look(&s, &mut fresh, &cum);
        error(&fresh)
    };
    assert_eq!(fresh_look.status, CheckStatus::Open, "{fresh_look:?}");
    assert_eq!(look(&s, &mut ev, &cum), Verdict::Open);
    assert_eq!(error(&ev).status, CheckStatus::Passing);
    assert!(error(&ev).upper <= proven_upper);
    assert!(error(&ev).upper < fresh_look.upper);
    // A regression proven on the same check: failing wins over the kept
    // pass, and the run is rolled back.
    let mut cum = fast_and_slow(6000);
    cum.errors = 900;
    assert!(matches!(look(&s, &mut ev, &cum), Verdict::Fail(_)));
    assert_eq!(error(&ev).status, CheckStatus::Failing);
    // The bounds never cross as shown: the failing side keeps its running
    // bound, the other is this look's.
    let shown = error(&ev);
    assert!(
        shown.lower > 0.02 && shown.lower <= shown.upper,
        "{shown:?}"
    );
    let estimate = shown.estimate.unwrap_or(0.0);
    assert!((shown.lower..=shown.upper).contains(&estimate), "{shown:?}");
    // Evidence of another check (here: another limit) is not carried over.
    let mut other = ev.clone();
    other.checks.iter_mut().for_each(|c| c.limit = 0.5);
    let mut fresh = RunEvidence::default();
    assert_eq!(look(&s, &mut other, &cum), look(&s, &mut fresh, &cum));
    assert_eq!(other, fresh);
}

#[test]
fn a_limit_of_zero_can_only_fail_and_does_not_hold_promotion() {
    let s = spec(Thresholds {
        max_error_rate_percent: Some(0.0),
        ..Thresholds::default()
    });
    let mut ev = RunEvidence::default();
    let Verdict::Pass(reason) = look(&s, &mut ev, &accum(&[(10.0, 100)], 0, 0)) else {
        panic!("expected a pass");
    };
    // Nothing was proven; the sentence says what happened instead.
    assert_eq!(
        reason,
        "no failure proven, min_samples 1 reached: error rate at most 0%"
    );
    assert!(ev.checks[0].fail_only);
    assert_eq!(ev.checks[0].status, CheckStatus::Open);
    let mut ev = RunEvidence::default();
    assert!(matches!(
        look(&s, &mut ev, &accum(&[(10.0, 100)], 1, 0)),
        Verdict::Fail(_)
    ));
}

/// Node.js SDK default boundaries (milliseconds) on a histogram in
/// seconds: every request lands in the 0–5 s bucket, which straddles a
/// 300 ms limit, so it is evidence neither way, however many requests.
#[test]
fn a_bucket_straddling_the_limit_is_no_evidence() {
    let s = spec(Thresholds {
        max_p95_latency_ms: Some(300.0),
        ..Thresholds::default()
    });
    let bounds: std::sync::Arc<[f64]> = [
        0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0,
        7500.0, 10000.0,
    ]
    .into();
    let mut counts = vec![0u64; bounds.len() + 1];
    counts[1] = 100_000;
    let mut acc = Accum::default();
    acc.record_point(&PointKind::Latency(PointLatency {
        unit: LatencyUnit::Seconds,
        count: 100_000,
        error: false,
        sum: Some(3000.0 * 0.04 + 97000.0 * 0.04),
        min: Some(0.04),
        max: Some(2.0),
        buckets: Buckets::Explicit { bounds, counts },
    }));
    let e = acc.slower_than(300.0);
    assert_eq!((e.surely, e.of), (0, 100_000));
    assert_eq!(e.possibly, 100_000);
    let mut ev = RunEvidence::default();
    for _ in 0..50 {
        assert_eq!(look(&s, &mut ev, &acc), Verdict::Open);
    }
}

#[test]
fn a_share_only_known_within_a_range_is_named_as_the_range() {
    let s = spec(Thresholds {
        max_p95_latency_ms: Some(300.0),
        ..Thresholds::default()
    });
    // Half in (50, 500] ms, half above 500 ms: between 50 % and 100 % of
    // requests are slower than 300 ms, nothing more precise.
    let bounds: std::sync::Arc<[f64]> = std::sync::Arc::from(&[0.05, 0.5][..]);
    let mut acc = Accum::default();
    acc.record_point(&PointKind::Latency(PointLatency {
        unit: LatencyUnit::Seconds,
        count: 60,
        error: false,
        sum: None,
        min: None,
        max: None,
        buckets: Buckets::Explicit {
            bounds,
            counts: vec![0, 30, 30],
        },
    }));
    let mut ev = RunEvidence::default();
    let Verdict::Fail(reasons) = look(&s, &mut ev, &acc) else {
        panic!("{:?}", ev.checks);
    };
    assert!(
        reasons[0].contains(": 50.0–100.0% of 60 requests slower"),
        "{reasons:?}"
    );
}

#[test]
fn confidence_reads_as_a_percentage() {
    assert_eq!(confidence(0.05), "95%");
    assert_eq!(confidence(0.01), "99%");
    assert_eq!(confidence(0.005), "99.5%");
    assert_eq!(confidence(0.000001), "99.9999%");
}

#[test]
fn the_reference_needs_enough_baseline_latencies() {
    let mut r = Reference::default();
    assert_eq!(r.p95_ms(), None);
    r.push(&accum(&[(50.0, 60)], 0, 0));
    assert_eq!(r.p95_ms(), None);
    r.push(&accum(&[(50.0, 60)], 0, 0));
    let p95 = r.p95_ms().expect("fixed");
    assert!((p95 - 50.0).abs() < 0.5, "{p95}");
}

#[test]
fn an_identical_canary_is_never_rolled_back_by_a_zero_margin() {
    let mut s = spec(Thresholds {
        max_error_rate_percent: Some(50.0),
        ..Thresholds::default()
    });
    s.baseline = Some(BaselineSpec {
        matches: vec![],
        max_p95_latency_increase_percent: None,
        max_error_rate_increase_points: Some(0.0),
    });
    let mut ev = RunEvidence::default();
    let reference = Reference::default();
    let mut cum = Accum::default();
    for _ in 0..40 {
        let w = accum(&[(10.0, 200)], 2, 0);
        let b = accum(&[(10.0, 2000)], 20, 0);
        tally(&s, &mut ev.baseline, &w, Some(&b), &reference);
        cum.merge(&w);
        let v = look(&s, &mut ev, &cum);
        assert!(!matches!(v, Verdict::Fail(_)), "{v:?}");
    }
    let c = ev.check(CheckKind::BaselineErrorRate).expect("check");
    assert!(c.fail_only);
    assert_eq!(c.baseline_samples, Some(80_000));
}

#[test]
fn limits_every_rate_meets_pass_without_data() {
    let s = spec(Thresholds {
        max_error_rate_percent: Some(100.0),
        min_conversion_rate_percent: Some(0.0),
        ..Thresholds::default()
    });
    let mut ev = RunEvidence::default();
    let Verdict::Pass(reason) = look(&s, &mut ev, &accum(&[], 0, 0)) else {
        panic!("expected a pass");
    };
    assert_eq!(
        reason,
        "proven within limits: error rate at most 100% (every rate is); conversion rate at least 0% (every rate is)"
    );
    assert!(ev.checks.iter().all(|c| c.status == CheckStatus::Passing));
}

#[test]
fn a_check_the_statistics_refuse_stays_open() {
    let mut s = spec(Thresholds {
        max_error_rate_percent: Some(2.0),
        ..Thresholds::default()
    });
    s.alpha = 0.0;
    let mut ev = RunEvidence::default();
    assert_eq!(
        look(&s, &mut ev, &accum(&[(10.0, 5000)], 900, 0)),
        Verdict::Open
    );
    assert_eq!(ev.checks.len(), 1);
    assert_eq!(ev.checks[0].status, CheckStatus::Open);
}

#[test]
fn bounds_are_printed_on_their_side_of_the_limit() {
    assert_eq!(bound_pct(0.0204, 0.02), "2.04");
    assert_eq!(bound_pct(0.0196, 0.02), "1.96");
    assert_eq!(bound_pct(0.025, 0.02), "2.5");
    assert_eq!(bound_pct(0.02000001, 0.02), "2.000001");
    assert_eq!(bound_pct(0.0004, 0.0), "0.04");
    assert_eq!(bound_pct(-0.0004, 0.0), "-0.04");
}
