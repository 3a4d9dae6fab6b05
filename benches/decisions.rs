//! Decision rules under noise, at scale: the tables of `benches/RESULTS.md`
//! ("Decisions"). Every run goes through the server's engine
//! (`verdict::simulate`), seeded, so the figures are reproducible:
//!
//! ```sh
//! cargo bench --bench decisions            # every table, 2000 runs each
//! cargo bench --bench decisions -- 500     # fewer runs
//! ```
//!
//! 1. A/A at the limit, per check type: how often a release that is
//!    exactly at its limit (or equal to its baseline) is rolled back, with
//!    sequential decisions and with the window rule (`pass_windows: 3`,
//!    `fail_windows: 1`).
//! 2. Healthy releases at 80 % of their limits at low traffic.
//! 3. Detection: windows and samples to a decision.
//! 4. Samples to a decision next to the figures of `shared/decisions.md`.

use std::time::{Duration, Instant};

use verdict::config::{BaselineSpec, ContractSpec, Decision, Thresholds, WindowSpec};
use verdict::simulate::{Scenario, Shape, Side, Simulation, Summary};

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

fn side(requests: u64, p95_ms: f64, error_rate: f64, conversion_rate: f64) -> Side {
    Side {
        requests,
        p95_ms,
        shape: Shape::Lognormal(0.5),
        error_rate,
        conversion_rate,
    }
}

fn windows_rule(spec: &ContractSpec) -> ContractSpec {
    ContractSpec {
        decision: Decision::Windows,
        pass_windows: 3,
        fail_windows: 1,
        ..spec.clone()
    }
}

fn run(spec: &ContractSpec, scenario: Scenario, runs: u64, looks: u64) -> Summary {
    Simulation {
        spec,
        window: &window(),
        runs,
        seed: 2026,
        max_windows: looks,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
    .summarize(&scenario, &|| {})
}

fn pct(v: f64) -> String {
    format!("{:.1} %", v * 100.0)
}

fn spread(s: &Summary) -> String {
    match (s.windows_to_decision, s.samples_to_decision) {
        (Some(w), Some(n)) => format!("{} / {} | {} / {}", w.median, w.p90, n.median, n.p90),
        _ => "- | -".into(),
    }
}

/// Inverse of the standard normal CDF (Acklam's rational approximation,
/// relative error below 1.2e-9): to place a lognormal's share above a limit.
fn probit(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let q = if p < 0.5 { p } else { 1.0 - p };
    let x = if q < 0.02425 {
        let r = (-2.0 * q.ln()).sqrt();
        (((((C[0] * r + C[1]) * r + C[2]) * r + C[3]) * r + C[4]) * r + C[5])
            / ((((D[0] * r + D[1]) * r + D[2]) * r + D[3]) * r + 1.0)
    } else {
        let r = q - 0.5;
        let s = r * r;
        (((((A[0] * s + A[1]) * s + A[2]) * s + A[3]) * s + A[4]) * s + A[5]) * r
            / (((((B[0] * s + B[1]) * s + B[2]) * s + B[3]) * s + B[4]) * s + 1.0)
    };
    if p < 0.5 {
        -x.abs()
    } else {
        x.abs()
    }
}

/// The p95 of a lognormal (sigma 0.5) of which a share `q` is slower than
/// `limit_ms`.
fn p95_for_exceedance(limit_ms: f64, q: f64) -> f64 {
    let sigma = 0.5;
    let median = limit_ms / (sigma * probit(1.0 - q)).exp();
    median * (sigma * probit(0.95)).exp()
}

fn main() {
    let runs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2000);
    let started = Instant::now();
    let contract = |t: Thresholds| ContractSpec::with_thresholds("bench", t);
    // A/A: never promoted, so every run looks at all its windows.
    let never_promotes = |t: Thresholds| ContractSpec {
        min_samples: u64::MAX,
        ..contract(t)
    };
    let error = never_promotes(Thresholds {
        max_error_rate_percent: Some(2.0),
        ..Thresholds::default()
    });
    let conversion = never_promotes(Thresholds {
        min_conversion_rate_percent: Some(15.0),
        ..Thresholds::default()
    });
    let p95_aa = never_promotes(Thresholds {
        max_p95_latency_ms: Some(120.0),
        ..Thresholds::default()
    });
    let p95 = contract(Thresholds {
        max_p95_latency_ms: Some(120.0),
        ..Thresholds::default()
    });
    let mut baseline = never_promotes(Thresholds {
        max_error_rate_percent: Some(100.0),
        ..Thresholds::default()
    });
    baseline.baseline = Some(BaselineSpec {
        matches: Vec::new(),
        max_p95_latency_increase_percent: None,
        max_error_rate_increase_points: Some(0.0),
    });
    let mut latency_baseline = never_promotes(Thresholds {
        max_error_rate_percent: Some(100.0),
        ..Thresholds::default()
    });
    latency_baseline.baseline = Some(BaselineSpec {
        matches: Vec::new(),
        max_p95_latency_increase_percent: Some(10.0),
        max_error_rate_increase_points: None,
    });
    let alone = |release| Scenario {
        release,
        baseline: None,
    };

    println!("## 1. A/A at the limit ({runs} runs each, 40 looks, alpha 0.05)\n");
    println!("| check | traffic per window | sequential: rolled back | window rule: rolled back |");
    println!("|---|---|---:|---:|");
    let cases: Vec<(&str, &ContractSpec, Scenario, &str)> = vec![
        (
            "error rate ≤ 2 %, truly 2 %",
            &error,
            alone(side(800, 0.0, 0.02, 0.0)),
            "800",
        ),
        (
            "conversion ≥ 15 %, truly 15 %",
            &conversion,
            alone(side(800, 0.0, 0.0, 0.15)),
            "800",
        ),
        (
            "p95 ≤ 120 ms, truly 120 ms",
            &p95_aa,
            alone(side(500, 120.0, 0.0, 0.0)),
            "500",
        ),
        (
            "p95 vs baseline (+10 %), canary exactly 10 % slower, 50/50",
            &latency_baseline,
            Scenario {
                release: side(500, 110.0, 0.0, 0.0),
                baseline: Some(side(500, 100.0, 0.0, 0.0)),
            },
            "500 + 500",
        ),
        (
            "error rate vs baseline (+0 points), both 1 %, 10 % canary",
            &baseline,
            Scenario {
                release: side(200, 0.0, 0.01, 0.0),
                baseline: Some(side(1800, 0.0, 0.01, 0.0)),
            },
            "200 + 1800",
        ),
        (
            "error rate vs baseline (+0 points), both 1 %, 50/50",
            &baseline,
            Scenario {
                release: side(1000, 0.0, 0.01, 0.0),
                baseline: Some(side(1000, 0.0, 0.01, 0.0)),
            },
            "1000 + 1000",
        ),
    ];
    for (name, spec, scenario, traffic) in &cases {
        let s = run(spec, *scenario, runs, 40);
        let w = run(&windows_rule(spec), *scenario, runs, 40);
        println!(
            "| {name} | {traffic} | {} | {} |",
            pct(s.rolled_back),
            pct(w.rolled_back)
        );
    }

    println!("\n## 2. Healthy releases at 80 % of their limits, low traffic ({runs} runs, up to 200 windows)\n");
    println!("| contract | requests per window | rule | rolled back | promoted | undecided | windows / samples to a decision (median / p90) |");
    println!("|---|---:|---|---:|---:|---:|---|");
    let all = ContractSpec {
        min_samples: 300,
        ..contract(Thresholds {
            max_p95_latency_ms: Some(500.0),
            max_error_rate_percent: Some(1.0),
            ..Thresholds::default()
        })
    };
    for requests in [40u64, 200] {
        let healthy = alone(side(requests, 400.0, 0.005, 0.0));
        for (rule, spec) in [("sequential", all.clone()), ("windows", windows_rule(&all))] {
            let s = run(&spec, healthy, runs, 200);
            println!(
                "| p95 ≤ 500 ms, errors ≤ 1 %, truly 400 ms and 0.5 % | {requests} | {rule} | {} | {} | {} | {} |",
                pct(s.rolled_back),
                pct(s.promoted),
                pct(s.undecided),
                spread(&s)
            );
        }
    }

    println!("\n## 3. Detection ({runs} runs)\n");
    println!("| scenario | rule | rolled back | promoted | windows / samples to a decision (median / p90) |");
    println!("|---|---|---:|---:|---|");
    let both = contract(Thresholds {
        max_p95_latency_ms: Some(120.0),
        max_error_rate_percent: Some(2.0),
        min_conversion_rate_percent: Some(15.0),
        ..Thresholds::default()
    });
    let clean = ContractSpec {
        min_samples: 3000,
        ..both.clone()
    };
    let detection: Vec<(&str, &ContractSpec, Side)> = vec![
        (
            "20 % errors vs a 2 % limit, 800 a window",
            &both,
            side(800, 75.0, 0.20, 0.30),
        ),
        (
            "p95 160 ms vs a 120 ms limit, 800 a window",
            &both,
            side(800, 160.0, 0.005, 0.30),
        ),
        (
            "clean (p95 75 ms, 0.5 % errors, 30 % converted), min_samples 3000, 800 a window",
            &clean,
            side(800, 75.0, 0.005, 0.30),
        ),
    ];
    for (name, spec, release) in &detection {
        for (rule, spec) in [
            ("sequential", (*spec).clone()),
            ("windows", windows_rule(spec)),
        ] {
            let s = run(&spec, alone(*release), runs, 20);
            println!(
                "| {name} | {rule} | {} | {} | {} |",
                pct(s.rolled_back),
                pct(s.promoted),
                spread(&s)
            );
        }
    }

    println!("\n## 4. Samples to a decision next to shared/decisions.md ({runs} runs)\n");
    println!("p95 ≤ 120 ms as \"share slower than 120 ms ≤ 5 %\", looks of 500 requests, up to 200 looks:\n");
    println!("| true share slower | decisions.md | this engine: decision | median samples | p90 |");
    println!("|---:|---|---|---:|---:|");
    let quoted = [
        (0.05, "FAIL 0.010, PASS 0.023"),
        (0.06, "FAIL, median 4,000"),
        (0.08, "FAIL, median 500"),
        (0.10, "FAIL, median 500"),
        (0.04, "PASS, median 4,000"),
        (0.03, "PASS, median 1,000"),
    ];
    for (q, doc) in quoted {
        let s = run(
            &p95,
            alone(side(500, p95_for_exceedance(120.0, q), 0.0, 0.0)),
            runs,
            200,
        );
        let (med, p90) = s.samples_to_decision.map_or((0, 0), |x| (x.median, x.p90));
        println!(
            "| {:.0} % | {doc} | rolled back {}, promoted {} | {med} | {p90} |",
            q * 100.0,
            pct(s.rolled_back),
            pct(s.promoted)
        );
    }
    println!("\nError rate against the baseline (+0 points), looks of 2000 requests of both arms, up to 100 looks:\n");
    println!("| scenario | decisions.md (pooled CS) | this engine: rolled back | median total samples | p90 |");
    println!("|---|---|---:|---:|---:|");
    for (name, canary, base, rate, doc) in [
        ("1 % → 2 %, 10 % canary", 200u64, 1800u64, 0.02, "12,000"),
        ("1 % → 3 %, 10 % canary", 200, 1800, 0.03, "4,000"),
        ("1 % → 2 %, 50/50", 1000, 1000, 0.02, "6,000"),
    ] {
        let s = run(
            &baseline,
            Scenario {
                release: side(canary, 0.0, rate, 0.0),
                baseline: Some(side(base, 0.0, 0.01, 0.0)),
            },
            runs,
            100,
        );
        // Both arms: the canary's samples times the traffic they share.
        let total = |n: u64| n * (canary + base) / canary;
        let (med, p90) = s
            .samples_to_decision
            .map_or((0, 0), |x| (total(x.median), total(x.p90)));
        println!(
            "| {name} | {doc} | {} | {med} | {p90} |",
            pct(s.rolled_back)
        );
    }
    println!("\n(all tables: {:.0} s)", started.elapsed().as_secs_f64());
}
