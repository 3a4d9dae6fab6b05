//! The decision rules under noise, through the engine: a release exactly at
//! its limit (or equal to its baseline) is rarely rolled back, clear
//! regressions are caught within a few windows, clean releases promote as
//! soon as `min_samples` allows. Seeded, so every figure is reproducible;
//! larger runs are in `benches/decisions.rs`.

use std::time::Duration;

use super::*;
use crate::config::{BaselineSpec, Decision, Thresholds};

fn window() -> WindowSpec {
    WindowSpec {
        size: Duration::from_secs(60),
        allowed_lateness: Duration::from_secs(10),
        max_clock_skew: Duration::from_secs(300),
        shards: 1,
        shards_per_core: false,
        queue_size: 16,
        max_series: 100,
        max_streams: 100,
        stream_expiry: Duration::from_secs(900),
    }
}

fn contract(t: Thresholds) -> ContractSpec {
    ContractSpec::with_thresholds("sim", t)
}

/// A contract that never promotes, so every run looks at all its windows:
/// the rate of wrong rollbacks over all of them is what A/A measures.
fn never_promotes(t: Thresholds) -> ContractSpec {
    ContractSpec {
        min_samples: u64::MAX,
        ..contract(t)
    }
}

fn side(requests: u64, p95_ms: f64, error_rate: f64, conversion_rate: f64) -> Side {
    Side {
        requests,
        p95_ms,
        shape: Shape::Lognormal(0.5),
        error_rate,
        conversion_rate,
    }
}

fn summary(spec: &ContractSpec, scenario: Scenario, runs: u64, max_windows: u64) -> Summary {
    Simulation {
        spec,
        window: &window(),
        runs,
        seed: 42,
        max_windows,
        threads: 2,
    }
    .summarize(&scenario, &|| {})
}

fn alone(release: Side) -> Scenario {
    Scenario {
        release,
        baseline: None,
    }
}

/// The most wrong rollbacks out of 1000 runs that still fit a true rate of
/// alpha = 5 %: P(Binomial(1000, 0.05) ≥ 73) < 0.001.
const AA_MAX: f64 = 0.072;

#[test]
fn at_the_error_limit_few_runs_are_rolled_back() {
    let spec = never_promotes(Thresholds {
        max_error_rate_percent: Some(2.0),
        ..Thresholds::default()
    });
    let s = summary(&spec, alone(side(400, 0.0, 0.02, 0.0)), 1000, 25);
    assert!(s.rolled_back <= AA_MAX, "{s:?}");
    // A per-window point estimate rolls back most of them.
    let windows = ContractSpec {
        decision: Decision::Windows,
        pass_windows: 3,
        ..spec
    };
    let w = summary(&windows, alone(side(400, 0.0, 0.02, 0.0)), 1000, 25);
    assert!(w.rolled_back > 0.5, "{w:?}");
}

#[test]
fn at_the_conversion_floor_few_runs_are_rolled_back() {
    let spec = never_promotes(Thresholds {
        min_conversion_rate_percent: Some(15.0),
        ..Thresholds::default()
    });
    let s = summary(&spec, alone(side(400, 0.0, 0.0, 0.15)), 1000, 25);
    assert!(s.rolled_back <= AA_MAX, "{s:?}");
}

#[test]
fn at_the_p95_limit_few_runs_are_rolled_back() {
    let spec = never_promotes(Thresholds {
        max_p95_latency_ms: Some(120.0),
        ..Thresholds::default()
    });
    let s = summary(&spec, alone(side(200, 120.0, 0.0, 0.0)), 1000, 25);
    assert!(s.rolled_back <= AA_MAX, "{s:?}");
}

#[test]
fn an_identical_canary_is_rarely_rolled_back_by_the_baseline_comparison() {
    let mut spec = never_promotes(Thresholds {
        max_error_rate_percent: Some(100.0),
        ..Thresholds::default()
    });
    spec.baseline = Some(BaselineSpec {
        matches: Vec::new(),
        max_p95_latency_increase_percent: None,
        max_error_rate_increase_points: Some(0.0),
    });
    // A 10 % canary beside its baseline, both at 1 % errors.
    let scenario = Scenario {
        release: side(200, 0.0, 0.01, 0.0),
        baseline: Some(side(1800, 0.0, 0.01, 0.0)),
    };
    let s = summary(&spec, scenario, 1000, 25);
    assert!(s.rolled_back <= AA_MAX, "{s:?}");
    assert_eq!(s.promoted, 0.0, "{s:?}");
    // A worse canary is caught.
    let worse = Scenario {
        release: side(200, 0.0, 0.05, 0.0),
        baseline: Some(side(1800, 0.0, 0.01, 0.0)),
    };
    let s = summary(&spec, worse, 200, 25);
    assert_eq!(s.rolled_back, 1.0, "{s:?}");
}

#[test]
fn a_canary_as_fast_as_its_baseline_allows_is_rarely_rolled_back_on_latency() {
    let mut spec = never_promotes(Thresholds {
        max_error_rate_percent: Some(100.0),
        ..Thresholds::default()
    });
    spec.baseline = Some(BaselineSpec {
        matches: Vec::new(),
        max_p95_latency_increase_percent: Some(10.0),
        max_error_rate_increase_points: None,
    });
    // The canary's p95 exactly 10 % above the baseline's: at the limit.
    let at_limit = Scenario {
        release: side(300, 110.0, 0.0, 0.0),
        baseline: Some(side(300, 100.0, 0.0, 0.0)),
    };
    let s = summary(&spec, at_limit, 1000, 25);
    assert!(s.rolled_back <= AA_MAX, "{s:?}");
    // 40 % slower than the baseline is caught.
    let slower = Scenario {
        release: side(300, 140.0, 0.0, 0.0),
        baseline: Some(side(300, 100.0, 0.0, 0.0)),
    };
    let s = summary(&spec, slower, 200, 25);
    assert!(s.rolled_back >= 0.95, "{s:?}");
}

#[test]
fn clear_regressions_roll_back_within_three_windows_of_800() {
    let spec = contract(Thresholds {
        max_p95_latency_ms: Some(120.0),
        max_error_rate_percent: Some(2.0),
        ..Thresholds::default()
    });
    for release in [side(800, 75.0, 0.20, 0.0), side(800, 160.0, 0.005, 0.0)] {
        let s = summary(&spec, alone(release), 200, 10);
        assert_eq!(s.rolled_back, 1.0, "{release:?}: {s:?}");
        let w = s.windows_to_decision.expect("decided");
        assert!(w.p90 <= 3, "{release:?}: {s:?}");
    }
}

#[test]
fn a_clean_release_promotes_within_two_windows_of_min_samples() {
    let spec = ContractSpec {
        min_samples: 3000,
        ..contract(Thresholds {
            max_p95_latency_ms: Some(120.0),
            max_error_rate_percent: Some(2.0),
            min_conversion_rate_percent: Some(15.0),
            ..Thresholds::default()
        })
    };
    let s = summary(&spec, alone(side(800, 75.0, 0.005, 0.30)), 200, 12);
    assert_eq!(s.promoted, 1.0, "{s:?}");
    // 3000 samples are reached in window 4.
    let w = s.windows_to_decision.expect("decided");
    assert!(w.p90 <= 6 && w.median >= 4, "{s:?}");
}

#[test]
fn summaries_count_every_ending() {
    let o = |ending, timed_out, windows| Outcome {
        ending,
        timed_out,
        windows,
        samples: windows * 10,
    };
    let s = Summary::of(&[
        o(Ending::RolledBack, false, 2),
        o(Ending::Promoted, false, 4),
        o(Ending::RolledBack, true, 9),
        o(Ending::Undecided, false, 9),
    ]);
    assert_eq!(
        (s.rolled_back, s.promoted, s.timed_out, s.undecided),
        (0.5, 0.25, 0.25, 0.25)
    );
    assert_eq!(s.windows_to_decision, Some(Spread { median: 2, p90: 4 }));
}

#[test]
fn simulated_windows_are_capped_whatever_max_duration_spans() {
    let mut spec = contract(Thresholds {
        max_error_rate_percent: Some(1.0),
        ..Thresholds::default()
    });
    spec.max_duration = Some(Duration::from_secs(3600));
    // An hour of minute windows: 60, plus the one that reaches the timeout.
    assert_eq!(windows_for(&spec, &window(), 500), (61, None));
    spec.max_duration = Some(Duration::from_secs(48 * 3600));
    let mut seconds = window();
    seconds.size = Duration::from_secs(1);
    assert_eq!(
        windows_for(&spec, &seconds, 500),
        (MAX_SIMULATED_WINDOWS, Some(172_801))
    );
    spec.max_duration = None;
    assert_eq!(windows_for(&spec, &window(), 500), (500, None));
}
