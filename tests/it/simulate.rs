//! `verdict simulate` as a user runs it: the real binary on a shipped
//! pipeline, its JSON report, and refusals of figures it cannot simulate.

use std::path::PathBuf;

fn pipeline(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines")
        .join(name)
}

fn simulate(extra: &[&str]) -> std::process::Output {
    let file = pipeline("default.yaml");
    let mut args = vec![
        "simulate".to_string(),
        "-c".into(),
        file.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    crate::verdict_command(&args)
        .output()
        .expect("verdict runs")
}

#[test]
fn a_small_simulation_reports_both_scenarios_as_json() {
    let out = simulate(&[
        "--requests-per-window",
        "400",
        "--runs",
        "20",
        "--threads",
        "1",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    let scenarios = report["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), 2);
    for s in scenarios {
        assert_eq!(s["runs"], 20, "{s}");
        let total: f64 = ["rolled_back", "promoted", "undecided"]
            .iter()
            .map(|k| s[*k].as_f64().expect("a share"))
            .sum();
        assert!((total - 1.0).abs() < 1e-9, "{s}");
    }
}

#[test]
fn figures_it_cannot_simulate_are_refused_before_any_run() {
    for (flag, value, says) in [
        ("--runs", "20000000", "20000000"),
        ("--runs", "0", "0"),
        ("--shape", "lognormal:50", "from 0 to 5"),
        ("--shape", "pareto:0.01", "from 0.1 to 100"),
        ("--p95-ms", "1e12", "at most 1000000000"),
        ("--baseline-share-percent", "99.9", "between 0 and 99"),
        ("--baseline-share-percent", "50", "this one has none"),
        ("--max-windows", "50000", "50000"),
        ("--requests-per-window", "1000000000", "1000000000"),
    ] {
        let out = if flag == "--requests-per-window" {
            simulate(&[flag, value])
        } else {
            simulate(&["--requests-per-window", "400", flag, value])
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(says), "{flag} {value}: {stderr}");
        assert!(out.stdout.is_empty(), "{flag} {value}");
    }
}
